"""Who a log line is about: context fields bound at the edges, and the JSON line format that carries them.

The webhook view binds `delivery_id`; the intake job adds `installation` and `repo`; the step binds
`execution_id` and `task_id`. Every record logged inside such a block carries them, whatever module
logs it. Values live in contextvars, so threads and requests never see each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

FIELDS = ("delivery_id", "installation", "repo", "execution_id", "task_id")

# Each bind sets a new dict, so a dict seen by a record is never changed afterwards.
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("clarity_log_context", default=None)


def current() -> dict[str, str]:
    """The fields bound here and now (a copy)."""
    return dict(_context.get() or {})


@contextlib.contextmanager
def bind(**fields: object) -> Iterator[None]:
    """Add context fields for the block; None or "" leaves a field out. Unknown names raise."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    merged = {**(_context.get() or {}), **{k: str(v) for k, v in fields.items() if v is not None and v != ""}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Stamps each record with the context bound where it was logged (before any handler formats it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "clarity_context"):
            record.clarity_context = _context.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the bound context fields, and exc if any.

    Secrets never reach it: the message was redacted when the record was created, the exception text
    by the handler's RedactingFilter (clarity.redaction.install_logging), and context values are ids.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "clarity_context", None) or _context.get() or {}
        for name in FIELDS:
            if name in context:
                line[name] = context[name]
        if record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def _iso(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"
