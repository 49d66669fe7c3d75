"""Time estimates from measured task durations: pure arithmetic shared by the engine and the dashboard."""

from __future__ import annotations

import statistics

from clarity.models import Execution

DEFAULT_TASK_SECONDS = 120.0  # the estimate before any task of the repository has finished


def task_seconds(durations: list[float]) -> float:
    """The typical task duration from recent ones (the median resists one slow outlier)."""
    return statistics.median(durations) if durations else DEFAULT_TASK_SECONDS


def remaining_tasks(execution: Execution) -> int:
    """Tasks still to do in the execution's scope, as far as it knows (at least one while live)."""
    left = max(execution.tasks_total - execution.tasks_completed, 0)
    return left or (1 if not execution.status.is_terminal else 0)


def eta_text(seconds: float | None) -> str:
    """A short human duration: "about 3 min", "about 2 h 5 min", "unknown"."""
    if seconds is None:
        return "unknown"
    minutes = max(int(seconds / 60 + 0.5), 1)  # half up: round() would make 4.5 min "about 4"
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"
