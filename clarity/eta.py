"""Time estimates from measured task durations: pure arithmetic shared by the engine and the dashboard."""

from __future__ import annotations

import statistics

from clarity import numbers
from clarity.models import Execution
from clarity.status import ExecutionStatus

DEFAULT_TASK_SECONDS = 120.0  # the estimate before any task of the repository has finished
WAITING = "waiting for a worker"  # what the overview says of an execution that has not read its list yet


def task_seconds(durations: list[float]) -> float:
    """The typical task duration from recent ones (the median resists one slow outlier)."""
    return statistics.median(durations) if durations else DEFAULT_TASK_SECONDS


def remaining_tasks(execution: Execution) -> int:
    """Tasks still to run in the execution's scope (clarity.numbers); one for a live execution that has not
    read its list yet (it will have at least that much to do)."""
    found = numbers.of(execution)
    if found.known:
        return found.left
    return 0 if execution.status.is_terminal else 1


def unknown(execution: Execution) -> bool:
    """Whether nothing can be estimated yet: the execution waits for a worker to read its list (0 tasks)."""
    return execution.status in (ExecutionStatus.QUEUED, ExecutionStatus.INITIALIZING) and not numbers.of(execution).known


def eta_text(seconds: float | None) -> str:
    """A short human duration: "about 3 min", "about 2 h 5 min", "unknown"."""
    if seconds is None:
        return "unknown"
    minutes = max(int(seconds / 60 + 0.5), 1)  # half up: round() would make 4.5 min "about 4"
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"
