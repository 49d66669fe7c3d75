"""GitHub's rules for check-run requests, as a pure function from a request body to field changes.

The limits (DESIGN §13) and the wording of GitHub's answers: schema errors read
``Invalid request.\\n\\nOnly 65535 characters are allowed; 70000 were supplied.``, semantic ones are
``Validation Failed`` with an `errors` list (e.g. ``summary exceeds a maximum bytesize of 65535``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MAX_OUTPUT_CHARS = 65535
MAX_ANNOTATIONS = 50
MAX_ACTIONS = 3
ACTION_LIMITS = {"label": 20, "description": 40, "identifier": 20}
STATUSES = ("queued", "in_progress", "completed")
ACTIONS_ONLY_STATUSES = ("waiting", "requested", "pending")
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
)
ANNOTATION_LEVELS = ("notice", "warning", "failure")


class Rejected(Exception):
    """The request breaks a rule; `errors` set means a Validation Failed answer."""

    def __init__(self, message: str, errors: tuple[dict[str, Any], ...] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


def _schema(detail: str) -> Rejected:
    return Rejected(f"Invalid request.\n\n{detail}")


def _failed(field: str, message: str, code: str = "custom") -> Rejected:
    return Rejected(
        "Validation Failed", ({"resource": "CheckRun", "code": code, "field": field, "message": message},)
    )


def _string(body: dict[str, Any], key: str, where: str = "", required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise _schema(f'"{key}" wasn\'t supplied.')
        return None
    if not isinstance(value, str):
        raise _schema(f"For 'properties/{where}{key}', {value!r} is not a string.")
    return value


def _timestamp(body: dict[str, Any], key: str) -> datetime | None:
    value = _string(body, key)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _schema(f"For 'properties/{key}', \"{value}\" is not a date-time.") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)


def _text(output: dict[str, Any], key: str, required: bool) -> str | None:
    value = _string(output, key, "output/", required)
    if value is None:
        return None
    if len(value) > MAX_OUTPUT_CHARS:
        raise _schema(f"Only {MAX_OUTPUT_CHARS} characters are allowed; {len(value)} were supplied.")
    if len(value.encode()) > MAX_OUTPUT_CHARS:
        raise _failed(key, f"{key} exceeds a maximum bytesize of {MAX_OUTPUT_CHARS}")
    return value


def _items(container: dict[str, Any], key: str, limit: int) -> list[dict[str, Any]]:
    items = container.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _schema(f"For 'properties/{key}', {items!r} is not an array of objects.")
    if len(items) > limit:
        raise _schema(f"No more than {limit} items are allowed; {len(items)} were supplied.")
    return items


def _annotation(item: dict[str, Any]) -> dict[str, Any]:
    for key in ("path", "annotation_level", "message"):
        _string(item, key, "annotations/", required=True)
    for key in ("start_line", "end_line"):
        if not isinstance(item.get(key), int):
            raise _schema(
                f'"{key}" wasn\'t supplied.'
                if key not in item
                else f"For 'properties/{key}', {item[key]!r} is not an integer."
            )
    if item["annotation_level"] not in ANNOTATION_LEVELS:
        raise _schema(
            f"For 'properties/annotation_level', \"{item['annotation_level']}\" is not one of "
            f"{', '.join(ANNOTATION_LEVELS)}."
        )
    if ("start_column" in item or "end_column" in item) and item["start_line"] != item["end_line"]:
        raise _failed(
            "annotations",
            "start_column and end_column may only be given when start_line equals end_line",
            code="invalid",
        )
    return dict(item)


def _action(item: dict[str, Any]) -> dict[str, Any]:
    for key, limit in ACTION_LIMITS.items():
        value = _string(item, key, "actions/", required=True)
        assert value is not None
        if len(value) > limit:
            raise _schema(f"Only {limit} characters are allowed; {len(value)} were supplied.")
    return {key: item[key] for key in ACTION_LIMITS}


def check_run_changes(
    body: dict[str, Any], creating: bool, current_status: str | None = None
) -> dict[str, Any]:
    """Validate a create/update body; returns CheckRun field changes plus `new_annotations` to append."""
    changes: dict[str, Any] = {}
    for key in ("name", "head_sha"):
        if creating or key == "name":
            value = _string(body, key, required=creating)
            if value is not None:
                changes[key] = value
    for key in ("details_url", "external_id"):
        if key in body:
            changes[key] = _string(body, key)
    for key in ("started_at", "completed_at"):
        if key in body:
            changes[key] = _timestamp(body, key)
    status = _string(body, "status")
    conclusion = _string(body, "conclusion")
    if status is not None and status not in STATUSES:
        if status in ACTIONS_ONLY_STATUSES:
            raise _failed("status", f"Only GitHub Actions can set a status of {status}.")
        raise _schema(f"For 'properties/status', \"{status}\" is not one of {', '.join(STATUSES)}.")
    if conclusion is not None:
        if conclusion not in CONCLUSIONS or conclusion == "stale":
            raise _schema(
                f"For 'properties/conclusion', \"{conclusion}\" is not one of "
                f"{', '.join(c for c in CONCLUSIONS if c != 'stale')}."
            )
        status = "completed"  # GitHub: providing a conclusion sets the status to completed
        changes["conclusion"] = conclusion
    if status == "completed" and conclusion is None:
        raise _failed("conclusion", "conclusion is required when status is completed", code="missing_field")
    if status is not None:
        changes["status"] = status
    elif creating:
        changes["status"] = "queued"
    if "output" in body and body["output"] is not None:
        output = body["output"]
        if not isinstance(output, dict):
            raise _schema(f"For 'properties/output', {output!r} is not an object.")
        changes["title"] = _string(output, "title", "output/", required=True)
        changes["summary"] = _text(output, "summary", required=True)
        if "text" in output:
            changes["text"] = _text(output, "text", required=False)
        changes["new_annotations"] = tuple(
            _annotation(a) for a in _items(output, "annotations", MAX_ANNOTATIONS)
        )
    if "actions" in body:
        changes["actions"] = tuple(_action(a) for a in _items(body, "actions", MAX_ACTIONS))
    return changes
