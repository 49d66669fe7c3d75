"""Execution records and their indexes.

An execution is a hash (`exec:<id>`, clarity.models.Execution.to_redis), indexed by creation time in
three sorted sets: all executions (`execs`), a repository's (`repo:<repo>:execs`) and an installation's
(`inst:<id>:execs`). Every status change goes through `transition`, which checks the state machine,
writes the record inside a WATCH transaction (atomic with respect to other writers of the same
execution), then appends the change to the execution's log and the audit stream and publishes it.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from clarity import numbers
from clarity.models import Execution
from clarity.status import ExecutionStatus, check_execution
from clarity.store.events import Brief, Events, jsonable
from clarity.store.keyspace import Pipeline


class NotFound(KeyError):
    """An execution id the store does not know."""


class Executions(Events):
    """Execution records: created, read, changed, listed."""

    def _record_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id)

    def _indexes(self, execution: Execution) -> tuple[str, str, str]:
        """The creation-time indexes an execution is in: everyone's, its repository's, its installation's."""
        return (self._k("execs"), self._k("repo", execution.repo, "execs"),
                self._k("inst", execution.installation_id, "execs"))

    def _index(self, repo: str | None, installation_id: int | None) -> str:
        """The creation-time index of a repository's, an installation's, or all executions."""
        if repo:
            return self._k("repo", repo, "execs")
        if installation_id is not None:
            return self._k("inst", installation_id, "execs")
        return self._k("execs")

    def create(self, execution: Execution, actor: str) -> Execution:
        """Store a new execution and index it by repo, installation and time."""
        now = time.time()
        if not execution.id:
            execution = dataclasses.replace(execution, id=uuid.uuid4().hex[:12])
        execution = dataclasses.replace(execution, created_at=now, updated_at=now)
        pipe = self.r.pipeline()
        pipe.hset(self._record_key(execution.id), mapping=execution.to_redis())
        for index in self._indexes(execution):
            pipe.zadd(index, {execution.id: now})
        pipe.execute()
        self._emit(execution, "execution.created", actor, {"status": str(execution.status)})
        return execution

    def get(self, execution_id: str) -> Execution:
        """The execution with this id, or NotFound."""
        raw = self.r.hgetall(self._record_key(execution_id))
        if not raw:
            raise NotFound(execution_id)
        return Execution.from_redis(raw)

    def brief(self, execution_id: str) -> Brief:
        """The execution's id, repository, installation and status (one HMGET), or NotFound."""
        repo, installation, status = self.r.hmget(self._record_key(execution_id), "repo", "installation_id",
                                                  "status")
        if not repo:
            raise NotFound(execution_id)
        return Brief(execution_id, repo, int(installation or 0), ExecutionStatus(status))

    def update(self, execution_id: str, **fields: Any) -> Execution:
        """Change non-status fields (counters, PR number, current task)."""
        if "status" in fields:
            raise ValueError("use Store.transition to change status")
        fields["updated_at"] = time.time()
        current = self.get(execution_id)
        updated = dataclasses.replace(current, **fields)
        flat = updated.to_redis()
        self.r.hset(self._record_key(execution_id), mapping={k: flat[k] for k in fields})
        data = {k: jsonable(v) for k, v in fields.items()}
        if numbers.FIELDS & fields.keys():
            data["numbers"] = numbers.of(updated).to_json()
        self._publish(updated, "execution.updated", data)
        return updated

    def incr(self, execution_id: str, field: str, amount: int = 1, announce: Execution | None = None) -> int:
        """Atomically add to a counter field; with `announce` (the execution), publish the new value live."""
        value = int(self.r.hincrby(self._record_key(execution_id), field, amount))
        if announce is not None:
            self._publish(announce, "execution.updated", {field: value})
        return value

    def add(self, execution_id: str, field: str, amount: float) -> float:
        """Atomically add to a float field (active time, cost)."""
        return float(self.r.hincrbyfloat(self._record_key(execution_id), field, amount))

    def transition(self, execution_id: str, new: ExecutionStatus, actor: str, reason: str = "",
                   **fields: Any) -> Execution:
        """Move an execution to `new` if the state machine allows it; raise IllegalTransition otherwise."""

        def move(pipe: Pipeline) -> tuple[Execution, Execution]:
            current = self._read_record(pipe, execution_id)
            status = check_execution(current.status, new)
            now = time.time()
            changes: dict[str, Any] = {"status": status, "updated_at": now, "reason": reason, **fields}
            if status.is_settled:
                changes.setdefault("finished_at", now)
            updated = dataclasses.replace(current, **changes)
            pipe.multi()
            self._write_record(pipe, execution_id, updated, changes)
            return current, updated

        current, updated = self.r.transaction(move, self._record_key(execution_id), value_from_callable=True)
        # The fields that changed with the status ride along (tasks_total, ...): a live page applies them too.
        self._emit(updated, "execution.status", actor, {"from": str(current.status), "to": str(updated.status),
                                                        "reason": reason,
                                                        **{k: jsonable(v) for k, v in fields.items()}})
        return updated

    def _read_record(self, pipe: Pipeline, execution_id: str) -> Execution:
        """The execution as a watching pipeline reads it (before `multi`), or NotFound."""
        raw = pipe.hgetall(self._record_key(execution_id))
        if not raw:
            raise NotFound(execution_id)
        return Execution.from_redis(raw)

    def _write_record(self, pipe: Pipeline, execution_id: str, updated: Execution,
                      changes: Mapping[str, Any]) -> None:
        """Queue the write of the record's `changes` fields, as `updated` has them (after `multi`)."""
        flat = updated.to_redis()
        pipe.hset(self._record_key(execution_id), mapping={k: flat[k] for k in changes})

    def executions(self, repo: str | None = None, installation_id: int | None = None,
                   limit: int = 100) -> list[Execution]:
        """Newest first, optionally scoped to a repository or an installation."""
        index = self._index(repo, installation_id)
        ids = self.r.zrevrange(index, 0, limit - 1)
        return self._load(ids)

    def executions_before(self, before: tuple[float, str] | None, limit: int, repo: str | None = None,
                          installation_id: int | None = None) -> list[Execution]:
        """Up to `limit` executions older than `before` (created at, id), newest first (the API's pages).

        Ties on the creation time are broken by id, in the order the index returns them (id descending).
        """
        index = self._index(repo, installation_id)
        top = "+inf" if before is None else repr(before[0])
        pairs = self.r.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 64, withscores=True)
        ids = [i for i, score in pairs if before is None or score < before[0] or i < before[1]][:limit]
        return self._load(ids)

    def _load(self, ids: list[str]) -> list[Execution]:
        """The executions of `ids`, in that order, in one round trip (forgotten ones left out)."""
        pipe = self.r.pipeline()
        for execution_id in ids:
            pipe.hgetall(self._record_key(execution_id))
        return [Execution.from_redis(raw) for raw in pipe.execute() if raw]

    def status_counts(self, chunk: int = 1000) -> dict[str, int]:
        """How many executions are in each status (for metrics; reads one field per execution)."""
        counts: dict[str, int] = {}
        start = 0
        while ids := self.r.zrange(self._index(None, None), start, start + chunk - 1):
            pipe = self.r.pipeline(transaction=False)
            for execution_id in ids:
                pipe.hget(self._record_key(execution_id), "status")
            for status in pipe.execute():
                if status:
                    counts[status] = counts.get(status, 0) + 1
            start += chunk
        return counts

    def find(self, repo: str, issue_number: int | None = None,
             statuses: Iterable[ExecutionStatus] | None = None) -> list[Execution]:
        """Executions of a repo (newest first), filtered by issue/PR and status."""
        wanted = set(statuses) if statuses is not None else None
        return [e for e in self.executions(repo=repo, limit=500)
                if (issue_number is None or e.issue_number == issue_number)
                and (wanted is None or e.status in wanted)]

    def _forget_record(self, pipe: Pipeline, execution: Execution) -> None:
        pipe.delete(self._record_key(execution.id))
        for index in self._indexes(execution):
            pipe.zrem(index, execution.id)
