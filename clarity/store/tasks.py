"""Each execution's task table, and the numbers counted from it.

Keys: `exec:<id>:tasks` (task id → clarity.models.TaskProgress as JSON, its error text redacted),
`exec:<id>:task_order` (task ids in the order the engine first wrote them) and `exec:<id>:scope` (the
open task ids the execution covers, clarity.numbers.scope). A row is written only together with the
execution's numbers, in one WATCH transaction over the record, the table and the scope, so a worker lost
at any instant leaves the table and the numbers agreeing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from clarity import numbers
from clarity.models import Execution, TaskProgress
from clarity.redaction import redact
from clarity.status import ExecutionStatus, TaskStatus, check_execution, check_task
from clarity.store.events import jsonable
from clarity.store.executions import Executions
from clarity.store.keyspace import Pipeline

Moves = list[tuple[TaskProgress, TaskProgress]]  # (before, after) of each task whose status changed


class TaskTable(Executions):
    """Task rows, their order and the execution's scope, written with the execution's numbers."""

    def _tasks_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "tasks")

    def _order_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "task_order")

    def _scope_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "scope")

    def _table_keys(self, execution_id: str) -> tuple[str, str, str]:
        """What a write of task rows watches: the execution's record, task table and scope."""
        return self._record_key(execution_id), self._tasks_key(execution_id), self._scope_key(execution_id)

    def tasks(self, execution_id: str) -> dict[str, TaskProgress]:
        """The per-execution task table, in insertion order of ids as the engine saw them."""
        raw = self.r.hgetall(self._tasks_key(execution_id))
        order = self.r.lrange(self._order_key(execution_id), 0, -1)
        return _ordered(raw, order)

    def tasks_of(self, execution_ids: Sequence[str], chunk: int = 500) -> dict[str, dict[str, TaskProgress]]:
        """The task tables of several executions, as `tasks` orders them, one round trip per `chunk` ids."""
        tables: dict[str, dict[str, TaskProgress]] = {}
        for start in range(0, len(execution_ids), chunk):
            ids = execution_ids[start:start + chunk]
            pipe = self.r.pipeline(transaction=False)
            for execution_id in ids:
                pipe.hgetall(self._tasks_key(execution_id))
                pipe.lrange(self._order_key(execution_id), 0, -1)
            replies = pipe.execute()
            for i, execution_id in enumerate(ids):
                tables[execution_id] = _ordered(replies[2 * i], replies[2 * i + 1])
        return tables

    def task(self, execution_id: str, task_id: str) -> TaskProgress:
        """One task's progress (pending if never touched)."""
        raw = self.r.hget(self._tasks_key(execution_id), task_id)
        return TaskProgress.from_json(raw) if raw else TaskProgress(task_id=task_id)

    def put_task(self, execution_id: str, progress: TaskProgress, actor: str = "engine") -> TaskProgress:
        """Write a task's progress; a status change is checked against the task state machine."""
        self.settle_tasks(execution_id, [progress], actor)  # the execution's numbers move with the row
        return progress

    def set_task_status(self, execution_id: str, task_id: str, status: TaskStatus, **fields: Any) -> TaskProgress:
        """Shorthand: read, change status and fields, write."""
        progress = dataclasses.replace(self.task(execution_id, task_id), status=status, **fields)
        return self.put_task(execution_id, progress)

    def scope(self, execution_id: str) -> frozenset[str]:
        """The open task ids the execution covered when its list was last read (clarity.numbers.scope)."""
        return frozenset(self.r.smembers(self._scope_key(execution_id)))

    def recount(self, execution_id: str) -> numbers.Numbers:
        """The execution's numbers counted afresh from its task table and scope (what its record must say)."""
        return numbers.count(self.tasks(execution_id), self.scope(execution_id))

    def set_scope(self, execution_id: str, task_ids: Sequence[str], titles: Mapping[str, str] | None = None) -> Execution:
        """Record the open tasks the execution covers now (its list just read, or its stop point moved).

        Each gets a row (pending, in this order) if it has none, an open row takes the list's title, and
        the execution's numbers are counted afresh from the whole table, all in one transaction; nothing
        is written (or announced) when nothing changed.
        """
        tasks_key, scope_key = self._tasks_key(execution_id), self._scope_key(execution_id)
        wanted = list(dict.fromkeys(task_ids))

        def record(pipe: Pipeline) -> tuple[Execution, dict[str, Any]]:
            current = self._read_record(pipe, execution_id)
            table = {i: TaskProgress.from_json(v) for i, v in pipe.hgetall(tasks_key).items()}
            old_scope = set(pipe.smembers(scope_key))
            rows = _titled_rows(table, wanted, titles or {})
            counted = numbers.count({**table, **rows}, set(wanted))
            changes = _moved_numbers(current, counted)
            if set(wanted) == old_scope and not rows and not changes:
                return current, changes  # nothing queued: the transaction is empty
            if changes:
                changes["updated_at"] = time.time()
            updated = dataclasses.replace(current, **changes)
            pipe.multi()
            if set(wanted) != old_scope:
                pipe.delete(scope_key)
                if wanted:
                    pipe.sadd(scope_key, *wanted)
            self._write_rows(pipe, execution_id, rows, [i for i in rows if i not in table])
            if changes:
                self._write_record(pipe, execution_id, updated, changes)
            return updated, changes

        keys = self._table_keys(execution_id)
        updated, changes = self.r.transaction(record, *keys, value_from_callable=True)
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
        ids = list(dict.fromkeys(w.task_id for w in writes))

        def settle(pipe: Pipeline) -> tuple[Execution, Execution, dict[str, Any], Moves]:
            current = self._read_record(pipe, execution_id)
            stored, in_scope = self._read_rows(pipe, execution_id, ids)
            before = {i: TaskProgress.from_json(v) if v else TaskProgress(task_id=i) for i, v in stored.items()}
            state, moves = _apply(before, writes)
            counted = numbers.of(current)
            for i in ids:
                counted += numbers.row(state[i], in_scope[i]) - numbers.row(before[i], in_scope[i])
            changes = _moved_numbers(current, counted)
            changes.update(fields)
            _stamp(changes, current, new, reason)
            updated = dataclasses.replace(current, **changes)
            pipe.multi()
            self._write_rows(pipe, execution_id, state, [i for i in ids if stored[i] is None])
            if changes:
                self._write_record(pipe, execution_id, updated, changes)
            return current, updated, changes, moves

        current, updated, changes, moves = self.r.transaction(settle, *self._table_keys(execution_id),
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

    def _read_rows(self, pipe: Pipeline, execution_id: str,
                   ids: Sequence[str]) -> tuple[dict[str, str | None], dict[str, bool]]:
        """The stored rows of `ids` (None: never written) and whether each is in scope (before `multi`)."""
        if not ids:
            return {}, {}
        stored = dict(zip(ids, pipe.hmget(self._tasks_key(execution_id), ids), strict=True))
        in_scope = dict(zip(ids, map(bool, pipe.smismember(self._scope_key(execution_id), ids)), strict=True))
        return stored, in_scope

    def _write_rows(self, pipe: Pipeline, execution_id: str, rows: Mapping[str, TaskProgress],
                    new: Sequence[str]) -> None:
        """Queue the write of `rows`, and the `new` ones' ids appended to the task order (after `multi`)."""
        if rows:
            pipe.hset(self._tasks_key(execution_id), mapping={i: _row(p) for i, p in rows.items()})
        if new:
            pipe.rpush(self._order_key(execution_id), *new)

    def _forget_tasks(self, pipe: Pipeline, execution: Execution) -> None:
        pipe.delete(self._tasks_key(execution.id))
        pipe.delete(self._order_key(execution.id))
        pipe.delete(self._scope_key(execution.id))


def _ordered(raw: Mapping[str, str], order: Sequence[str]) -> dict[str, TaskProgress]:
    """A task table as `order` lists its ids, any row missing from it after them."""
    table = {tid: TaskProgress.from_json(raw[tid]) for tid in order if tid in raw}
    table.update({tid: TaskProgress.from_json(v) for tid, v in raw.items() if tid not in table})
    return table


def _titled_rows(table: Mapping[str, TaskProgress], wanted: Sequence[str],
                 titles: Mapping[str, str]) -> dict[str, TaskProgress]:
    """The rows `set_scope` writes: each wanted task without a row, and each open row whose title changed."""
    rows: dict[str, TaskProgress] = {}
    for task_id in wanted:
        progress = table.get(task_id) or TaskProgress(task_id=task_id)
        title = titles.get(task_id) or progress.title
        if task_id not in table or (progress.title != title and progress.status in numbers.OPEN):
            rows[task_id] = dataclasses.replace(progress, title=title)
    return rows


def _apply(before: Mapping[str, TaskProgress],
           writes: Sequence[TaskProgress]) -> tuple[dict[str, TaskProgress], Moves]:
    """The rows after `writes`, in order, each status change checked (IllegalTransition), and the changes."""
    state, moves = dict(before), []
    for progress in writes:
        previous = state[progress.task_id]
        if previous.status != progress.status:
            check_task(previous.status, progress.status)
            moves.append((previous, progress))
        state[progress.task_id] = progress
    return state, moves


def _moved_numbers(current: Execution, counted: numbers.Numbers) -> dict[str, Any]:
    """The number fields of the record that `counted` changes."""
    return {k: v for k, v in counted.fields().items() if getattr(current, k) != v}


def _stamp(changes: dict[str, Any], current: Execution, new: ExecutionStatus | None, reason: str) -> None:
    """Add the status change (checked, IllegalTransition) and the times to a record's `changes`, if any."""
    if new is not None:
        changes.update(status=check_execution(current.status, new), reason=reason)
    if changes:
        changes["updated_at"] = time.time()
        if new is not None and new.is_settled:
            changes.setdefault("finished_at", changes["updated_at"])


def _row(progress: TaskProgress) -> str:
    """A task's stored form, its error text redacted (it quotes what checks and agents printed)."""
    if progress.last_error:
        progress = dataclasses.replace(progress, last_error=redact(progress.last_error))
    return progress.to_json()


def _shown(updated: Execution, changes: Mapping[str, Any]) -> dict[str, Any]:
    """What an event says of the fields that changed: each one, and the numbers whole when any of them moved."""
    shown = {k: jsonable(v) for k, v in changes.items() if k not in ("status", "reason", "updated_at")}
    if numbers.FIELDS & changes.keys():
        shown["numbers"] = numbers.of(updated).to_json()
    return shown


def _task_moved(previous: TaskProgress, progress: TaskProgress) -> dict[str, Any]:
    """The data of a `task.status` event."""
    return {"task": progress.task_id, "title": progress.title, "from": str(previous.status),
            "to": str(progress.status), "attempts": progress.attempts}
