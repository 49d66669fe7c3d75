"""Execution history: finished executions with their task outcomes, trends computed from them, retention.

Finished means a terminal status (completed, failed, stopped): nothing leaves it, so the record no longer
changes. Paused and blocked executions wait for a person and are not history yet, and retention never
forgets them. A task's outcome counts when the engine `ran` it to one: completed or failed, not settled by
a person (`override_by`). Success rate = completed / ran; mean task time = the mean duration of the tasks
that ran (failed ones took time too). The task table keeps no time per task, so a task counts on the UTC
day its execution finished.

Everything is a pure function of executions and their task tables except `read_records`, `read_finished`,
`prune` and `prune_when_due`, which read or delete through the Store (task tables in one pipeline).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clarity import numbers
from clarity.models import Execution, TaskProgress
from clarity.status import TaskStatus
from clarity.store import Store

DAY = 86400.0
NO_TOOL = "none"  # the tool of a task that failed before any tool ran (none available)
CHUNK = 500  # executions read per round trip
SCAN_LIMIT = 5000  # executions a trend reads per installation, newest first
PRUNE_EVERY = 3600  # seconds between two retention passes of the periodic caller, across all workers
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Record:
    """A finished execution and its task table, in run order."""

    execution: Execution
    tasks: tuple[TaskProgress, ...]


@dataclass(frozen=True, slots=True)
class Tally:
    """Outcomes of the tasks the engine ran: how many passed, failed, and the seconds they took."""

    completed: int = 0
    failed: int = 0
    seconds: float = 0.0

    @property
    def ran(self) -> int:
        """Tasks with an outcome."""
        return self.completed + self.failed

    @property
    def success_rate(self) -> float:
        """Completed / ran, to three places (0 when nothing ran): clarity.numbers' rate, as every surface's."""
        return numbers.wire_rate(self.completed, self.failed)

    @property
    def mean_seconds(self) -> float:
        """Mean duration of a task that ran (0 when nothing ran)."""
        return round(self.seconds / self.ran, 3) if self.ran else 0.0

    def plus(self, task: TaskProgress) -> Tally:
        """This tally with one more task (unchanged when the engine did not run it to an outcome)."""
        if not ran(task):
            return self
        done = task.status is TaskStatus.COMPLETED
        return Tally(self.completed + done, self.failed + (not done), self.seconds + task.duration)


@dataclass(frozen=True, slots=True)
class Trend:
    """One customer (installation) over a window of days."""

    installation_id: int
    account: str
    executions: int
    tasks: Tally
    per_day: tuple[tuple[str, int], ...]  # (YYYY-MM-DD, tasks completed) per day of the window, oldest first
    tools: dict[str, Tally]
    error_classes: dict[str, int]


# -- the rules ------------------------------------------------------------------------------------
def is_finished(execution: Execution) -> bool:
    """Whether an execution belongs to history (a terminal status)."""
    return execution.status.is_terminal


def finished_time(execution: Execution) -> float:
    """When it finished (records from before `finished_at` was kept fall back to their last update)."""
    return execution.finished_at or execution.updated_at or execution.created_at


def ran(task: TaskProgress) -> bool:
    """Whether the engine ran the task to an outcome (a person's done or skipped is not the engine's): what
    clarity.numbers counts as passed or failed."""
    counted = numbers.row(task, in_scope=False)
    return bool(counted.passed or counted.failed)


def records(executions: Iterable[Execution], tables: dict[str, dict[str, TaskProgress]]) -> list[Record]:
    """The finished executions among `executions`, each with its task table (newest finished first)."""
    found = [Record(ex, tuple(tables.get(ex.id, {}).values())) for ex in executions if is_finished(ex)]
    return sorted(found, key=lambda r: (finished_time(r.execution), r.execution.id), reverse=True)


def tally(tasks: Iterable[TaskProgress]) -> Tally:
    """The outcomes of some tasks."""
    total = Tally()
    for task in tasks:
        total = total.plus(task)
    return total


def _tasks(found: Iterable[Record]) -> Iterator[TaskProgress]:
    return (task for record in found for task in record.tasks)


def by_tool(found: Iterable[Record]) -> dict[str, Tally]:
    """Outcomes per tool (the tool that ran last), by tool name; a task no tool ran is under NO_TOOL."""
    tools: dict[str, Tally] = {}
    for task in _tasks(found):
        if ran(task):
            name = task.tool or NO_TOOL
            tools[name] = tools.get(name, Tally()).plus(task)
    return dict(sorted(tools.items()))


def error_classes(found: Iterable[Record]) -> dict[str, int]:
    """How many tasks carry each error class (their last failed attempt's), most frequent first."""
    counts: dict[str, int] = {}
    for task in _tasks(found):
        if task.error_class:
            counts[task.error_class] = counts.get(task.error_class, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _day(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")


def window_start(now: float, days: int) -> float:
    """The first instant of a window of `days` UTC calendar days that ends with today (`now`'s day)."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (today - timedelta(days=days - 1)).timestamp()


def within(found: Iterable[Record], days: int, now: float) -> list[Record]:
    """The records that finished in the window of `days` days ending today."""
    start = window_start(now, days)
    return [r for r in found if start <= finished_time(r.execution) <= now]


def per_day(found: Iterable[Record], days: int, now: float) -> tuple[tuple[str, int], ...]:
    """Tasks the engine completed per UTC day of the window, oldest first, days without any included (0)."""
    start = window_start(now, days)
    counts = {_day(start + i * DAY + DAY / 2): 0 for i in range(days)}
    for record in within(found, days, now):
        day = _day(finished_time(record.execution))
        done = sum(1 for t in record.tasks if ran(t) and t.status is TaskStatus.COMPLETED)
        counts[day] = counts.get(day, 0) + done
    return tuple(counts.items())


def trends(found: Iterable[Record], days: int, now: float) -> list[Trend]:
    """Per customer (installation) over the window: executions, outcomes, tasks per day, tools, error classes.

    Customers are those with an execution that finished in the window, by account name.
    """
    customers: dict[int, list[Record]] = {}
    for record in within(found, days, now):
        customers.setdefault(record.execution.installation_id, []).append(record)
    out = [Trend(inst, mine[0].execution.account, len(mine), tally(_tasks(mine)), per_day(mine, days, now),
                 by_tool(mine), error_classes(mine)) for inst, mine in customers.items()]
    return sorted(out, key=lambda t: (t.account.lower(), t.installation_id))


def expired(executions: Iterable[Execution], now: float, days: float) -> list[str]:
    """Retention: the finished executions that finished more than `days` ago (none when `days` is 0)."""
    if days <= 0:
        return []
    cutoff = now - days * DAY
    return [ex.id for ex in executions if is_finished(ex) and finished_time(ex) < cutoff]


# -- reading and forgetting -----------------------------------------------------------------------
def read_records(store: Store, executions: Iterable[Execution]) -> list[Record]:
    """`records` for executions read from the store: their task tables come in one pipeline."""
    done = [ex for ex in executions if is_finished(ex)]
    return records(done, store.tasks_of([ex.id for ex in done]))


def _newest(store: Store, installation_id: int | None, scan: int) -> Iterator[Execution]:
    """Up to `scan` executions of an installation (None: of everyone), newest first, CHUNK per round trip."""
    position: tuple[float, str] | None = None
    while scan > 0:
        chunk = store.executions_before(position, min(CHUNK, scan), installation_id=installation_id)
        yield from chunk
        if len(chunk) < min(CHUNK, scan):
            return
        scan -= len(chunk)
        position = (chunk[-1].created_at, chunk[-1].id)


def read_finished(store: Store, installations: Collection[int] | None, since: float = 0.0,
                  scan: int = SCAN_LIMIT) -> list[Record]:
    """Finished executions of some installations (None: all) that finished at or after `since`, with tasks.

    An execution created long before `since` may have finished after it, so each installation's newest
    `scan` executions are read (retention keeps that number bounded), but only the tasks of those kept.
    """
    indexes: list[int | None] = [None] if installations is None else [*sorted(set(installations))]
    kept = [ex for inst in indexes for ex in _newest(store, inst, scan)
            if is_finished(ex) and finished_time(ex) >= since]
    return read_records(store, kept)


def prune(store: Store, now: float, days: float) -> list[str]:
    """Forget the finished executions that finished more than `days` ago; return their ids.

    Live, queued, paused and blocked executions stay whatever their age. Only executions created before
    the cutoff can have finished before it, so the scan starts there and reads nothing newer.
    """
    if days <= 0:
        return []
    gone: list[str] = []
    position: tuple[float, str] | None = (now - days * DAY, "")
    while position is not None:
        chunk = store.executions_before(position, CHUNK)
        for execution_id in expired(chunk, now, days):
            store.forget(execution_id)
            gone.append(execution_id)
        position = (chunk[-1].created_at, chunk[-1].id) if len(chunk) == CHUNK else None
    return gone


def prune_when_due(store: Store, days: float, every: int = PRUNE_EVERY,
                   now: float | None = None) -> list[str]:
    """`prune`, at most once per `every` seconds across every process sharing the store; never raises.

    For a periodic caller (the steps worker's reconciler thread): a failure is logged and must not end it.
    """
    if days <= 0:
        return []
    try:
        if not store.r.set(f"{store.namespace}:history:pruned", "1", nx=True, ex=every):
            return []
        gone = prune(store, time.time() if now is None else now, days)
    except Exception:  # an outage or a bug: the next pass tries again, the caller goes on
        log.exception("history retention pass failed")
        return []
    if gone:
        log.info("history: forgot %d finished execution(s) older than %g days", len(gone), days)
    return gone
