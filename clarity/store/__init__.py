"""Redis-backed state: executions, task tables, log and audit streams, comment dedupe, repo leases.

Every status change goes through `transition`, which checks the state machine, writes the record,
appends to the execution's event stream and the audit stream, and publishes the event, atomically
with respect to other writers of the same execution.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import redis

from clarity import numbers
from clarity.models import Execution, TaskProgress
from clarity.redaction import redact
from clarity.status import ExecutionStatus, TaskStatus, check_execution, check_task
from clarity.store.checks import Checks
from clarity.store.comments import CommentClaims
from clarity.store.flags import Flags
from clarity.store.installations import Installations
from clarity.store.keyspace import DEFAULT_NAMESPACE, Pipeline
from clarity.store.repo_facts import RepoFacts
from clarity.store.scheduling import Scheduling

LOG_MAXLEN = 5000
AUDIT_MAXLEN = 20000


# One round trip for an event: the audit entry (if any), the execution's log entry, and the live
# message carrying the log entry's id (a dashboard that lost its socket asks for what came after it).
EMIT = """
if ARGV[3] ~= '' then redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'json', ARGV[3]) end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'json', ARGV[4])
redis.call('PUBLISH', ARGV[5], string.sub(ARGV[4], 1, -2) .. ', "id": "' .. id .. '"}')
return id
"""


class NotFound(KeyError):
    """An execution id the store does not know."""


class Brief(NamedTuple):
    """What an event says about its execution: enough to route it, read without the whole record."""

    id: str
    repo: str
    installation_id: int
    status: ExecutionStatus


class Store(Scheduling, Flags, Checks, Installations, CommentClaims, RepoFacts):
    """The one owner of execution state in Redis."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(client, namespace)
        self.events_channel = f"{namespace}:events"
        self._emit_script = client.register_script(EMIT)

    @classmethod
    def from_url(cls, url: str, namespace: str = DEFAULT_NAMESPACE) -> Store:
        """A store on a fresh connection pool (strings decoded)."""
        return cls(redis.Redis.from_url(url, decode_responses=True), namespace)

    # -- executions -----------------------------------------------------------------------------
    def create(self, execution: Execution, actor: str) -> Execution:
        """Store a new execution and index it by repo, installation and time."""
        now = time.time()
        if not execution.id:
            execution = _replace(execution, id=uuid.uuid4().hex[:12])
        execution = _replace(execution, created_at=now, updated_at=now)
        pipe = self.r.pipeline()
        pipe.hset(self._k("exec", execution.id), mapping=execution.to_redis())
        pipe.zadd(self._k("execs"), {execution.id: now})
        pipe.zadd(self._k("repo", execution.repo, "execs"), {execution.id: now})
        pipe.zadd(self._k("inst", execution.installation_id, "execs"), {execution.id: now})
        pipe.execute()
        self._emit(execution, "execution.created", actor, {"status": str(execution.status)})
        return execution

    def get(self, execution_id: str) -> Execution:
        """The execution with this id, or NotFound."""
        raw = self.r.hgetall(self._k("exec", execution_id))
        if not raw:
            raise NotFound(execution_id)
        return Execution.from_redis(raw)

    def brief(self, execution_id: str) -> Brief:
        """The execution's id, repository, installation and status (one HMGET), or NotFound."""
        repo, installation, status = self.r.hmget(self._k("exec", execution_id), "repo", "installation_id", "status")
        if not repo:
            raise NotFound(execution_id)
        return Brief(execution_id, repo, int(installation or 0), ExecutionStatus(status))

    def update(self, execution_id: str, **fields: Any) -> Execution:
        """Change non-status fields (counters, PR number, current task)."""
        if "status" in fields:
            raise ValueError("use Store.transition to change status")
        fields["updated_at"] = time.time()
        current = self.get(execution_id)
        updated = _replace(current, **fields)
        flat = updated.to_redis()
        self.r.hset(self._k("exec", execution_id), mapping={k: flat[k] for k in fields})
        data = {k: _jsonable(v) for k, v in fields.items()}
        if numbers.FIELDS & fields.keys():
            data["numbers"] = numbers.of(updated).to_json()
        self._publish(updated, "execution.updated", data)
        return updated

    def incr(self, execution_id: str, field: str, amount: int = 1, announce: Execution | None = None) -> int:
        """Atomically add to a counter field; with `announce` (the execution), publish the new value live."""
        value = int(self.r.hincrby(self._k("exec", execution_id), field, amount))
        if announce is not None:
            self._publish(announce, "execution.updated", {field: value})
        return value

    def add(self, execution_id: str, field: str, amount: float) -> float:
        """Atomically add to a float field (active time, cost)."""
        return float(self.r.hincrbyfloat(self._k("exec", execution_id), field, amount))

    def transition(self, execution_id: str, new: ExecutionStatus, actor: str, reason: str = "",
                   **fields: Any) -> Execution:
        """Move an execution to `new` if the state machine allows it; raise IllegalTransition otherwise."""
        key = self._k("exec", execution_id)

        def move(pipe: Pipeline) -> tuple[Execution, Execution]:
            current = _read(pipe, key, execution_id)
            status = check_execution(current.status, new)
            now = time.time()
            changes: dict[str, Any] = {"status": status, "updated_at": now, "reason": reason, **fields}
            if status.is_settled:
                changes.setdefault("finished_at", now)
            updated = _replace(current, **changes)
            flat = updated.to_redis()
            pipe.multi()
            pipe.hset(key, mapping={k: flat[k] for k in changes})
            return current, updated

        current, updated = self.r.transaction(move, key, value_from_callable=True)
        status = updated.status
        # The fields that changed with the status ride along (tasks_total, ...): a live page applies them too.
        self._emit(updated, "execution.status", actor, {"from": str(current.status), "to": str(status),
                                                        "reason": reason,
                                                        **{k: _jsonable(v) for k, v in fields.items()}})
        return updated

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

    def _index(self, repo: str | None, installation_id: int | None) -> str:
        """The creation-time index of a repository's, an installation's, or all executions."""
        if repo:
            return self._k("repo", repo, "execs")
        if installation_id is not None:
            return self._k("inst", installation_id, "execs")
        return self._k("execs")

    def _load(self, ids: list[str]) -> list[Execution]:
        """The executions of `ids`, in that order, in one round trip (forgotten ones left out)."""
        pipe = self.r.pipeline()
        for execution_id in ids:
            pipe.hgetall(self._k("exec", execution_id))
        return [Execution.from_redis(raw) for raw in pipe.execute() if raw]

    def status_counts(self, chunk: int = 1000) -> dict[str, int]:
        """How many executions are in each status (for metrics; reads one field per execution)."""
        counts: dict[str, int] = {}
        start = 0
        while ids := self.r.zrange(self._k("execs"), start, start + chunk - 1):
            pipe = self.r.pipeline(transaction=False)
            for execution_id in ids:
                pipe.hget(self._k("exec", execution_id), "status")
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

    def forget(self, execution_id: str) -> None:
        """Delete an execution and everything under it (its installation or repository went away)."""
        try:
            execution = self.get(execution_id)
        except NotFound:
            return
        pipe = self.r.pipeline()
        for suffix in ("", ":tasks", ":task_order", ":scope", ":log"):
            pipe.delete(self._k("exec", execution_id) + suffix)
        pipe.zrem(self._k("execs"), execution_id)
        pipe.zrem(self._k("repo", execution.repo, "execs"), execution_id)
        pipe.zrem(self._k("inst", execution.installation_id, "execs"), execution_id)
        for forget in (self._forget_scheduling, self._forget_checks, self._forget_flags):
            forget(pipe, execution)
        pipe.execute()
        self.ready.remove(execution_id)
        self.r.xadd(self._k("audit"), {"json": json.dumps({
            "kind": "execution.forgotten", "actor": "github", "execution": execution_id, "repo": execution.repo,
            "installation": execution.installation_id, "time": time.time()})}, maxlen=AUDIT_MAXLEN,
            approximate=True)

    # -- tasks ----------------------------------------------------------------------------------
    def tasks(self, execution_id: str) -> dict[str, TaskProgress]:
        """The per-execution task table, in insertion order of ids as the engine saw them."""
        raw = self.r.hgetall(self._k("exec", execution_id, "tasks"))
        order = self.r.lrange(self._k("exec", execution_id, "task_order"), 0, -1)
        table = {tid: TaskProgress.from_json(raw[tid]) for tid in order if tid in raw}
        table.update({tid: TaskProgress.from_json(v) for tid, v in raw.items() if tid not in table})
        return table

    def tasks_of(self, execution_ids: Sequence[str], chunk: int = 500) -> dict[str, dict[str, TaskProgress]]:
        """The task tables of several executions, as `tasks` orders them, one round trip per `chunk` ids."""
        tables: dict[str, dict[str, TaskProgress]] = {}
        for start in range(0, len(execution_ids), chunk):
            ids = execution_ids[start:start + chunk]
            pipe = self.r.pipeline(transaction=False)
            for execution_id in ids:
                pipe.hgetall(self._k("exec", execution_id, "tasks"))
                pipe.lrange(self._k("exec", execution_id, "task_order"), 0, -1)
            replies = pipe.execute()
            for i, execution_id in enumerate(ids):
                raw, order = replies[2 * i], replies[2 * i + 1]
                table = {tid: TaskProgress.from_json(raw[tid]) for tid in order if tid in raw}
                table.update({tid: TaskProgress.from_json(v) for tid, v in raw.items() if tid not in table})
                tables[execution_id] = table
        return tables

    def task(self, execution_id: str, task_id: str) -> TaskProgress:
        """One task's progress (pending if never touched)."""
        return self._stored_task(execution_id, task_id) or TaskProgress(task_id=task_id)

    def _stored_task(self, execution_id: str, task_id: str) -> TaskProgress | None:
        raw = self.r.hget(self._k("exec", execution_id, "tasks"), task_id)
        return TaskProgress.from_json(raw) if raw else None

    def put_task(self, execution_id: str, progress: TaskProgress, actor: str = "engine") -> TaskProgress:
        """Write a task's progress; a status change is checked against the task state machine."""
        self.settle_tasks(execution_id, [progress], actor)  # the execution's numbers move with the row
        return progress

    def scope(self, execution_id: str) -> frozenset[str]:
        """The open task ids the execution covered when its list was last read (clarity.numbers.scope)."""
        return frozenset(self.r.smembers(self._k("exec", execution_id, "scope")))

    def recount(self, execution_id: str) -> numbers.Numbers:
        """The execution's numbers counted afresh from its task table and scope (what its record must say)."""
        return numbers.count(self.tasks(execution_id), self.scope(execution_id))

    def set_scope(self, execution_id: str, task_ids: Sequence[str], titles: Mapping[str, str] | None = None) -> Execution:
        """Record the open tasks the execution covers now (its list just read, or its stop point moved).

        Each gets a row (pending, in this order) if it has none, an open row takes the list's title, and
        the execution's numbers are counted afresh from the whole table, all in one transaction; nothing
        is written (or announced) when nothing changed.
        """
        key, tasks_key = self._k("exec", execution_id), self._k("exec", execution_id, "tasks")
        scope_key, titles = self._k("exec", execution_id, "scope"), titles or {}
        wanted = list(dict.fromkeys(task_ids))

        def record(pipe: Pipeline) -> tuple[Execution, dict[str, Any]]:
            current = _read(pipe, key, execution_id)
            table = {i: TaskProgress.from_json(v) for i, v in pipe.hgetall(tasks_key).items()}
            old_scope = set(pipe.smembers(scope_key))
            rows: dict[str, TaskProgress] = {}
            for task_id in wanted:
                progress = table.get(task_id) or TaskProgress(task_id=task_id)
                title = titles.get(task_id) or progress.title
                if task_id not in table or (progress.title != title and progress.status in numbers.OPEN):
                    rows[task_id] = _replace(progress, title=title)
            counted = numbers.count({**table, **rows}, set(wanted))
            changes: dict[str, Any] = {k: v for k, v in counted.fields().items() if getattr(current, k) != v}
            if set(wanted) == old_scope and not rows and not changes:
                return current, changes  # nothing queued: the transaction is empty
            if changes:
                changes["updated_at"] = time.time()
            updated = _replace(current, **changes)
            flat = updated.to_redis()
            pipe.multi()
            if set(wanted) != old_scope:
                pipe.delete(scope_key)
                if wanted:
                    pipe.sadd(scope_key, *wanted)
            if rows:
                pipe.hset(tasks_key, mapping={i: _row(p) for i, p in rows.items()})
                new = [i for i in rows if i not in table]
                if new:
                    pipe.rpush(self._k("exec", execution_id, "task_order"), *new)
            if changes:
                pipe.hset(key, mapping={k: flat[k] for k in changes})
            return updated, changes

        updated, changes = self.r.transaction(record, key, tasks_key, scope_key, value_from_callable=True)
        if changes:
            self._publish(updated, "execution.updated", _shown(updated, changes))
        return updated

    def settle_tasks(self, execution_id: str, writes: Sequence[TaskProgress], actor: str = "engine",
                     new: ExecutionStatus | None = None, reason: str = "", **fields: Any) -> Execution:
        """Write task progress and the execution together, in one transaction.

        `writes` are applied in order (one task may appear twice: back to pending, then completed), each
        checked against the task state machine. The execution's numbers (clarity.numbers) move by what the
        written rows add to them now less what they added before, so a worker lost at any instant leaves
        the table and the numbers agreeing. With `new`, the execution's status changes too, as `transition`.
        """
        key, tasks_key = self._k("exec", execution_id), self._k("exec", execution_id, "tasks")
        scope_key = self._k("exec", execution_id, "scope")
        ids = list(dict.fromkeys(w.task_id for w in writes))
        Moves = list[tuple[TaskProgress, TaskProgress]]

        def settle(pipe: Pipeline) -> tuple[Execution, Execution, dict[str, Any], Moves]:
            current = _read(pipe, key, execution_id)
            stored = dict(zip(ids, pipe.hmget(tasks_key, ids), strict=True)) if ids else {}
            in_scope = dict(zip(ids, map(bool, pipe.smismember(scope_key, ids)), strict=True)) if ids else {}
            before = {i: TaskProgress.from_json(v) if v else TaskProgress(task_id=i) for i, v in stored.items()}
            state, moves = dict(before), []
            for progress in writes:
                previous = state[progress.task_id]
                if previous.status != progress.status:
                    check_task(previous.status, progress.status)
                    moves.append((previous, progress))
                state[progress.task_id] = progress
            counted = numbers.of(current)
            for i in ids:
                counted += numbers.row(state[i], in_scope[i]) - numbers.row(before[i], in_scope[i])
            changes: dict[str, Any] = {k: v for k, v in counted.fields().items() if getattr(current, k) != v}
            changes.update(fields)
            if new is not None:
                changes.update(status=check_execution(current.status, new), reason=reason)
            if changes:
                changes["updated_at"] = time.time()
                if new is not None and new.is_settled:
                    changes.setdefault("finished_at", changes["updated_at"])
            updated = _replace(current, **changes)
            flat = updated.to_redis()
            pipe.multi()
            if state:
                pipe.hset(tasks_key, mapping={i: _row(p) for i, p in state.items()})
            for i in ids:
                if stored[i] is None:
                    pipe.rpush(self._k("exec", execution_id, "task_order"), i)
            if changes:
                pipe.hset(key, mapping={k: flat[k] for k in changes})
            return current, updated, changes, moves

        current, updated, changes, moves = self.r.transaction(settle, key, tasks_key, scope_key,
                                                              value_from_callable=True)
        for previous, progress in moves:
            self._emit(updated, "task.status", actor, _task_moved(previous, progress))
        shown = _shown(updated, changes)
        if new is not None:
            self._emit(updated, "execution.status", actor, {"from": str(current.status), "to": str(updated.status),
                                                            "reason": reason, **shown})
        elif shown:
            self._publish(updated, "execution.updated", shown)
        return updated

    def set_task_status(self, execution_id: str, task_id: str, status: TaskStatus, **fields: Any) -> TaskProgress:
        """Shorthand: read, change status and fields, write."""
        return self.put_task(execution_id, _replace(self.task(execution_id, task_id), status=status, **fields))

    # -- logs, audit, events ----------------------------------------------------------------------
    def log(self, execution_id: str, message: str, level: str = "info", task: str | None = None) -> None:
        """Append a redacted line to the execution's log stream and publish it live."""
        self._publish(self.brief(execution_id), "log", {"message": message, "level": level, "task": task or ""}, stream=True)

    def log_lines(self, execution_id: str, count: int = 200) -> list[dict[str, Any]]:
        """The newest `count` stream entries, oldest first."""
        entries = self.r.xrevrange(self._k("exec", execution_id, "log"), count=count)
        return [_decode_entry(entry_id, data) for entry_id, data in reversed(entries)]

    def audit(self, count: int = 200) -> list[dict[str, Any]]:
        """The newest audit records, newest first."""
        return [_decode_entry(i, d) for i, d in self.r.xrevrange(self._k("audit"), count=count)]

    def audit_event(self, execution: Execution | Brief, kind: str, actor: str, data: dict[str, Any]) -> None:
        """Record who did what to an execution outside a status change (audit stream, log, live event)."""
        self._emit(execution, kind, actor, data)

    def _emit(self, execution: Execution | Brief, kind: str, actor: str, data: dict[str, Any]) -> None:
        audit = redact(json.dumps({"kind": kind, "actor": actor, "execution": execution.id, "repo": execution.repo,
                                   "installation": execution.installation_id, "time": time.time(), **data}))
        self._publish(execution, kind, {"actor": actor, **data}, stream=True, audit=audit)

    def _publish(self, execution: Execution | Brief, kind: str, data: dict[str, Any], stream: bool = False,
                 audit: str = "") -> None:
        event = {"kind": kind, "execution": execution.id, "repo": execution.repo,
                 "installation": execution.installation_id, "status": str(execution.status),
                 "time": time.time(), **data}
        payload = redact(json.dumps(event, default=str))
        if not stream:
            self.r.publish(self.events_channel, payload)
            return
        # The audit entry, the log entry and the live event (with the log entry's id, appended to the
        # redacted text rather than redacting the event twice) in one round trip (EMIT).
        self._emit_script(keys=[self._k("audit"), self._k("exec", execution.id, "log")],
                          args=[AUDIT_MAXLEN, LOG_MAXLEN, audit, payload, self.events_channel])

