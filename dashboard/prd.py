"""The PRD's data contract on the wire, beside Clarity's own fields: pure shaping, no I/O.

Clarity's fields stay as they are (epoch seconds, `duration` in seconds), so existing clients keep
working; the PRD's names are added next to them with the PRD's units: times are ISO 8601 in UTC
with milliseconds (`2024-05-01T12:00:00.000Z`), durations are whole milliseconds (`...Ms`), progress
is a percentage of the execution's tasks in scope (0 to 100). The customer is the installation's
account and the project is the repository (DESIGN §7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clarity import numbers
from clarity.models import Execution
from clarity.resources import Usage
from clarity.status import ExecutionStatus, TaskStatus

TASK_LOG_KEPT = 100  # executionLog entries per task (the newest)


def iso(seconds: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds; None for no time (0 or None)."""
    return iso_at(seconds) if seconds else None


def iso_at(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds: 2024-05-01T12:00:00.000Z."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds (None stays None)."""
    return None if seconds is None else round(seconds * 1000)


def percent_done(execution: Execution) -> float:
    """The share of the execution's tasks in scope that are done, in percent (a completed one is 100)."""
    counted = numbers.of(execution)
    if execution.status is ExecutionStatus.COMPLETED:
        return 100.0
    if counted.total <= 0:
        return 0.0
    return round(min(100.0, 100.0 * counted.done / counted.total), 1)


def metrics(execution: Execution) -> dict[str, Any]:
    """The PRD's execution metrics: the numbers every surface shows (clarity.numbers), active time (ms)
    and what the agents reported spending."""
    return {**numbers.of(execution).to_json(), "timeUsedMs": ms(execution.time_used),
            "costUsd": execution.cost_usd, "tokensUsed": execution.tokens_used}


def resource_usage(execution: Execution, sample: Usage | None) -> dict[str, Any]:
    """What the execution used (active time in ms, attempts, agents' cost and tokens) and, while a step
    runs it, its processes' latest sample (CPU in percent of one core, resident memory in bytes)."""
    return {"timeUsedMs": ms(execution.time_used), "attempts": execution.attempts, "costUsd": execution.cost_usd,
            "tokensUsed": execution.tokens_used,
            "cpuPercent": sample.cpu_percent if sample else None,
            "memoryBytes": sample.memory_bytes if sample else None,
            "processes": sample.processes if sample else None,
            "sampledAt": iso(sample.sampled_at) if sample else None}


def execution_fields(execution: Execution, web_url: str, public_url: str, sample: Usage | None) -> dict[str, Any]:
    """The PRD's AutonomousExecution fields Clarity's record lacks."""
    artifacts = f"/executions/{execution.id}/artifacts"
    return {"customerId": execution.account, "projectId": execution.repo,
            "repositoryUrl": f"{web_url.rstrip('/')}/{execution.repo}",
            "lastProgressAt": iso(execution.updated_at or execution.created_at),
            "progress": percent_done(execution),
            "resourceUsage": resource_usage(execution, sample),
            "artifacts": {"url": f"{public_url}/api/devteam{artifacts}", "page": f"{public_url}{artifacts}"}}


# -- messages: plain text, links apart ------------------------------------------------------------------
_LINK = re.compile(r"\[([^\]\n]{1,300})\]\((https?://[^)\s]{1,2000})\)")
_BOLD = re.compile(r"\*\*([^*\n]{1,300})\*\*")


def plain_text(message: str) -> tuple[str, list[dict[str, str]]]:
    """A message written for a GitHub comment, as plain text: each Markdown link becomes its text (its
    backticks dropped) and is returned apart, `**bold**` loses its stars; `code` keeps its backticks."""
    links: list[dict[str, str]] = []

    def unlink(found: re.Match[str]) -> str:
        text = found.group(1).strip("`")
        links.append({"text": text, "url": found.group(2)})
        return text

    return _BOLD.sub(r"\1", _LINK.sub(unlink, message)), links


# -- a task's history, from its execution's event stream ----------------------------------------------
@dataclass(slots=True)
class TaskHistory:
    """What the stream says about one task: its log, its failed attempts and how each was resolved."""

    log: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    started_at: float | None = None  # first moved to in-progress
    completed_at: float | None = None  # last moved to completed
    last_warning: str = ""  # the newest warning logged for the task (a failed attempt's text)


_RESOLUTIONS: dict[str, str] = {
    TaskStatus.COMPLETED: "resolved: the task passed", TaskStatus.FAILED: "failed: no attempt left",
    TaskStatus.SKIPPED: "skipped", TaskStatus.PENDING: "reset to pending (retry, replay or override)"}


def task_histories(entries: Iterable[Mapping[str, Any]]) -> dict[str, TaskHistory]:
    """Per task id, its executionLog and errorResolutionLog from stream entries (oldest first).

    A failed attempt is a `task.status` move to error-solving (the warning logged just before it is
    its error); what the task moved to next is its resolution: another attempt, passed, failed, skipped.
    """
    found: dict[str, TaskHistory] = {}
    for entry in entries:
        task = str(entry.get("task") or "")
        if not task:
            continue
        history = found.setdefault(task, TaskHistory())
        kind, when = str(entry.get("kind", "")), _time(entry.get("time"))
        if kind == "task.status":
            _moved(history, entry, when)
        elif kind == "log" and entry.get("level") == "warning":
            history.last_warning = str(entry.get("message", ""))
        if kind in ("log", "task.status"):
            history.log.append({"id": str(entry.get("id", "")), "timestamp": iso(when), "kind": kind,
                                "level": str(entry.get("level") or "info"), "message": describe(entry)})
    for history in found.values():
        history.log = history.log[-TASK_LOG_KEPT:]
    return found


def _moved(history: TaskHistory, entry: Mapping[str, Any], when: float | None) -> None:
    to = str(entry.get("to", ""))
    open_error = history.errors[-1] if history.errors and history.errors[-1]["resolvedAt"] is None else None
    if open_error is not None and to != TaskStatus.ERROR_SOLVING:
        attempt = entry.get("attempts")
        open_error["resolution"] = (f"retried: attempt {attempt}" if to == TaskStatus.IN_PROGRESS
                                    else _RESOLUTIONS.get(to, to))  # StrEnum keys: a status word finds its own
        open_error["resolvedAt"] = iso(when)
    if to == TaskStatus.ERROR_SOLVING:
        history.errors.append({"attempt": int(entry.get("attempts") or 0), "error": history.last_warning,
                               "occurredAt": iso(when), "resolution": "pending", "resolvedAt": None})
        history.last_warning = ""
    elif to == TaskStatus.IN_PROGRESS and history.started_at is None:
        history.started_at = when
    elif to == TaskStatus.COMPLETED:
        history.completed_at = when


def describe(entry: Mapping[str, Any]) -> str:
    """A task's log entry in one line of plain text: a log line's own text, or the status move."""
    if "message" in entry:
        return str(entry["message"])
    return f"task {entry.get('task')}: {entry.get('from')} → {entry.get('to')}"


def _time(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- the live feed: the PRD's ProgressUpdate --------------------------------------------------------
def progress_update(event: Mapping[str, Any], execution: Execution | None, finishes_in: float | None,
                    now: float) -> dict[str, Any]:
    """A live event with the PRD's ProgressUpdate fields added (the event's own keys are never replaced):
    executionId, taskId, timestamp, and from the execution's record progress (percent),
    estimatedCompletion (ISO, null when unknown or settled) and metrics.

    `message` stays what it was: a log line's text. A status event says what moved in `from`, `to` and
    `reason`, and the dashboard shows an event's `message` before those, so it is not given one.
    """
    added: dict[str, Any] = {
        "executionId": event.get("execution"),
        "taskId": str(event.get("task") or "") or (execution.current_task if execution else None) or None,
        "timestamp": iso(_time(event.get("time")))}
    if execution is not None:
        live = not execution.status.is_settled and finishes_in is not None
        added.update(progress=percent_done(execution), metrics=metrics(execution),
                     estimatedCompletion=iso_at(now + finishes_in) if live and finishes_in is not None else None)
    return {**event, **{k: v for k, v in added.items() if k not in event}}
