"""Reading `tasks_list.md` line by line into drafts of tasks and groups (for `tasklist`).

The grammar of one line is here (DESIGN §3 and the choices in `docs/ARCHITECTURE.md`); linking the
drafts into a TaskList and checking dependencies is `tasklist`'s. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clarity.taskorder import TaskListError, canonical_id, duration_seconds

_HEAD = r"(?P<open>\*\*|__|\*|_|`)?(?P<id>[0-9]+(?:\.[0-9]+)*)(?P<dot>\.)?"
_TASK_LINE = re.compile(
    # `- [ ]* 2.3` is Kiro's mark for an optional task: still a task here.
    r"(?P<indent>[ \t]*)(?:[-*+]|[0-9]{1,9}[.)])[ \t]+\[(?P<box>[ xX])\]\*?[ \t]+" + _HEAD + "(?P<rest>.*)"
)
_GROUP_LINE = re.compile(r" {0,3}#{1,6}[ \t]+" + _HEAD + r"(?P<rest>.*?)(?:[ \t]+#+)?[ \t]*")
_AFTER_ID = frozenset(":)-–—,")
_TITLE_LEAD = re.compile(r"[ \t]*(?:[:)]|[.\-–—](?=\s|$))?\s*")
_LINE_END = re.compile(r"\r\n|\r|\n")
_HEADING = re.compile(r"#{1,6}(?:[ \t]|$)")
_FENCE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})")
_KEY = re.compile(
    r"(?:(?:[-*+]|[0-9]{1,9}[.)])[ \t]+)?(?:\*\*|__)?(?P<key>depends|tool|check|files|timeout)"
    r"(?:\*\*|__)?[ \t]*:(?:\*\*|__)?[ \t]*(?P<value>.*)",  # the caller strips trailing blanks
    re.IGNORECASE,
)
_DEPENDS_SPLIT = re.compile(r"[,;\s]+")
# `1.2, 1.3`: ids already in their one spelling (no 0 part, so no `02` or `N.0`), split on `,` alone.
_PLAIN_DEPENDS = re.compile(r"[1-9][0-9]*(?:\.[1-9][0-9]*)*(?:, ?[1-9][0-9]*(?:\.[1-9][0-9]*)*)*")
_AGENT_NAME = re.compile(r"[\w.-]+")
_NO_DEPENDS = frozenset({"none", "-", "—", "n/a"})
_TAB = 4
_ITEM_START = frozenset("-*+0123456789")


@dataclass(slots=True)
class Draft:
    """A task or group as read from its lines (`read` passes the fields before `description`)."""

    id: str
    title: str
    done: bool
    line: int
    box: int  # the checkbox's column on its line; -1 for a group
    is_group: bool
    description: list[str]
    # None until a key sets them: every object that outlives `read` costs the garbage collector.
    depends: list[tuple[str, int]] | None = None
    tool: tuple[str, int] | None = None
    checks: list[str] | None = None
    files: list[str] | None = None
    timeout: tuple[str, int] | None = None


@dataclass(slots=True)
class Scan:
    """What `read` found: the drafts by id in document order, and the lines; its drafts never change."""

    filename: str
    drafts: dict[str, Draft] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    newline: int | None = 1  # characters per line ending: 1 (LF), 2 (CRLF), None when mixed
    _family: tuple[dict[str, str | None], dict[str, list[str]]] | None = None

    def error(self, reason: str, line: int) -> TaskListError:
        """A TaskListError about `line` of this file."""
        return TaskListError(reason, line, self.filename)

    def hierarchy(self) -> tuple[dict[str, str | None], dict[str, list[str]]]:
        """Parent of every id, and children (document order) of those that have any (worked out once)."""
        if self._family is None:
            self._family = _hierarchy(self.drafts)
        return self._family

    def offsets(self, text: str, positions: list[tuple[int, int]]) -> list[int]:
        """Offsets in `text` (the text read) of (line index, column) positions."""
        if self.newline is None:  # mixed line endings: find every line's start
            bom = 1 if text.startswith("\ufeff") else 0
            starts = [bom, *(match.end() for match in _LINE_END.finditer(text))]
            return [starts[index] + column for index, column in positions]
        found, lines = [], self.lines
        offset, done = (1 if text.startswith("\ufeff") else 0), 0  # the BOM was cut from lines[0]
        for index, column in sorted(positions):  # add up only the lines before each position
            offset += sum(map(len, lines[done:index])) + (index - done) * self.newline
            done = index
            found.append(offset + column)
        return found


def read(text: str, filename: str) -> Scan:
    """Read every line of `text` into drafts; raise TaskListError for a line a person must fix.

    Dependencies are only collected here (`tasklist` checks them). This loop runs for every line of
    files with tens of thousands of lines (bench/tasklist_bench.py), so the common lines (tasks,
    descriptions, keys, blanks) are decided in it; headings, fences and unusual titles use helpers.
    """
    scan = Scan(filename)
    lines = scan.lines = _split_lines(text, scan)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    drafts, item_start, task_line, key_line = scan.drafts, _ITEM_START, _TASK_LINE, _KEY
    tabs = "\t" in text
    # The open list items: the innermost is (top, owner), those around it are on the stack; a line
    # closes the items indented as much as it or more. (-1, None) stands for "no item".
    top, owner = -1, None
    stack: list[tuple[int, Draft | None]] = []
    fence: tuple[str, Draft | None] | None = None  # an open code fence and the item it belongs to
    blanks = 0  # blank lines not yet added to a description
    for index, line in enumerate(lines):
        if fence is not None:
            fence = _read_fenced(fence, line)
            continue
        stripped = line.lstrip(" \t")
        if not stripped or stripped.isspace():
            blanks += 1
            continue
        first = stripped[0]
        size = len(line) - len(stripped)
        indent = _width(line[:size]) if tabs and "\t" in line[:size] else size
        if first in item_start and "[" in stripped:  # most description and key lines are spared the regex
            task = task_line.fullmatch(line)
            if task is not None:
                _, box, opener, raw_id, dot, rest = task.groups()
                if opener is None and rest[:1] == " " and rest[1:2].isalnum():  # `1.2 Title`, the usual
                    title: str | None = rest[1:].rstrip()
                else:
                    title = _title(opener, dot, rest)
                if title is not None:
                    task_id = raw_id if "0" not in raw_id else canonical_id(raw_id)  # no 0, no `02`, `N.0`
                    if task_id in drafts:
                        raise _duplicate(scan, task_id, index + 1)
                    draft = Draft(task_id, title, box != " ", index + 1, task.start(2), False, [])
                    drafts[task_id] = draft
                    while top >= indent:
                        top, owner = stack.pop()
                    stack.append((top, owner))
                    top, owner = indent, draft
                    blanks = 0
                    continue
        elif first == "#" and _read_heading(scan, index + 1, line):
            top, owner, stack = -1, None, []
            continue
        # Neither a task nor a group: description or key of the item it is indented under.
        while top >= indent:
            top, owner = stack.pop()
        if first in "`~" and (opened := _FENCE.match(line)):
            fence = (opened["fence"], owner)
        if owner is None:
            blanks = 0
            continue
        if fence is None and ":" in stripped[:32] and (key := key_line.fullmatch(stripped)):
            _apply_key(scan, owner, key, index + 1)
            continue
        if blanks:
            owner.description += [""] * blanks
            blanks = 0
        owner.description.append(line)
    return scan


def _split_lines(text: str, scan: Scan) -> list[str]:
    """Lines without their endings (LF, CRLF or a lone CR); notes the ending's width in `scan`."""
    if "\r" not in text:
        lines = text.split("\n")
    elif (crlf := text.count("\r\n")) == text.count("\r"):
        lines = [line.removesuffix("\r") for line in text.split("\n")]
        scan.newline = 2 if crlf == len(lines) - 1 else None
    else:
        lines = _LINE_END.split(text)
        scan.newline = None
    if lines[-1] == "":
        lines.pop()
    return lines


