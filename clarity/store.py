"""Redis-backed state: executions, task tables, log and audit streams, delivery dedupe, repo leases.

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

from clarity import leases, numbers
from clarity.flags import Flag
from clarity.models import Execution, TaskProgress
from clarity.ready import ReadySet
from clarity.redaction import redact
from clarity.status import ExecutionStatus, TaskStatus, check_execution, check_task

DEFAULT_NAMESPACE = "clarity"
LOG_MAXLEN = 5000
AUDIT_MAXLEN = 20000
DURATIONS_KEPT = 50  # task durations kept per repository for estimates
DRAFTS_REFUSED_TTL = 24 * 3600  # how long a repository's refusal of draft PRs is believed


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


Pipeline = Any  # a watching redis.client.Pipeline; like Store.r, typed Any as this client decodes replies to str


class Store:
    """The one owner of execution state in Redis."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        # redis-py types every reply as bytes | str; this client decodes, so replies are str.
        self.r: Any = client
        self.namespace = namespace
        self.events_channel = f"{namespace}:events"
        self.ready = ReadySet(client, namespace)
        self._emit_script = client.register_script(EMIT)

    @classmethod
    def from_url(cls, url: str, namespace: str = DEFAULT_NAMESPACE) -> Store:
        """A store on a fresh connection pool (strings decoded)."""
        return cls(redis.Redis.from_url(url, decode_responses=True), namespace)

    def _k(self, *parts: object) -> str:
        """A key in this deployment's namespace (several deployments may share one Redis)."""
        return ":".join((self.namespace, *map(str, parts)))

    # -- deliveries -----------------------------------------------------------------------------
    def claim_delivery(self, delivery_id: str, ttl: int) -> bool:
        """True the first time a webhook delivery id is seen within `ttl` seconds (SET NX EX)."""
        return bool(self.r.set(self._k("delivery", delivery_id), "1", nx=True, ex=ttl))

    def release_delivery(self, delivery_id: str) -> None:
        """Forget a delivery id (when it could not be enqueued, so a redelivery is processed)."""
        self.r.delete(self._k("delivery", delivery_id))

    def claim_comment(self, comment_id: int, action: str, version: str, ttl: int) -> bool:
        """True the first time this version of a comment is handled for `action` within `ttl` seconds (SET NX EX)."""
        return bool(self.r.set(self._k("comment", comment_id, action, version), "1", nx=True, ex=ttl))

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
        for suffix in ("", ":tasks", ":task_order", ":scope", ":log", ":recoveries", ":step", ":checks"):
            pipe.delete(self._k("exec", execution_id) + suffix)
        for flag in Flag:
            pipe.delete(self._k("exec", execution_id, "flag", flag))
        pipe.zrem(self._k("execs"), execution_id)
        pipe.zrem(self._k("repo", execution.repo, "execs"), execution_id)
        pipe.zrem(self._k("inst", execution.installation_id, "execs"), execution_id)
        pipe.lrem(self._k("repo", execution.repo, "waiting"), 0, execution_id)
        pipe.execute()
        self.ready.remove(execution_id)
        self.r.xadd(self._k("audit"), {"json": json.dumps({
            "kind": "execution.forgotten", "actor": "github", "execution": execution_id, "repo": execution.repo,
            "installation": execution.installation_id, "time": time.time()})}, maxlen=AUDIT_MAXLEN,
            approximate=True)

    # -- installations (the customer registry) ---------------------------------------------------
    def put_installation(self, installation_id: int, account: str, status: str, repos: list[str]) -> None:
        """Record a customer installation and the repositories it grants."""
        self.r.hset(self._k("installations"), str(installation_id), json.dumps(
            {"id": installation_id, "account": account, "status": status, "repos": sorted(set(repos)),
             "updated_at": time.time()}))

    def installation(self, installation_id: int) -> dict[str, Any] | None:
        """One installation record, if known."""
        raw = self.r.hget(self._k("installations"), str(installation_id))
        return json.loads(raw) if raw else None

    def installations(self) -> list[dict[str, Any]]:
        """Every known installation."""
        return [json.loads(v) for v in self.r.hvals(self._k("installations"))]

    def drop_installation(self, installation_id: int) -> None:
        """Forget an installation record."""
        self.r.hdel(self._k("installations"), str(installation_id))

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

    def record_check(self, execution_id: str, task_id: str, check_run_id: int | None = None, sha: str = "") -> None:
        """Note the check run a step opens for a task (one HSET, from any thread): first the commit it
        is being opened on (`sha`, before GitHub is asked), then its id, the moment GitHub answers.
        Recovery closes it from either if the step is lost before the task's row names it."""
        self.r.hset(self._k("exec", execution_id, "checks"), task_id,
                    str(check_run_id) if check_run_id is not None else f"@{sha}")

    def checks(self, execution_id: str) -> dict[str, int | str]:
        """Task id → the check run last opened for it (an id), or the commit it was being opened on (a sha)."""
        raw = self.r.hgetall(self._k("exec", execution_id, "checks"))
        return {task: value[1:] if value.startswith("@") else int(value) for task, value in raw.items()}

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

    # -- repo leases and queues -------------------------------------------------------------------
    # The value names the execution and the step holding it (clarity.leases): a step can take its
    # execution's lease over, never another step's.
    def acquire_lease(self, repo: str, execution_id: str, ttl: float, token: str = "") -> bool:
        """Take the repo's single-run lease for an execution, or for its step `token`.

        Free, or the execution's between steps: taken. This very step's: renewed. A step's of the
        execution, and no token given: renewed as it is. Another step's or execution's: False.
        """
        return bool(self.r.eval(leases.ACQUIRE, 2, *self._lease_keys(repo, execution_id), execution_id, token,
                                int(ttl * 1000)))

    def renew_lease(self, repo: str, execution_id: str, ttl: float, token: str = "") -> bool:
        """Extend the lease if the execution (its step `token`) holds it."""
        return bool(self.r.eval(leases.RENEW, 1, self._k("repo", repo, "lease"), leases.value(execution_id, token),
                                int(ttl * 1000)))

    def keep_lease(self, repo: str, execution_id: str, token: str, ttl: float) -> str:
        """A step's heartbeat, one round trip: "renewed" while it holds the lease, "retaken" if it had
        lapsed and nobody recovered the execution meanwhile, "lost" if it is someone else's now."""
        return str(self.r.eval(leases.KEEP, 2, *self._lease_keys(repo, execution_id),
                               leases.value(execution_id, token), token, int(ttl * 1000)))

    def take_free_lease(self, repo: str, execution_id: str, ttl: float) -> bool:
        """Recovery: take the lease only if nobody holds it; the step that held it can never take it again."""
        return bool(self.r.eval(leases.TAKE_FREE, 2, *self._lease_keys(repo, execution_id), execution_id,
                                int(ttl * 1000)))

    def hand_back_lease(self, repo: str, execution_id: str, token: str) -> bool:
        """The step `token` ended: the lease (same expiry) is its execution's again, for the next step."""
        return bool(self.r.eval(leases.HAND_BACK, 2, *self._lease_keys(repo, execution_id),
                                leases.value(execution_id, token), token, execution_id))

    def release_lease(self, repo: str, execution_id: str, token: str = "") -> bool:
        """Give up the lease if the execution holds it (itself or any step of it; only step `token`'s if given)."""
        return bool(self.r.eval(leases.RELEASE, 1, self._k("repo", repo, "lease"), execution_id, token))

    def lease_holder(self, repo: str) -> str | None:
        """The execution id holding the repo's lease, if any (whichever step of it holds it)."""
        return leases.holder(self.r.get(self._k("repo", repo, "lease")))

    def lease_step(self, repo: str) -> str | None:
        """The token of the step holding the repo's lease ("" between steps), None if nobody holds it."""
        return leases.step(self.r.get(self._k("repo", repo, "lease")))

    def _lease_keys(self, repo: str, execution_id: str) -> tuple[str, str]:
        return self._k("repo", repo, "lease"), self._k("exec", execution_id, "step")

    def enqueue_waiting(self, repo: str, execution_id: str) -> int:
        """Put an execution in the repo's waiting line; returns its 1-based position."""
        return int(self.r.rpush(self._k("repo", repo, "waiting"), execution_id))

    def pop_waiting(self, repo: str) -> str | None:
        """Take the next waiting execution of a repo."""
        return self.r.lpop(self._k("repo", repo, "waiting"))

    def remove_waiting(self, repo: str, execution_id: str) -> None:
        """Take an execution out of the waiting line (it was stopped)."""
        self.r.lrem(self._k("repo", repo, "waiting"), 0, execution_id)

    def count_recovery(self, execution_id: str, task_id: str) -> int:
        """Count one more loss of the worker running this task; returns how many so far."""
        return int(self.r.hincrby(self._k("exec", execution_id, "recoveries"), task_id, 1))

    def reset_recoveries(self, execution_id: str, task_id: str) -> None:
        """Forget the losses counted for a task (a person retries it)."""
        self.r.hdel(self._k("exec", execution_id, "recoveries"), task_id)

    def count_deferral(self, execution_id: str) -> int:
        """Count one more step put off because GitHub asked us to slow down; returns how many in a row."""
        key = self._k("exec", execution_id, "deferrals")
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, 24 * 3600)
        return int(pipe.execute()[0])

    def reset_deferrals(self, execution_id: str) -> None:
        """A step went through: the next deferral is the first in a row again."""
        self.r.delete(self._k("exec", execution_id, "deferrals"))

    def record_duration(self, repo: str, seconds: float) -> None:
        """Remember how long a finished task took (the newest few per repository, and overall)."""
        pipe = self.r.pipeline()
        for key in (self._k("repo", repo, "durations"), self._k("durations")):
            pipe.lpush(key, round(seconds, 3))
            pipe.ltrim(key, 0, DURATIONS_KEPT - 1)
        pipe.execute()

    def durations(self, repo: str | None = None) -> list[float]:
        """Recent task durations of a repository (or of every repository), newest first."""
        key = self._k("repo", repo, "durations") if repo else self._k("durations")
        return [float(v) for v in self.r.lrange(key, 0, -1)]

    def refuse_drafts(self, repo: str, ttl: int = DRAFTS_REFUSED_TTL) -> None:
        """Remember that GitHub refuses draft PRs in this repository (private, of a Free or Pro owner).

        For a day: a plan bought or a repository made public is noticed by the next PR after that.
        """
        self.r.set(self._k("repo", repo, "no-drafts"), "1", ex=ttl)

    def drafts_refused(self, repo: str) -> bool:
        """Whether GitHub refused a draft PR in this repository lately (see `refuse_drafts`)."""
        return bool(self.r.exists(self._k("repo", repo, "no-drafts")))

    def waiting(self, repo: str) -> list[str]:
        """The repo's waiting line, first in line first."""
        return list(self.r.lrange(self._k("repo", repo, "waiting"), 0, -1))

    def set_flag(self, execution_id: str, flag: str, by: str) -> None:
        """Ask a running execution to `stop` or `pause`; the step checks flags between and during attempts."""
        self.r.set(self._k("exec", execution_id, "flag", flag), by, ex=7 * 24 * 3600)

    def flag(self, execution_id: str, flag: str) -> str | None:
        """Who raised the flag, if it is up."""
        return self.r.get(self._k("exec", execution_id, "flag", flag))

    def clear_flag(self, execution_id: str, flag: str) -> None:
        """Lower a flag once acted upon."""
        self.r.delete(self._k("exec", execution_id, "flag", flag))


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
