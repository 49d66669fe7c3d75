"""Webhook payloads read once, at the edge of each handler: typed values, or a PayloadError saying what is wrong.

A delivery's signature proves GitHub sent it, not that its JSON has the shape the handlers expect (a
redelivered old format, a field GitHub made nullable, a test tool). So the handlers never index the
raw dict: each reads what it needs through `Payload`, which checks the type of every field it hands
out and names the first one that is missing or wrong. A handler that gets a PayloadError ignores the
delivery with that reason (jobs.intake logs it); nothing else about the shape can raise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

REPO_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")  # GitHub's `owner/name`
LOGIN = re.compile(r"[A-Za-z0-9_-]{1,100}(?:\[bot\])?")  # users, `_shortcode` managed users, `name[bot]` apps
MAX_ID = 2**63 - 1  # GitHub's ids are 64-bit; larger numbers are not ids
_SHOWN = 40  # characters of a bad value quoted in a reason
_ABSENT = object()


class PayloadError(ValueError):
    """A delivery that does not have the shape GitHub sends; the message names the field."""


def _kind(value: object) -> str:
    """How a bad value is described in a reason: its JSON type, and a short quote of a text or number."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {str(value)[:_SHOWN]}"
    if isinstance(value, str):
        return f"the text {value[:_SHOWN]!r}" + ("…" if len(value) > _SHOWN else "")
    return "a list" if isinstance(value, list) else "an object"


@dataclass(frozen=True, slots=True)
class Installation:
    """The installation a delivery is for, and the account that installed the app."""

    id: int
    account: str


class Payload:
    """Typed reads of one delivery's JSON object; a missing or mistyped field raises PayloadError."""

    __slots__ = ("data", "event")

    def __init__(self, event: str, data: object) -> None:
        if not isinstance(data, dict):
            raise PayloadError(f"the {event} payload is {_kind(data)}, not a JSON object")
        self.event = event
        self.data: dict[str, Any] = data

    def _problem(self, path: str, why: str) -> PayloadError:
        return PayloadError(f"malformed {self.event} payload: missing or bad '{path}' ({why})")

    def _get(self, path: str) -> object:
        """The value at a dotted path; _ABSENT when it (or an object on the way) is missing or null."""
        node: object = self.data
        walked: list[str] = []
        for key in path.split("."):
            if not isinstance(node, dict):
                raise self._problem(".".join(walked), f"{_kind(node)}, not an object")
            walked.append(key)
            node = node.get(key)
            if node is None:
                return _ABSENT
        return node

    def _required(self, path: str) -> object:
        value = self._get(path)
        if value is _ABSENT:
            raise self._problem(self._first_missing(path), "absent or null")
        return value

    def _first_missing(self, path: str) -> str:
        """The shortest prefix of `path` that is absent or null (what a reader of the reason should look for)."""
        parts = path.split(".")
        for end in range(1, len(parts) + 1):
            if self._get(".".join(parts[:end])) is _ABSENT:
                return ".".join(parts[:end])
        return path

    def text(self, path: str, default: str | None = None) -> str:
        """A text field; `default` when absent or null (required when no default is given)."""
        value = self._get(path) if default is not None else self._required(path)
        if value is _ABSENT:
            return default or ""
        if not isinstance(value, str):
            raise self._problem(path, f"{_kind(value)}, not a text")
        return value

    def number(self, path: str) -> int:
        """A required id or number: a whole JSON number from 1 to 2^63-1 (not a boolean, not a text)."""
        value = self._required(path)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
            raise self._problem(path, f"{_kind(value)}, not an id")
        return value

    def flag(self, path: str) -> bool:
        """A boolean field; absent or null is False."""
        value = self._get(path)
        if value is _ABSENT:
            return False
        if not isinstance(value, bool):
            raise self._problem(path, f"{_kind(value)}, not a boolean")
        return value

    def present(self, path: str) -> bool:
        """Whether an object field is there and not null (`issue.pull_request` marks a PR)."""
        value = self._get(path)
        if value is _ABSENT:
            return False
        if not isinstance(value, dict):
            raise self._problem(path, f"{_kind(value)}, not an object")
        return True

    def repo(self, path: str = "repository.full_name") -> str:
        """A required `owner/name`, as GitHub spells repository names."""
        value = self.text(path)
        if not REPO_NAME.fullmatch(value):
            raise self._problem(path, f"{_kind(value)}, not an owner/name")
        return value

    def login(self, path: str, default: str | None = None) -> str:
        """A user's login (`default` when absent or null; required when no default is given)."""
        value = self.text(path, default)
        if value != default and not LOGIN.fullmatch(value):
            raise self._problem(path, f"{_kind(value)}, not a login")
        return value

    def optional_repo(self, path: str = "repository.full_name") -> str | None:
        """An `owner/name` if the field is there; None if absent or null."""
        return None if self._get(path) is _ABSENT else self.repo(path)

    def repos(self, path: str) -> tuple[str, ...]:
        """The `full_name`s of a list of repositories; absent or null is none."""
        value = self._get(path)
        if value is _ABSENT:
            return ()
        if not isinstance(value, list):
            raise self._problem(path, f"{_kind(value)}, not a list")
        return tuple(self._item_repo(path, index, item) for index, item in enumerate(value))

    def _item_repo(self, path: str, index: int, item: object) -> str:
        where = f"{path}.{index}.full_name"
        if not isinstance(item, dict):
            raise self._problem(f"{path}.{index}", f"{_kind(item)}, not an object")
        name = item.get("full_name")
        if not isinstance(name, str) or not REPO_NAME.fullmatch(name):
            raise self._problem(where, f"{_kind(name)}, not an owner/name")
        return name

    def installation(self) -> Installation:
        """The installation (required: an App's deliveries always name one) and its account's login."""
        if self._get("installation.id") is _ABSENT:
            raise PayloadError(f"the {self.event} payload has no installation id (is the app installed?)")
        return Installation(self.number("installation.id"), self.text("installation.account.login", default=""))

    def optional_installation(self) -> Installation | None:
        """The installation if the delivery names one."""
        return None if self._get("installation.id") is _ABSENT else self.installation()
