"""The execution page's model: its header's figures, its task tree's cells, its log and a control's notice.

Everything the page shows is computed here from the store, at each render. The live feed re-renders the
page when an event of its execution arrives (static/live.js fetches it and brings the DOM up to date),
so the page a person watches and the page a reload shows are one rendering (docs/ARCHITECTURE.md, "The
live feed"). Nothing here changes what it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clarity import eta
from clarity.models import Execution, TaskProgress
from clarity.status import TaskStatus
from clarity.store import Store
from dashboard import audit, board, logtext, tasktree, titles
from dashboard.insights import seconds_text

LOG_LINES = 300  # the newest stream entries the page shows (the live page keeps as many)
RUNNING = frozenset({TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING})


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    """What templates/execution.html renders."""

    execution: Execution
    tree: list[tasktree.Row]
    log: list[logtext.LogLine]
    cursor: str  # the newest stream id shown ("" before any)
    time_left: str
    durations: dict[str, str]  # task id → its duration cell ("running since 14:03:22 UTC" while it runs)
    requested: str  # the control whose notice still stands ("" once the engine acted on it, or none)
    at: str  # the stream id the control was pressed at

    @property
    def log_limit(self) -> int:
        """How many lines the page keeps (the live page drops older ones, as a reload would)."""
        return LOG_LINES


def build(store: Store, execution: Execution, requested: str = "", at: str = "") -> ExecutionPage:
    """The page of one execution; `requested`/`at`: the control pressed and the stream id it was pressed at."""
    entries = store.log_lines(execution.id, LOG_LINES)
    table = store.tasks(execution.id)
    tree = tasktree.rows(table, titles.for_groups(execution, tasktree.parents(table)))
    per_task = eta.task_seconds(store.durations(execution.repo)) if not execution.status.is_terminal else 0.0
    started = starts(entries)
    return ExecutionPage(execution, tree, logtext.lines(entries), entries[-1]["id"] if entries else "",
                         board.time_left(execution, per_task),
                         {task_id: duration_text(p, started.get(task_id)) for task_id, p in table.items()},
                         requested if requested and still_requested(at, entries) else "", at)


def starts(entries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """When each task last left `pending` (the start of its current run), from the entries shown."""
    found: dict[str, float] = {}
    for entry in entries:
        if entry.get("kind") == "task.status" and entry.get("from") == str(TaskStatus.PENDING) \
                and isinstance(entry.get("time"), (int, float)):
            found[str(entry.get("task"))] = float(entry["time"])
    return found


def duration_text(progress: TaskProgress, started: float | None) -> str:
    """A task's duration as people read it; while it runs, since when ("" before it ran)."""
    if progress.status in RUNNING:
        if started is None:
            return "running"
        return f"running since {datetime.fromtimestamp(started, UTC).strftime('%H:%M:%S')} UTC"
    if progress.duration > 0:
        return seconds_text(progress.duration)
    return ""


def still_requested(at: str, entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a control pressed at stream id `at` still waits: no status change shown after it.

    Every control the page offers (stop, pause, resume, retry) ends in a status change once the engine acts
    on it. Entries older than the page shows cannot be told apart, so a press older than all of them counts
    as acted on; so does a press without a readable position.
    """
    if not audit.is_stream_id(at):
        return False
    if entries and _key(str(entries[0].get("id", ""))) > _key(at) and len(entries) >= LOG_LINES:
        return False
    return not any(e.get("kind") == "execution.status" and _key(str(e.get("id", ""))) > _key(at) for e in entries)


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return (int(ms) if ms.isdigit() else -1, int(seq) if seq.isdigit() else 0)
