"""One redactor for every text that leaves the process: logs, events, comments, check runs, artifacts.

A known secret is masked as it is and in the forms an agent prints it in: base64 and base64url (also
inside a longer blob, at each of the three byte alignments), hex, percent-encoding, and split by
whitespace, line breaks, quotes or `+` (`"abc" "def"`, a newline every 20 characters). Every form has a
literal needle that each copy contains, so a text holding no secret costs substring searches, not regexes.
Token shapes (GitHub tokens, API keys, JWTs, Authorization headers) and private key blocks are masked
whoever minted them; a key block cut off before its END line loses its base64 lines, not the rest of the text.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import string
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clarity.logcontext import ContextFilter, JsonFormatter

MASK = "[REDACTED]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# A private key block: to its END line; cut off before one (no END before the next header), its header,
# encapsulated headers and base64 lines only, never the rest of the text. A break is a line break, or one
# escaped inside a JSON or Python string; the bounded repeats keep a hostile text from making it slow.
_KEY_HEADER = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_KEY_END = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_BREAK = r"(?:[ \t]{0,8}(?:\r?\n|\\r\\n|\\n)){1,3}[ \t]{0,16}"
_KEY_BODY = re.compile(  # possessive repeats: nothing to give back, so no backtracking bookkeeping
    rf"(?:{_BREAK}(?:Proc-Type|DEK-Info|Version|Comment|Hash|Charset):[^\r\n\\\"']*)*+"
    rf"(?:(?:{_BREAK}|[ \t]{{1,4}})[A-Za-z0-9+/=]++(?=[ \t]*(?:\r?\n|\\[rn]|[\"'`,;)\]}}]|\Z)))*+")
# Token shapes that are secrets whoever minted them: GitHub tokens, OpenAI/Anthropic style keys and JWTs
# (three base64url parts starting with a JSON header). Each starts with its literal (the word boundary is a
# lookbehind after it), so the regex engine skips to candidates instead of trying every position.
_PATTERNS = (
    re.compile(r"gh[spour]_(?<!\wgh[spour]_)[A-Za-z0-9]{20,}\b"),
    re.compile(r"github_pat_(?<!\wgithub_pat_)[A-Za-z0-9_]{20,}\b"),
    re.compile(r"sk-(?<!\wsk-)[A-Za-z0-9_-]{16,}\b"),
    re.compile(r"eyJ(?<!\weyJ)[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
)
_AUTHORIZATION = re.compile(r"(?i)(authorization:\s*(?:basic|bearer|token)\s+)[A-Za-z0-9+/=._-]{8,}")
_MIN_SECRET = 6
_MIN_ENCODED = 8  # shorter values would turn up inside unrelated base64, hex and split prose
_BASE64 = frozenset(string.ascii_letters + string.digits + "+/")
_BASE64URL = frozenset(string.ascii_letters + string.digits + "-_")
# What may stand between two characters of a split copy: whitespace, quotes, `+`, backslashes and the
# escaped line breaks of a JSON or Python string (`"abc" "def"`, `'abc' +\n 'def'`, `abc\ndef`).
_GAP = r"""(?:\\[nrt]|[ \t\n\r\f\v"'+\\])*"""
_GAP_CHARS = str.maketrans("", "", " \t\n\r\f\v\"'+\\")


@dataclass(frozen=True, slots=True)
class _Form:
    """One form of a secret: a literal every copy holds, and how far a copy reaches past it (base64)."""

    needle: str
    alphabet: frozenset[str] = frozenset()
    before: int = 0  # characters before the needle that still hold bits of the secret
    after: int = 0  # characters after it that do (then `=` padding)

    def mask(self, text: str) -> str:
        """`text` with every copy of this form replaced by MASK."""
        if not self.alphabet:
            return text.replace(self.needle, MASK)
        out: list[str] = []
        done, at = 0, text.find(self.needle)
        while at >= 0:
            start, end = at, at + len(self.needle)
            while start > done and at - start < self.before and text[start - 1] in self.alphabet:
                start -= 1
            stop = min(end + self.after, len(text))
            while end < stop and text[end] in self.alphabet:
                end += 1
            padding = end + 2 if self.after else end  # a block that ends inside the secret is padded
            while end < min(padding, len(text)) and text[end] == "=":
                end += 1
            out += (text[done:start], MASK)
            done, at = end, text.find(self.needle, end)
        return "".join(out) + text[done:]


def _flatten(text: str) -> str:
    """`text` without what may split a secret: the split copies' needles are searched in it."""
    if "\\" in text:
        text = text.replace("\\n", "").replace("\\r", "").replace("\\t", "")
    return text.translate(_GAP_CHARS)


def _base64_forms(raw: bytes) -> list[_Form]:
    """The stable middle of the secret's base64 at each of the three byte offsets it can start at."""
    forms = []
    for alphabet, encode in ((_BASE64, base64.b64encode), (_BASE64URL, base64.urlsafe_b64encode)):
        for skew in range(3):
            encoded = encode(bytes(skew) + raw).decode()
            whole = (skew + len(raw)) // 3 * 4  # the characters that only the secret's bytes decide
            first = 4 if skew else 0
            forms.append(_Form(encoded[first:whole], alphabet, first, 3 if whole < len(encoded) else 0))
    return forms


def _forms(secret: str) -> list[_Form]:
    """The secret as it is, base64 (any alignment), hex and percent-encoded."""
    forms = [_Form(secret)]
    if len(secret) < _MIN_ENCODED:
        return forms
    raw = secret.encode()
    percent = "".join(f"%{byte:02X}" for byte in raw)
    literals = (raw.hex(), raw.hex().upper(), percent, percent.lower(), urllib.parse.quote(secret, safe=""),
                urllib.parse.quote_plus(secret))
    forms += [f for f in _base64_forms(raw) if len(f.needle) >= _MIN_ENCODED]
    return forms + [_Form(literal) for literal in literals if literal != secret]


def _mask_keys(text: str) -> str:
    """`text` with every private key block masked (see _KEY_BODY for one without its END line)."""
    out: list[str] = []
    done = 0
    while (header := _KEY_HEADER.search(text, done)) is not None:
        following = text.find("-----BEGIN ", header.end())
        end = _KEY_END.search(text, header.end(), following if following >= 0 else len(text))
        body = _KEY_BODY.match(text, header.end())
        out += (text[done:header.start()], MASK)
        done = end.end() if end is not None else body.end() if body is not None else header.end()
    return "".join(out) + text[done:] if out else text


@functools.lru_cache(maxsize=256)
def _split_pattern(needle: str) -> re.Pattern[str]:
    """A copy of `needle` with anything of `_GAP` between its characters (compiled when first needed)."""
    return re.compile(_GAP.join(re.escape(char) for char in needle))


class Redactor:
    """Masks every known secret value (as it is, encoded or split) and every token-shaped string."""

    def __init__(self, values: tuple[str, ...] | list[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._forms: tuple[_Form, ...] = ()
        self._splits: tuple[str, ...] = ()  # each secret with `_GAP` removed: split copies are looked for
        for value in values:
            self.add(value)

    def add(self, value: str | None) -> None:
        """Teach the redactor a live secret (a token minted at run time, a key read from settings)."""
        if not value or len(value.strip()) < _MIN_SECRET:
            return
        parts = {value, value.strip()}
        if "-----BEGIN" in value:  # a PEM key may be printed line by line: mask its body lines too (as they are)
            parts |= {line for line in value.splitlines() if len(line) >= 16 and "-----" not in line}
        with self._lock:
            if parts <= self._values:
                return
            self._values |= parts
            forms = {f.needle: f for f in self._forms}
            for form in _forms(value.strip()) + [_Form(part) for part in parts]:
                forms.setdefault(form.needle, form)
            flat = _flatten(value.strip())
            splits = {*self._splits, flat} if len(flat) >= _MIN_ENCODED else set(self._splits)
            # Longest first: a whole key goes before its lines, a value before any value inside it.
            self._forms = tuple(sorted(forms.values(), key=lambda f: len(f.needle), reverse=True))
            self._splits = tuple(sorted(splits, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        """Return `text` with every secret masked."""
        if not text:
            return text
        forms, splits = self._forms, self._splits  # add() replaces whole tuples: read each once
        for form in forms:
            if form.needle in text:
                text = form.mask(text)
        if splits:
            flat = _flatten(text)
            for needle in splits:
                if needle in flat:
                    text = _split_pattern(needle).sub(MASK, text)
        text = _mask_keys(text)
        for pattern in _PATTERNS:
            text = pattern.sub(MASK, text)
        if "authorization" in text.lower():
            text = _AUTHORIZATION.sub(lambda m: m.group(1) + MASK, text)
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
        if record.exc_info and not record.exc_text:  # a traceback quotes values: clean before any handler sees it
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
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