def _read_heading(scan: Scan, number: int, line: str) -> bool:
    """A `### 2.3 Title` group or a heading at the margin (either ends the open items); False for neither."""
    group = _GROUP_LINE.fullmatch(line)
    if group and (title := _title(*group.group("open", "dot", "rest"))) is not None:
        task_id = canonical_id(group["id"])
        if task_id in scan.drafts:
            raise _duplicate(scan, task_id, number)
        scan.drafts[task_id] = Draft(task_id, title, False, number, -1, True, [])
        return True
    return line[0] == "#" and _HEADING.match(line) is not None


def _duplicate(scan: Scan, task_id: str, number: int) -> TaskListError:
    first = scan.drafts[task_id].line
    return scan.error(f"task {task_id} appears twice (lines {first} and {number})", number)


def _read_fenced(fence: tuple[str, Draft | None], line: str) -> tuple[str, Draft | None] | None:
    """A line inside a code fence: description of the fence's item; None when it closes the fence."""
    opener, owner = fence
    if owner is not None:
        owner.description.append(line)
    close = _FENCE.match(line)
    closes = close and close["fence"][0] == opener[0] and len(close["fence"]) >= len(opener)
    if closes and not line[close.end() :].strip():  # type: ignore[union-attr]
        return None
    return fence