def _row(progress: TaskProgress) -> str:
    """A task's stored form, its error text redacted (it quotes what checks and agents printed)."""
    if progress.last_error:
        progress = _replace(progress, last_error=redact(progress.last_error))
    return progress.to_json()


def _read(pipe: Pipeline, key: str, execution_id: str) -> Execution:
    """The execution as a watching pipeline reads it (before `multi`), or NotFound."""
    raw = pipe.hgetall(key)
    if not raw:
        raise NotFound(execution_id)
    return Execution.from_redis(raw)


def _shown(updated: Execution, changes: Mapping[str, Any]) -> dict[str, Any]:
    """What an event says of the fields that changed: each one, and the numbers whole when any of them moved."""
    shown = {k: _jsonable(v) for k, v in changes.items() if k not in ("status", "reason", "updated_at")}
    if numbers.FIELDS & changes.keys():
        shown["numbers"] = numbers.of(updated).to_json()
    return shown


def _task_moved(previous: TaskProgress, progress: TaskProgress) -> dict[str, Any]:
    """The data of a `task.status` event."""
    return {"task": progress.task_id, "title": progress.title, "from": str(previous.status),
            "to": str(progress.status), "attempts": progress.attempts}


def _replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _decode_entry(entry_id: str, data: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(data.get("json", "{}"))
    record["id"] = entry_id
    return record
