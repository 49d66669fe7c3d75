"""The execution page's log lines: each stream entry (clarity.store) as a time and a sentence people read.

The stream holds the events the store emits (`execution.status`, `task.status`, the engine's `log` lines,
`task.override`, `step.started`, ...); the page shows "14:03:22  Task 1.2 “Add CI”: in-progress → failed
(attempt 3)" rather than the event's name. A kind this module does not know is still shown, as words.
Times are UTC (the page says so). Pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PEOPLE_ONLY = frozenset({"engine", "scheduler", "github", "recovery", ""})  # actors that are not a person
_SKIPPED = frozenset({"id", "kind", "actor", "execution", "repo", "installation", "time", "status"})


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of the page's log."""

    id: str  # the stream id (the live feed's cursor)
    kind: str  # the event's kind, kept as a data attribute for scripts and tests
    level: str  # "info", "warning", "error"
    iso: str  # machine-readable time (the `datetime` of <time>), "" if the entry has none
    clock: str  # HH:MM:SS (UTC)
    text: str


def line(entry: Mapping[str, Any]) -> LogLine:
    """A stream entry (as `Store.log_lines` returns it) as a log line."""
    kind = str(entry.get("kind", ""))
    stamp = entry.get("time")
    moment = datetime.fromtimestamp(float(stamp), UTC) if isinstance(stamp, (int, float)) else None
    say = _SAY.get(kind, _other)
    return LogLine(str(entry.get("id", "")), kind, str(entry.get("level") or "info"),
                   moment.isoformat(timespec="seconds") if moment else "",
                   moment.strftime("%H:%M:%S") if moment else "--:--:--", say(entry))


def lines(entries: list[dict[str, Any]]) -> list[LogLine]:
    """Every entry as a line, oldest first (as given)."""
    return [line(entry) for entry in entries]


# -- what each kind says ------------------------------------------------------------------------------
def _by(entry: Mapping[str, Any]) -> str:
    """" by @ada" when a person did it, "" when the engine did."""
    actor = str(entry.get("actor", ""))
    return "" if actor in PEOPLE_ONLY else f" by @{actor}"


def _task(entry: Mapping[str, Any]) -> str:
    return f"Task {entry.get('task', '?')}" + _said(entry, "title", " “{}”")


def _created(entry: Mapping[str, Any]) -> str:
    return f"Execution created{_by(entry)}, {entry.get('status') or 'queued'}"


def _status(entry: Mapping[str, Any]) -> str:
    return f"Execution {entry.get('from', '?')} → {entry.get('to', '?')}{_by(entry)}" + _said(entry, "reason")


def _task_status(entry: Mapping[str, Any]) -> str:
    attempts = entry.get("attempts")
    attempt = f" (attempt {attempts})" if isinstance(attempts, int) and attempts > 0 else ""
    return f"{_task(entry)}: {entry.get('from', '?')} → {entry.get('to', '?')}{attempt}{_by(entry)}"


def _log(entry: Mapping[str, Any]) -> str:
    message = str(entry.get("message") or "")
    level = str(entry.get("level") or "info")
    return message if level == "info" else f"{level.capitalize()}: {message}"


def _override(entry: Mapping[str, Any]) -> str:
    return f"{_task(entry)} marked {entry.get('outcome', '?')}{_by(entry)}"


def _said(entry: Mapping[str, Any], field: str, form: str = ": {}") -> str:
    """`form` filled with the entry's `field` when it has one, else ""."""
    value = str(entry.get(field) or "")
    return form.format(value) if value else ""


def _step_started(entry: Mapping[str, Any]) -> str:
    return "Step started" + _said(entry, "worker", " on worker {}")


def _step_finished(entry: Mapping[str, Any]) -> str:
    return "Step finished" + _said(entry, "outcome")


def _reprioritised(entry: Mapping[str, Any]) -> str:
    return f"Priority {entry.get('from', '?')} → {entry.get('to', '?')}{_by(entry)}"


def _budget_changed(entry: Mapping[str, Any]) -> str:
    return f"Budget set to {entry.get('budget') or 'the repository’s'}{_by(entry)}"


def _budget_exhausted(entry: Mapping[str, Any]) -> str:
    return "Budget exhausted" + _said(entry, "reason")


def _deferred(entry: Mapping[str, Any]) -> str:
    return f"GitHub asked to slow down: next step in {entry.get('seconds', '?')} s" + _said(entry, "why", " ({})")


def _other(entry: Mapping[str, Any]) -> str:
    words = str(entry.get("kind") or "event").replace(".", " ").replace("_", " ")
    return f"{words[:1].upper()}{words[1:]}{_by(entry)}" + _rest(entry, prefix=": ")


def _rest(entry: Mapping[str, Any], prefix: str) -> str:
    """The entry's other fields as "name value" pairs (for kinds without a sentence of their own)."""
    found = [f"{name} {value}" for name, value in entry.items()
             if name not in _SKIPPED and name not in ("worker", "job") and value not in ("", None, [], {})]
    return prefix + ", ".join(found) if found else ""


_SAY: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "execution.created": _created, "execution.status": _status, "task.status": _task_status, "log": _log,
    "task.override": _override, "step.started": _step_started, "step.finished": _step_finished,
    "execution.reprioritised": _reprioritised, "budget.changed": _budget_changed,
    "budget.exhausted": _budget_exhausted, "execution.deferred": _deferred,
}