def _width(indent: str) -> int:
    """Indentation in columns, tabs to the next multiple of 4 as CommonMark does."""
    column = 0
    for char in indent:
        column = column + _TAB - column % _TAB if char == "\t" else column + 1
    return column


def _title(opener: str | None, dot: str | None, rest: str) -> str | None:
    """The title after the id of a task or group line, or None when the text does not start with an id."""
    opener = opener or ""
    closed = bool(opener) and rest.startswith(opener)
    if closed:
        rest = rest[len(opener) :]
    if not dot and rest and not (rest[0].isspace() or rest[0] in _AFTER_ID or closed):
        return None  # "1.5x faster" is a title, not task 1.5
    title = rest[_TITLE_LEAD.match(rest).end() :].rstrip()  # type: ignore[union-attr]
    if opener and not closed and title.endswith(opener):
        title = title[: -len(opener)].rstrip()
    return title


def _apply_key(scan: Scan, draft: Draft, key: re.Match[str], number: int) -> None:
    name, value = key.groups()
    name, value = name.lower(), value.rstrip(" \t")
    if name == "depends":
        found = [(dep, number) for dep in _depends(scan, draft, value, number)]
        if draft.depends is None:
            draft.depends = found
        else:
            draft.depends += found
        return
    if name == "files":
        files = [f for f in (_unquote(p) for p in value.split(",")) if f]
        if draft.files is None:
            draft.files = files
        else:
            draft.files += files
        return
    value = _unquote(value)
    if not value:
        raise scan.error(f"task {draft.id} has an empty {name}:", number)
    if name == "check":
        if draft.checks is None:
            draft.checks = [value]
        else:
            draft.checks.append(value)
    elif name == "tool":
        if not _AGENT_NAME.fullmatch(value):
            raise scan.error(f"task {draft.id} has tool: {value}, expected one agent name like aider", number)
        _once(scan, draft.id, "tool", draft.tool, number)
        draft.tool = (value, number)
    else:
        if duration_seconds(value) is None:
            expected = "expected a duration like 90s, 15m, 1h or 1h30m"
            raise scan.error(f"task {draft.id} has timeout: {value}, {expected}", number)
        _once(scan, draft.id, "timeout", draft.timeout, number)
        draft.timeout = (value.replace(" ", "").lower(), number)


def _depends(scan: Scan, draft: Draft, value: str, number: int) -> list[str]:
    """Canonical ids of a `depends:` value: `1.1, 1.2`, `1.1 1.2`, `1.1 and 1.2` or `none`."""
    if _PLAIN_DEPENDS.fullmatch(value):
        return value.replace(" ", "").split(",")
    tokens = [_unquote(t.strip("*_")) for t in _DEPENDS_SPLIT.split(value) if t.strip("*_`")]
    tokens = [t for t in tokens if t.lower() != "and"]
    if len(tokens) == 1 and tokens[0].lower() in _NO_DEPENDS:
        return []
    found = []
    for token in tokens:
        try:
            found.append(canonical_id(token))
        except TaskListError:
            reason = f"has depends: {value}, but {token} is not a task id (expected ids like 1.2)"
            raise scan.error(f"task {draft.id} {reason}", number) from None
    return found


def _once(scan: Scan, task_id: str, key: str, previous: tuple[str, int] | None, number: int) -> None:
    if previous is not None:
        raise scan.error(f"task {task_id} sets {key}: twice (lines {previous[1]} and {number})", number)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "`":
        return value[1:-1].strip()
    return value


def _hierarchy(drafts: dict[str, Draft]) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """Parent of every id, and children (document order) of those that have any, from the ids alone."""
    parents: dict[str, str | None] = {}
    children: dict[str, list[str]] = {}
    for task_id in drafts:
        dot = task_id.rfind(".")
        up = task_id[:dot] if dot > 0 else None
        if up is not None and up not in drafts:  # `2.3.1` without a `2.3`, or `2.0.1` (whose parent is 2)
            up = _parent_id(task_id, drafts)
        parents[task_id] = up
        if up is None:
            continue
        if up in children:
            children[up].append(task_id)
        else:
            children[up] = [task_id]
    return parents, children


def _parent_id(task_id: str, drafts: dict[str, Draft]) -> str | None:
    """The nearest existing ancestor by id: 2.3.1 → 2.3, or 2 when there is no 2.3."""
    prefix = task_id
    while "." in prefix:
        prefix = prefix.rpartition(".")[0]
        # task_id is canonical, so its prefixes are too, except `N.0` (the prefix of N.0.1), which is N.
        candidate = prefix[:-2] if prefix.endswith(".0") and prefix.count(".") == 1 else prefix
        if candidate in drafts:
            return candidate
    return None
