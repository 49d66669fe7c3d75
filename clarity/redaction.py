"""One redactor for every text that leaves the process: logs, events, comments, check runs, artifacts."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from clarity.logcontext import ContextFilter, JsonFormatter

MASK = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Token shapes that are secrets whoever minted them: GitHub tokens, OpenAI/Anthropic style keys,
# JWTs (three base64url parts starting with a JSON header) and PEM private key blocks.
_PATTERNS = (
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL),
    re.compile(r"\b(?:ghs|ghp|gho|ghu|ghr)_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer|token)\s+)[A-Za-z0-9+/=._-]{8,}"),
)
_MIN_SECRET = 6


class Redactor:
    """Masks every known secret value and every token-shaped string."""

    def __init__(self, values: tuple[str, ...] | list[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._compiled: re.Pattern[str] | None = None
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Teach the redactor a live secret (a token minted at run time, a key read from settings)."""
        if not value or len(value.strip()) < _MIN_SECRET:
            return
        parts = {value, value.strip()}
        # A PEM key may be printed line by line; mask its body lines too.
        if "-----BEGIN" in value:
            parts |= {line for line in value.splitlines() if len(line) >= 16 and "-----" not in line}
        with self._lock:
            if parts <= self._values:
                return
            self._values |= parts
            ordered = sorted(self._values, key=len, reverse=True)
            self._compiled = re.compile("|".join(re.escape(v) for v in ordered))

    def __call__(self, text: str) -> str:
        """Return `text` with every secret masked."""
        if not text:
            return text
        compiled = self._compiled
        if compiled is not None:
            text = compiled.sub(MASK, text)
        for pattern in _PATTERNS:
            if pattern.groups:
                text = pattern.sub(lambda m: m.group(1) + MASK, text)
            else:
                text = pattern.sub(MASK, text)
        return text


redact = Redactor()
"""The process-wide redactor; settings and token minting feed it."""


class RedactingFilter(logging.Filter):
    """Redacts formatted exception text before a handler writes it (messages are redacted at creation)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def _redacting_factory(base: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken %-format: keep the raw message, still redacted
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        return record

    factory.clarity_redacting = True  # type: ignore[attr-defined]
    return factory


def install_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Redact every log record at creation (so every handler, ours or not, sees clean text); log to stderr.

    `fmt` is "text" (a human line) or "json" (one object per line with the context fields of
    clarity.logcontext); calling again switches the format of the one handler installed.
    """
    base = logging.getLogRecordFactory()
    if not getattr(base, "clarity_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(base))
    root = logging.getLogger()
    handler = next((h for h in root.handlers if any(isinstance(f, RedactingFilter) for f in h.filters)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.addFilter(RedactingFilter())
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
        root.setLevel(level)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
