"""What a `/clarity` command is made of: verbs, the row that describes each, and the values they take.

The table itself is github_app.commands.GRAMMAR; the parser (github_app.command_parser) and the help
(github_app.command_help) read rows of the shapes defined here. Pure and I/O free. Each value is read
by a function that returns its canonical form or raises `Problem` with a message for the person who
typed it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from clarity import budget as budgets
from clarity.actors import literal
from github_app.roles import Role

PREFIX = "/clarity"
SHOWN_CHARS = 60  # echo at most this much of a bad word back to the user
REASON_CHARS = 200  # an override's reason: it goes into comments, `task_outcomes.md`, the PR and a commit

_TASK_ID = re.compile(r"[0-9]+(?:\.[0-9]+)*\.?")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_NUMBER = re.compile(r"[0-9]{1,3}")
_BUDGET_WORD = re.compile(r"[A-Za-z0-9$=._-]{1,40}")


class Verb(StrEnum):
    """What a command asks Clarity to do."""

    RUN = "run"
    STOP_POINT = "stop-point"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    RETRY = "retry"
    STATUS = "status"
    PRIORITY = "priority"
    OVERRIDE = "override"
    HELP = "help"


@dataclass(frozen=True, slots=True)
class Command:
    """One accepted command: its verb, where it was written, and its validated arguments."""

    verb: Verb
    line: int  # 1-based line number in the comment
    text: str  # the line as written, without surrounding whitespace
    until: str | None = None
    only: str | None = None
    tool: str | None = None
    priority: int | None = None
    task_id: str | None = None  # for stop-point, retry and override
    outcome: str | None = None  # for override: "done" or "skipped"
    budget: str | None = None  # canonical budget words (clarity.budget.parse_spec reads them)
    reason: str | None = None  # for override: why, in the person's words (the rest of the line)


@dataclass(frozen=True, slots=True)
class Reply:
    """Text for the user: help or a precise problem (the Atlantis 'comment response')."""

    text: str
    line: int | None = None
    problem: str | None = None


class Problem(Exception):
    """A malformed command; the message is written for the person who typed it."""


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """What the word after a keyword must be, how help shows it, and how it is read."""

    placeholder: str  # as shown in usage: "<id>"
    noun: str  # as named in problems: "task id"
    example: str
    read: Callable[[str], str | int]  # raises Problem


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """A keyword option of a verb; the first spelling is canonical, the rest are aliases."""

    field: str  # the Command field it fills
    names: tuple[tuple[str, ...], ...]
    value: ValueSpec
    summary: str
    many: bool = False  # the value is every word up to the next option, not just one
    rest: bool = False  # the value is every word to the end of the line (free text: no option is read in it)


@dataclass(frozen=True, slots=True)
class VerbSpec:
    """One command, whole: its spellings, help, the role it needs, its handler, its arguments and options.

    `handler` names the function that carries the command out, `"module:function"` (a function of
    `jobs`, which github_app may not import: jobs.comments resolves every name once, at import).
    """

    verb: Verb
    names: tuple[tuple[str, ...], ...]
    summary: str
    role: Role  # the least role that may give the command (DESIGN §5)
    handler: str
    argument: ValueSpec | None = None  # a positional argument (fills `argument_field`)
    argument_required: bool = False
    options: tuple[OptionSpec, ...] = ()
    argument_field: str = "task_id"  # the Command field the positional argument fills
    second: ValueSpec | None = None  # a required second positional argument (override's done|skipped)
    second_field: str = ""  # the Command field it fills
    conflicts: tuple[tuple[str, str, str], ...] = ()  # (field, field, why they cannot be combined)


def code(text: str) -> str:
    """Markdown code span for user text: safe against backticks and @mentions, and kept short."""
    return literal(text, SHOWN_CHARS)


def canonical_id(word: str) -> str | None:
    """`2.3.` → `2.3`, `1.0` → `1`, `02.3` → `2.3` (as clarity.tasklist spells ids); None if not an id."""
    if not _TASK_ID.fullmatch(word):
        return None
    parts = [part.lstrip("0") or "0" for part in word.removesuffix(".").split(".")]
    if len(parts) == 2 and parts[1] == "0":
        parts.pop()
    return ".".join(parts)


def _read_task_id(word: str) -> str:
    """Read a task id, or say what a task id looks like."""
    canonical = canonical_id(word)
    if canonical is None:
        raise Problem(f"{code(word)} is not a task id; task ids are dotted numbers like `2.3.1.4`.")
    return canonical


def _read_tool(word: str) -> str:
    """Read an agent name, lower-cased."""
    if not _TOOL_NAME.fullmatch(word):
        raise Problem(
            f"{code(word)} is not a tool name; tool names use only letters, digits, `_`, `.` and `-`."
        )
    return word.lower()


def _read_priority(word: str) -> int:
    """Read a priority, a whole number from 1 to 10."""
    # _NUMBER caps the length first: int() of a huge digit string is slow, then refused.
    if not _NUMBER.fullmatch(word) or not 1 <= int(word) <= 10:
        raise Problem(f"priority must be a whole number from 1 to 10, got {code(word)}.")
    return int(word)


def _read_outcome(word: str) -> str:
    """Read what a person declares a task to be: `done` or `skipped`."""
    if word.lower() not in ("done", "skipped"):
        raise Problem(f"a task can be overridden as `done` or `skipped`, got {code(word)}.")
    return word.lower()


def _read_reason(words: str) -> str:
    """Read why a person overrides a task: free words, one line, at most REASON_CHARS characters."""
    if len(words) > REASON_CHARS:
        raise Problem(f"a reason is at most {REASON_CHARS} characters; this one has {len(words)}.")
    return words


def _read_budget(words: str) -> str:
    """Read budget limits (`30m $5 attempts=40`) into their canonical words."""
    for word in words.split():
        if not _BUDGET_WORD.fullmatch(word):  # clarity.budget echoes words: only plain ones get that far
            raise Problem(f"{code(word)} is not a budget limit; write a duration (`30m`, `2h`), an amount"
                          " (`$5`), `attempts=40` or `tokens=500k`.")
    try:
        return budgets.parse_spec(words).spec()
    except budgets.BudgetError as exc:
        raise Problem(f"{exc}.") from None


TASK_ID = ValueSpec("<id>", "task id", "2.3.1.4", _read_task_id)
OUTCOME = ValueSpec("<done/skipped>", "`done` or `skipped`", "done", _read_outcome)
TOOL_NAME = ValueSpec("<name>", "tool name", "aider", _read_tool)
PRIORITY = ValueSpec("<1-10>", "priority from 1 to 10", "5", _read_priority)
LIMITS = ValueSpec("<limits>", "budget limit", "30m $5", _read_budget)
WHY = ValueSpec("<why>", "reason", "the flaky upstream test is fixed by hand", _read_reason)
