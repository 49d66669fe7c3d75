"""THE success rate, one formula: tasks that passed / tasks that finished, and how each surface shows it.

A leaf of the kernel, so that the execution record (clarity.models) can carry its rate without
importing clarity.numbers, which reads the record; clarity.numbers offers the same functions to
everyone else.
"""

from __future__ import annotations

NO_RATE = "—"  # the success rate before any task finished


def rate(passed: int, failed: int) -> float | None:
    """THE success rate: tasks that passed / tasks that finished (passed or failed); None if none finished."""
    finished = passed + failed
    return passed / finished if finished else None


def rate_text(passed: int, failed: int) -> str:
    """The rate as people read it: "75%", or "—" before any task finished."""
    found = rate(passed, failed)
    return NO_RATE if found is None else f"{found * 100:.0f}%"


def wire_rate(passed: int, failed: int) -> float:
    """The rate as the API and the history carry it: three places, 0.0 before any task finished."""
    found = rate(passed, failed)
    return round(found, 3) if found is not None else 0.0
