"""The `/clarity` comment command grammar: one table drives both the parser and the help text.

Pure and I/O free, after Atlantis' comment parser and Prow's plugin help. `parse` turns a comment body
into Commands (accepted) and Replies (a precise problem plus the help text); `[]` means the comment is
not for us. Each line is judged on its own, so one bad line never hides a good one.

Decisions where the grammar is silent:
- A command is a top-level line whose first word is `/clarity` (any case, indented at most 3 columns);
  `/clarity` later in a line, or glued to other text (`/clarity:run`, `/claritybot`), is not a command.
- Ignored lines, so that nobody's command can hide where readers do not look: fenced code (``` or ~~~,
  3+ long, indented up to 3 spaces, info strings allowed, closed by the same character at least as
  long; unclosed runs to the end), indented code (4+ columns, a tab counting to the next multiple of 4,
  as CommonMark does; an indented line right after text continues that paragraph and is not a command
  either), `>` quotes at any depth, HTML comments (`<!--` anywhere in a line up to the next `-->`),
  and the insides of `<details>`, `<pre>`, `<textarea>`, `<script>` and `<style>` (up to the
  matching close tag; a tag in a code span is text). A line that starts with such markup is ignored
  too; hidden markup after a command is left out of it. An unclosed comment or element runs to the
  end. A line right after a quote without `>` counts as the user's own line (no lazy continuation).
- A single `.` ending the line is dropped (end of a sentence): `/clarity run until 2.3.` is `2.3`,
  `/clarity pause.` is `pause`. Task ids also accept their own trailing dot (`1.` is task 1), and
  `N.0` means `N`, `02` means `2`; ids are returned in that canonical form (the one clarity.tasklist
  uses). Existence is checked later, not here.
- Aliases: `to` and `stop after` mean `until`; `stop-point` is also `stop_point`, `stoppoint`,
  `stop point` and `stop after` (`/clarity stop after 2.3` moves the stop point, it never stops).
- `only X` runs just X and combines with `tool` and `priority`; with `until` it is an error.
- `budget` takes every word up to the next option (`budget 30m $5 until 2.3`); the words are
  clarity.budget's (`30m`, `$5`, `attempts=40`, `tokens=500k`) and come back in its canonical form.
- Tool names are lower-cased (agents are named in lower case). `/clarity` alone and `/clarity help`
  are `Command(Verb.HELP)`, so every Reply from `parse` is a problem and has `problem` set.
- Work is capped: the first 65,536 characters (GitHub's maximum body) and the first 10 commands.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import TypeVar

from clarity import budget as budgets
from clarity import stopping
from clarity.actors import literal

PREFIX = "/clarity"
MAX_BODY_CHARS = 65536
MAX_COMMANDS = 10
_HELP_INTRO = (
    "**Clarity commands.** Write each command at the start of its own line; a comment may hold"
    " several. Case does not matter. Lines in code blocks, `>` quotes, HTML comments, `<details>` and"
    " `<pre>` are ignored."
)
_SHOWN_CHARS = 60  # echo at most this much of a bad word back to the user
REASON_CHARS = 200  # an override's reason: it goes into comments, `task_outcomes.md`, the PR and a commit

_LINE_END = re.compile(r"\r\n|\r|\n")
_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_QUOTE = re.compile(r" {0,3}>")
# GitHub shows nothing of an HTML comment, and a reader may never open a <details> or notice a line in
# a <pre>; <textarea>, <script> and <style> are raw text. A tag inside a code span is text.
_HIDING = "pre|details|textarea|script|style"
_MARKUP = re.compile(rf"<!--|<(?P<close>/?)(?P<tag>{_HIDING})(?=[\s/>]|$)[^>]*>?", re.IGNORECASE)
_BACKTICKS = re.compile(r"`+")
_MARKUP_START = re.compile(rf"<!--|</?(?:{_HIDING})(?=[\s/>]|$)", re.IGNORECASE)
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


class _Problem(Exception):
    """A malformed command; the message is written for the person who typed it."""


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """What the word after a keyword must be, how help shows it, and how it is read."""

    placeholder: str  # as shown in usage: "<id>"
    noun: str  # as named in problems: "task id"
    example: str
    read: Callable[[str], str | int]  # raises _Problem


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
    """One verb of the grammar: spellings, positional argument (fills `task_id`), options, help."""

    verb: Verb
    names: tuple[tuple[str, ...], ...]
    summary: str
    argument: ValueSpec | None = None
    argument_required: bool = False
    options: tuple[OptionSpec, ...] = ()
    argument_field: str = "task_id"  # the Command field the positional argument fills
    second: ValueSpec | None = None  # a required second positional argument (override's done|skipped)
    second_field: str = ""  # the Command field it fills
    conflicts: tuple[tuple[str, str, str], ...] = ()  # (field, field, why they cannot be combined)


_Named = TypeVar("_Named", VerbSpec, OptionSpec)


def _code(text: str) -> str:
    """Markdown code span for user text: safe against backticks and @mentions, and kept short."""
    return literal(text, _SHOWN_CHARS)


def _canonical_id(word: str) -> str | None:
    """`2.3.` → `2.3`, `1.0` → `1`, `02.3` → `2.3` (as clarity.tasklist spells ids); None if not an id."""
    if not _TASK_ID.fullmatch(word):
        return None
    parts = [part.lstrip("0") or "0" for part in word.removesuffix(".").split(".")]
    if len(parts) == 2 and parts[1] == "0":
        parts.pop()
    return ".".join(parts)


def _read_task_id(word: str) -> str:
    """Read a task id, or say what a task id looks like."""
    canonical = _canonical_id(word)
    if canonical is None:
        raise _Problem(f"{_code(word)} is not a task id; task ids are dotted numbers like `2.3.1.4`.")
    return canonical


def _read_tool(word: str) -> str:
    """Read an agent name, lower-cased."""
    if not _TOOL_NAME.fullmatch(word):
        raise _Problem(
            f"{_code(word)} is not a tool name; tool names use only letters, digits, `_`, `.` and `-`."
        )
    return word.lower()


def _read_priority(word: str) -> int:
    """Read a priority, a whole number from 1 to 10."""
    # _NUMBER caps the length first: int() of a huge digit string is slow, then refused.
    if not _NUMBER.fullmatch(word) or not 1 <= int(word) <= 10:
        raise _Problem(f"priority must be a whole number from 1 to 10, got {_code(word)}.")
    return int(word)


def _read_outcome(word: str) -> str:
    """Read what a person declares a task to be: `done` or `skipped`."""
    if word.lower() not in ("done", "skipped"):
        raise _Problem(f"a task can be overridden as `done` or `skipped`, got {_code(word)}.")
    return word.lower()


def _read_reason(words: str) -> str:
    """Read why a person overrides a task: free words, one line, at most REASON_CHARS characters."""
    if len(words) > REASON_CHARS:
        raise _Problem(f"a reason is at most {REASON_CHARS} characters; this one has {len(words)}.")
    return words


def _read_budget(words: str) -> str:
    """Read budget limits (`30m $5 attempts=40`) into their canonical words."""
    for word in words.split():
        if not _BUDGET_WORD.fullmatch(word):  # clarity.budget echoes words: only plain ones get that far
            raise _Problem(f"{_code(word)} is not a budget limit; write a duration (`30m`, `2h`), an amount"
                           " (`$5`), `attempts=40` or `tokens=500k`.")
    try:
        return budgets.parse_spec(words).spec()
    except budgets.BudgetError as exc:
        raise _Problem(f"{exc}.") from None


TASK_ID = ValueSpec("<id>", "task id", "2.3.1.4", _read_task_id)
OUTCOME = ValueSpec("<done/skipped>", "`done` or `skipped`", "done", _read_outcome)
TOOL_NAME = ValueSpec("<name>", "tool name", "aider", _read_tool)
PRIORITY = ValueSpec("<1-10>", "priority from 1 to 10", "5", _read_priority)
LIMITS = ValueSpec("<limits>", "budget limit", "30m $5", _read_budget)
WHY = ValueSpec("<why>", "reason", "the flaky upstream test is fixed by hand", _read_reason)
BUDGET = OptionSpec(
    "budget", (("budget",),), LIMITS,
    "limit the execution's active time (`30m`, `2h`), agent cost (`$5`), `attempts=40` or `tokens=500k`,"
    " one or more of them like `budget 30m $5`; they replace the same limits of `.github/clarity.yml`",
    many=True,
)

GRAMMAR: tuple[VerbSpec, ...] = (
    VerbSpec(
        Verb.RUN,
        (("run",),),
        "Start working through `tasks_list.md`, one task after another.",
        options=(
            OptionSpec(
                "until",
                (("until",), ("to",), ("stop", "after")),
                TASK_ID,
                "run the open tasks in order up to and including this one (every task under it if it"
                " is a group), then pause",
            ),
            OptionSpec("only", (("only",),), TASK_ID, "run just this task"),
            OptionSpec("tool", (("tool",),), TOOL_NAME, "use this agent instead of the configured one"),
            OptionSpec("priority", (("priority",),), PRIORITY, "queue priority, a whole number from 1 to 10 (10 runs first)"),
            BUDGET,
        ),
        conflicts=(("only", "until", "`only` runs one task, `until` runs every task up to a stop point"),),
    ),
    VerbSpec(
        Verb.STOP_POINT,
        (("stop-point",), ("stop_point",), ("stoppoint",), ("stop", "point"), ("stop", "after")),
        "Change the stop point of the running execution.",
        argument=TASK_ID,
        argument_required=True,
    ),
    VerbSpec(Verb.PAUSE, (("pause",),), "Pause the running execution after the task in progress."),
    VerbSpec(Verb.RESUME, (("resume",),), "Resume a paused execution; one paused by its budget resumes only"
             " once the budget allows it (raise it with `budget`).", options=(BUDGET,)),
    VerbSpec(Verb.STOP, (("stop",),), stopping.MEANS),
    VerbSpec(
        Verb.RETRY,
        (("retry",),),
        "Run a failed or skipped task again (without an id: every failed task) and continue the execution;"
        " a named task that did not fail is refused, with the reason.",
        argument=TASK_ID,
    ),
    VerbSpec(Verb.STATUS, (("status",),), "Reply with the state of this issue's execution and the command that"
             " moves it on; anyone who can read the repository may ask."),
    VerbSpec(
        Verb.PRIORITY,
        (("priority",),),
        "Change the queue priority of this issue's execution, 1 to 10 (10 runs first; managers only).",
        argument=PRIORITY,
        argument_required=True,
        argument_field="priority",
    ),
    VerbSpec(
        Verb.OVERRIDE,
        (("override",), ("manual-override",)),
        "Mark a blocked, failed or open task as done (ticked and committed by Clarity, without the agent)"
        " or skipped (never run; tasks that depend on it cannot run either), then continue the execution."
        " Either way `task_outcomes.md`, the PR and the commit record who, when and why.",
        argument=TASK_ID,
        argument_required=True,
        second=OUTCOME,
        second_field="outcome",
        options=(OptionSpec("reason", (("because",), ("reason",), ("reason:",)), WHY,
                            "why, in your words: the rest of the line", rest=True),),
    ),
    VerbSpec(Verb.HELP, (("help",),), "Show this help."),
)


def _usage(spec: VerbSpec, name: tuple[str, ...]) -> str:
    """The usage line of a verb under one of its spellings."""
    parts = [PREFIX, *name]
    if spec.argument is not None:
        placeholder = spec.argument.placeholder
        parts.append(placeholder if spec.argument_required else f"[{placeholder}]")
    if spec.second is not None:
        parts.append(spec.second.placeholder)
    parts += [f"[{' '.join(option.names[0])} {option.value.placeholder}]" for option in spec.options]
    return " ".join(parts)


def _option_help(spec: VerbSpec, option: OptionSpec) -> str:
    """One bullet of a verb's option list, with aliases and conflicts."""
    placeholder = option.value.placeholder
    forms = [f"`{' '.join(name)} {placeholder}`" for name in option.names]
    text = f"- {forms[0]}: {option.summary}"
    if len(forms) > 1:
        text += "; also written " + " or ".join(forms[1:])
    for first, second, _ in spec.conflicts:
        if option.field in (first, second):
            other = second if option.field == first else first
            text += f"; cannot be combined with `{other}`"
    return text + "."


@cache
def help_text(grammar: tuple[VerbSpec, ...] = GRAMMAR) -> str:
    """Markdown help, generated from the same grammar table the parser reads."""
    lines = [
        _HELP_INTRO,
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    for spec in grammar:
        summary = spec.summary
        if len(spec.names) > 1:
            summary += " Also " + ", ".join(f"`{_usage(spec, name)}`" for name in spec.names[1:]) + "."
        lines.append(f"| `{_usage(spec, spec.names[0])}` | {summary} |")
    for spec in grammar:
        if spec.options:
            lines += [
                "",
                f"Options of `{PREFIX} {' '.join(spec.names[0])}`, in any order, each at most once:",
            ]
            lines += [_option_help(spec, option) for option in spec.options]
    lines += ["", "Task ids are dotted numbers like `2.3.1.4`; `1.` and `1.0` both mean task `1`."]
    return "\n".join(lines)


def _spelled(specs: Sequence[_Named], words: list[str], at: int) -> tuple[_Named, tuple[str, ...]] | None:
    """The verb or option whose spelling the lower-cased `words` start with at `at`; longest wins."""
    found: tuple[_Named, tuple[str, ...]] | None = None
    for spec in specs:
        for name in spec.names:
            if tuple(words[at : at + len(name)]) == name and (found is None or len(name) > len(found[1])):
                found = (spec, name)
    return found


def _find_verb(grammar: tuple[VerbSpec, ...], words: list[str]) -> tuple[VerbSpec, tuple[str, ...]]:
    """The verb the words start with, or a problem naming the unknown one."""
    found = _spelled(grammar, words, 0)
    if found is not None:
        return found
    known = [name[0] for spec in grammar for name in spec.names if len(name) == 1]
    guess = difflib.get_close_matches(words[0], known, n=1)
    hint = f"; did you mean `{PREFIX} {guess[0]}`?" if guess else "."
    raise _Problem(f"unknown command {_code(f'{PREFIX} {words[0]}')}{hint}")


def _find_option(spec: VerbSpec, words: list[str], at: int) -> tuple[OptionSpec, tuple[str, ...]] | None:
    """The option of `spec` spelled at `at`, if any."""
    return _spelled(spec.options, words, at)


def _unexpected(spec: VerbSpec, said: str, raw: list[str], at: int) -> _Problem:
    """The problem with a word that is neither the argument nor an option of the verb."""
    head = f"`{PREFIX} {said}`"
    if spec.second is not None and spec.argument is not None:  # override: two positionals, then its option
        then = ", then optionally " + " or ".join(f"`{' '.join(o.names[0])} {o.value.placeholder}`"
                                                  for o in spec.options) if spec.options else ""
        return _Problem(f"{head} takes one {spec.argument.noun} and then {spec.second.noun}{then}, "
                        f"got {_code(' '.join(raw))}.")
    if not spec.options:
        if spec.argument is None:
            return _Problem(f"{head} takes no arguments, got {_code(' '.join(raw))}.")
        count = "one" if spec.argument_required else "at most one"
        then = f" and then {spec.second.noun}" if spec.second is not None else ""
        return _Problem(f"{head} takes {count} {spec.argument.noun}{then}, got {_code(' '.join(raw))}.")
    word = raw[at]
    takes_id = [" ".join(o.names[0]) for o in spec.options if o.value is TASK_ID]
    if takes_id and _canonical_id(word) is not None:
        keywords = " or ".join(f"`{name}`" for name in takes_id)
        example = f"`{PREFIX} {said} {takes_id[0]} {word}`"
        return _Problem(
            f"{head} has no option {_code(word)}; put {keywords} before a task id, like {example}."
        )
    names = [f"`{' '.join(o.names[0])}`" for o in spec.options]
    listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    return _Problem(f"{head} has no option {_code(word)}; its options are {listed}.")


def _read_arguments(spec: VerbSpec, said: str, raw: list[str], words: list[str]) -> dict[str, str | int]:
    """Validate what follows the verb into Command fields."""
    values: dict[str, str | int] = {}
    at = 0
    if spec.argument is not None:
        if at < len(raw) and _find_option(spec, words, at) is None:
            values[spec.argument_field] = spec.argument.read(raw[at])
            at += 1
        elif spec.argument_required:
            example = f"`{PREFIX} {said} {spec.argument.example}`"
            raise _Problem(f"`{PREFIX} {said}` needs a {spec.argument.noun}, like {example}.")
    if spec.second is not None and spec.argument is not None:
        if at >= len(raw):
            first = values.get(spec.argument_field, spec.argument.example)
            example = f"`{PREFIX} {said} {first} {spec.second.example}`"
            raise _Problem(f"`{PREFIX} {said}` needs {spec.second.noun} after the {spec.argument.noun}, "
                           f"like {example}.")
        values[spec.second_field] = spec.second.read(raw[at])
        at += 1
    while at < len(raw):
        found = _find_option(spec, words, at)
        if found is None:
            raise _unexpected(spec, said, raw, at)
        option, name = found
        if option.field in values:
            raise _Problem(_repeated(option))
        value_at = at + len(name)
        if value_at >= len(raw) or (not option.rest and _find_option(spec, words, value_at) is not None):
            typed = f"{said} {' '.join(name)}"
            example = f"`{PREFIX} {typed} {option.value.example}`"
            raise _Problem(f"`{PREFIX} {typed}` needs a {option.value.noun}, like {example}.")
        end = len(raw) if option.rest else value_at + 1
        while option.many and end < len(raw) and _find_option(spec, words, end) is None:
            end += 1
        values[option.field] = option.value.read(" ".join(raw[value_at:end]))
        at = end
    for first, second, why in spec.conflicts:
        if first in values and second in values:
            raise _Problem(f"`{first}` and `{second}` cannot be combined: {why}.")
    return values


def _repeated(option: OptionSpec) -> str:
    """The problem with an option given twice, naming its aliases so `to 1 until 2` makes sense."""
    canonical = " ".join(option.names[0])
    text = f"`{canonical}` is given more than once; give each option at most once"
    if len(option.names) > 1:
        aliases = " and ".join(f"`{' '.join(name)}`" for name in option.names[1:])
        text += f" ({aliases} also mean `{canonical}`)"
    return text + "."


def _drop_final_period(raw: list[str]) -> list[str]:
    """Drop one sentence-ending `.` from the last word, but never turn `2..` into the id `2.`."""
    last = raw[-1]
    if len(last) > 1 and last.endswith(".") and not last.endswith(".."):
        return [*raw[:-1], last[:-1]]
    return raw


def _read_command(line: str, number: int, grammar: tuple[VerbSpec, ...]) -> Command | Reply | None:
    """A Command or Reply for a line that starts with `/clarity`; None for any other line."""
    raw = line.split()
    if not raw:
        return None
    raw = _drop_final_period(raw)
    if raw[0].lower() != PREFIX:
        return None
    text = line.strip()
    raw = raw[1:]
    if not raw:
        return Command(Verb.HELP, number, text)
    words = [word.lower() for word in raw]
    try:
        spec, name = _find_verb(grammar, words)
        values = _read_arguments(spec, " ".join(name), raw[len(name) :], words[len(name) :])
    except _Problem as problem:
        return _reply(str(problem), number, grammar)
    return Command(spec.verb, number, text, **values)  # type: ignore[arg-type]


def _reply(problem: str, line: int, grammar: tuple[VerbSpec, ...]) -> Reply:
    """A Reply that states the problem, then the help."""
    return Reply(f"{problem}\n\n{help_text(grammar)}", line=line, problem=problem)


class _Markdown:
    """Tracks the Markdown and HTML whose lines are not the commenter's own top-level words to Clarity."""

    __slots__ = ("fence", "in_comment", "open", "paragraph")

    def __init__(self) -> None:
        self.fence: str | None = None  # the opening run of the open code fence
        self.in_comment = False  # inside `<!-- ... -->`
        self.open: dict[str, int] = {}  # hiding elements (`<details>`, `<pre>`...) open, by name
        self.paragraph = False  # the line before was paragraph text: an indented line continues it

    @property
    def hidden(self) -> bool:
        """Whether text here is inside an HTML comment or a hiding element."""
        return self.in_comment or any(self.open.values())

    def visible(self, line: str) -> str | None:
        """The words of `line` a command may be read from, or None; updates the block state.

        None for lines in code (fenced or indented), quotes, HTML comments and hiding elements, and
        for lines that start with such markup; a hidden part after a command (`/clarity run <!-- x -->`)
        is left out.
        """
        if self.fence is not None:
            close = _FENCE_CLOSE.fullmatch(line)
            if close and close[1][0] == self.fence[0] and len(close[1]) >= len(self.fence):
                self.fence = None
            return None
        indent = _columns(line)
        if _QUOTE.match(line) or (indent >= 4 and not self.paragraph):  # a quote, or indented code
            self.paragraph = False
            return None
        opening = _FENCE_OPEN.fullmatch(line)
        if opening and not (opening[1][0] == "`" and "`" in opening[2]):
            self.fence, self.paragraph = opening[1], False
            return None
        hidden_at_start = self.hidden
        starts_with_markup = bool(_MARKUP_START.match(line, len(line) - len(line.lstrip())))
        shown = self._scan(line)
        self.paragraph = bool(line.strip())
        # An indented line after text continues the paragraph: shown mid-sentence, never a command.
        return None if hidden_at_start or starts_with_markup or indent >= 4 else shown

    def _scan(self, line: str) -> str:
        """Open and close comments and hiding elements along `line`; the parts of it left shown.

        Left to right, whichever construct starts first wins, as in CommonMark: a code span keeps the
        tags in it as text, a comment keeps the backticks in it. Linear in the line's length.
        """
        shown: list[str] = []
        spans = _code_spans(line)
        at, next_span = 0, 0
        markup = _MARKUP.search(line)
        while at < len(line):
            if self.in_comment:
                end = line.find("-->", at)
                if end < 0:
                    break
                self.in_comment, at = False, end + 3
                continue
            if markup is not None and markup.start() < at:
                markup = _MARKUP.search(line, at)
            while next_span < len(spans) and spans[next_span][0] < at:
                next_span += 1
            span = spans[next_span] if next_span < len(spans) else None
            stop = len(line) if markup is None else markup.start()
            if span is not None and span[0] < stop:
                stop = span[1]  # the code span is text, whatever it holds
            if not self.hidden:
                shown.append(line[at:stop])
            if markup is None or stop != markup.start():  # the end of the line, or of a code span
                at = stop
                continue
            at = markup.end()
            if markup[0] == "<!--":
                self.in_comment = True
            else:
                name = markup["tag"].lower()
                self.open[name] = max(self.open.get(name, 0) + (-1 if markup["close"] else 1), 0)
        return "".join(shown)


def _code_spans(line: str) -> list[tuple[int, int]]:
    """Where a backtick run opens a code span (closed by the next run of the same length): (start, end)."""
    runs = [(run.start(), run.end()) for run in _BACKTICKS.finditer(line)]
    closing: dict[int, int] = {}  # run length -> end of the nearest run of that length further on
    spans: list[tuple[int, int]] = []
    for start, end in reversed(runs):
        close = closing.get(end - start)
        spans.append((start, close if close is not None else end))  # an unclosed run is plain backticks
        closing[end - start] = end
    spans.reverse()
    return spans


def _columns(line: str) -> int:
    """How far a line is indented, in columns (a tab moves to the next multiple of 4, as in CommonMark)."""
    column = 0
    for char in line:
        if char == " ":
            column += 1
        elif char == "\t":
            column += 4 - column % 4
        else:
            break
    return column


def parse(body: str, grammar: tuple[VerbSpec, ...] = GRAMMAR) -> list[Command | Reply]:
    """Commands and problem replies in a comment body, in line order; [] when it is not for us."""
    items: list[Command | Reply] = []
    markdown = _Markdown()
    commands = 0
    for number, line in enumerate(_LINE_END.split(body[:MAX_BODY_CHARS]), start=1):
        shown = markdown.visible(line)
        if shown is None:
            continue
        item = _read_command(shown, number, grammar)
        if item is None:
            continue
        if commands == MAX_COMMANDS:
            problem = (
                f"a comment may hold at most {MAX_COMMANDS} commands; line {number} and later were not read."
            )
            items.append(_reply(problem, number, grammar))
            break
        commands += 1
        items.append(item)
    return items
