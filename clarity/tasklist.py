"""`tasks_list.md`: parse it into a TaskList, and tick checkboxes back into it byte for byte.

Pure functions, no I/O. The rules are DESIGN §3; choices it leaves open are in the docstrings here
and in `taskorder` (which owns Task, TaskList and the selection rules; import them from here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from os.path import commonprefix

from clarity.taskorder import (
    Task,
    TaskList,
    TaskListError,
    canonical_id,
    dependency_cycle,
    duration_seconds,
    lookup_id,
)

__all__ = ["Task", "TaskList", "TaskListError", "canonical_id", "parse", "tick"]

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
_NO_DEPENDS = frozenset({"none", "-", "—", "n/a"})
_TAB = 4
_ITEM_START = frozenset("-*+0123456789")


def parse(text: str, filename: str = "tasks_list.md") -> TaskList:
    """Parse tasks_list.md; raise TaskListError naming the line for anything a person must fix.

    A file with no tasks parses to an empty list. A task may not depend on itself, on an ancestor
    (it is part of it) or on a descendant (a parent's `depends:` is inherited by its leaves).
    """
    return _assemble(_read(text, filename))


def tick(text: str, ids: Iterable[str], filename: str = "tasks_list.md") -> str:
    """Tick the given tasks (a parent or group id: all its leaves) and each ancestor that completes.

    Only the space inside `[ ]` of those lines becomes `x`; every other character is unchanged.
    Groups have no checkbox and are never written. Dependencies are not checked: `parse` does that.
    """
    scan = _read(text, filename)
    drafts = scan.drafts
    parents, children = _hierarchy(drafts)
    ticked: set[str] = set()
    for raw in ids:
        task_id = lookup_id(raw)
        if task_id not in drafts:
            raise TaskListError(f"task {raw} is not in {filename}, so it cannot be ticked")
        ticked.update(_leaves_under(task_id, drafts, children))
    open_below: set[str] = set()
    for d in drafts.values():
        if not d.done and not d.is_group and not children[d.id] and d.id not in ticked:
            open_below.update(_ancestors(d.id, parents, stop=open_below))
    complete = {up for leaf in ticked for up in _ancestors(leaf, parents) if up not in open_below}
    starts = _line_starts(text)
    boxes = {i: starts[scan.boxes[i][0]] + scan.boxes[i][1] for i in ticked | complete if i in scan.boxes}
    edits = sorted(offset for offset in boxes.values() if text[offset] == " ")
    pieces, start = [], 0
    for offset in edits:
        pieces += [text[start:offset], "x"]
        start = offset + 1
    return "".join(pieces) + text[start:]


def _ancestors(task_id: str, parents: dict[str, str | None], stop: set[str] | None = None) -> list[str]:
    """Ids above `task_id`, nearest first, ending before the first one in `stop`."""
    found = []
    up = parents[task_id]
    while up is not None and not (stop and up in stop):
        found.append(up)
        up = parents[up]
    return found


def _leaves_under(task_id: str, drafts: dict[str, _Draft], children: dict[str, list[str]]) -> list[str]:
    found, stack = [], [task_id]
    while stack:
        current = stack.pop()
        if children[current]:
            stack += children[current]
        elif not drafts[current].is_group:
            found.append(current)
    return found


# --- scanning ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    """A task or group while its lines are still being read."""

    id: str
    title: str
    done: bool
    line: int
    is_group: bool
    depends: list[tuple[str, int]] = field(default_factory=list)
    tool: tuple[str, int] | None = None
    checks: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    timeout: tuple[str, int] | None = None
    description: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Scan:
    """Reader state: the open list items (indent, draft) and an open code fence."""

    filename: str
    drafts: dict[str, _Draft] = field(default_factory=dict)
    boxes: dict[str, tuple[int, int]] = field(default_factory=dict)  # id → (line index, column)
    stack: list[tuple[int, _Draft]] = field(default_factory=list)
    blanks: int = 0
    fence: tuple[str, _Draft | None] | None = None

    def error(self, reason: str, line: int) -> TaskListError:
        return TaskListError(reason, line, self.filename)


def _read(text: str, filename: str) -> _Scan:
    """Read every line of `text` into drafts, and where each task's checkbox is (line index, column).

    This loop runs for every line of files with tens of thousands of lines, in `parse` and in `tick`
    (bench/tasklist_bench.py), so the common cases are decided here without further calls.
    """
    scan = _Scan(filename)
    lines = _split_lines(text)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    stack, boxes, item_start, task_line = scan.stack, scan.boxes, _ITEM_START, _TASK_LINE
    for index, line in enumerate(lines):
        if scan.fence is not None:
            _read_fenced(scan, line)
            continue
        stripped = line.lstrip(" \t")
        if not stripped or stripped.isspace():
            scan.blanks += 1
            continue
        first = stripped[0]
        if first in item_start:
            # A task line has a `[`: most description and key lines are spared the regex.
            task = task_line.fullmatch(line) if "[" in stripped else None
            if task and (title := _title(task)) is not None:
                draft = _new_draft(scan, task["id"], title, task["box"] != " ", index + 1, False)
                boxes[draft.id] = (index, task.start("box"))
                indent = _width(task["indent"])
                while stack and stack[-1][0] >= indent:  # a list item closes those indented as much or more
                    stack.pop()
                stack.append((indent, draft))
                scan.blanks = 0
                continue
        elif first == "#" and _read_heading(scan, index + 1, line):
            continue
        _read_content(scan, index + 1, line, stripped)
    return scan


def _split_lines(text: str) -> list[str]:
    """Lines without their endings (LF, CRLF or a lone CR)."""
    if "\r" not in text:
        lines = text.split("\n")
    elif text.count("\r") == text.count("\r\n"):
        lines = [line.removesuffix("\r") for line in text.split("\n")]
    else:
        lines = _LINE_END.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def _line_starts(text: str) -> list[int]:
    """The offset where each line of `_split_lines(text)` starts (a BOM belongs to the first line)."""
    bom = 1 if text.startswith("\ufeff") else 0
    if text.count("\r") == text.count("\r\n"):
        return [bom, *(match.end() for match in re.finditer("\n", text))]
    return [bom, *(match.end() for match in _LINE_END.finditer(text))]


def _read_heading(scan: _Scan, number: int, line: str) -> bool:
    """A `### 2.3 Title` group or a heading at the margin (which ends the open items); False for neither."""
    group = _GROUP_LINE.fullmatch(line)
    if group and (title := _title(group)) is not None:
        _new_draft(scan, group["id"], title, False, number, True)
        scan.stack.clear()
        return True
    if line[0] == "#" and _HEADING.match(line):
        scan.stack.clear()
        return True
    return False


def _read_content(scan: _Scan, number: int, line: str, stripped: str) -> None:
    """A line that is neither a task nor a group: description or key of the item it is indented under."""
    stack = scan.stack
    size = len(line) - len(stripped)
    indent = _width(line[:size]) if "\t" in line[:size] else size
    while stack and stack[-1][0] >= indent:
        stack.pop()
    owner = stack[-1][1] if stack else None
    if stripped[0] in "`~" and (fence := _FENCE.match(line)):
        scan.fence = (fence["fence"], owner)
    if owner is None:
        scan.blanks = 0
        return
    key = _KEY.fullmatch(stripped) if scan.fence is None and ":" in stripped[:32] else None
    if key:
        _apply_key(scan, owner, key["key"].lower(), key["value"].rstrip(" \t"), number)
        return
    if scan.blanks:
        owner.description += [""] * scan.blanks
        scan.blanks = 0
    owner.description.append(line)


def _read_fenced(scan: _Scan, line: str) -> None:
    assert scan.fence is not None
    opener, owner = scan.fence
    if owner is not None:
        owner.description.append(line)
    close = _FENCE.match(line)
    closes = close and close["fence"][0] == opener[0] and len(close["fence"]) >= len(opener)
    if closes and not line[close.end() :].strip():  # type: ignore[union-attr]
        scan.fence = None


def _width(indent: str) -> int:
    """Indentation in columns, tabs to the next multiple of 4 as CommonMark does."""
    if "\t" not in indent:
        return len(indent)
    column = 0
    for char in indent:
        column = column + _TAB - column % _TAB if char == "\t" else column + 1
    return column


def _title(head: re.Match[str]) -> str | None:
    """The title after the id of a task or group line, or None when the text does not start with an id."""
    rest, opener = head.group("rest", "open")
    if rest[:1] == " " and rest[1:2].isalnum() and opener is None:  # `1.2 Title`: the usual spelling
        return rest[1:].rstrip()
    opener = opener or ""
    closed = bool(opener) and rest.startswith(opener)
    if closed:
        rest = rest[len(opener) :]
    if not head["dot"] and rest and not (rest[0].isspace() or rest[0] in _AFTER_ID or closed):
        return None  # "1.5x faster" is a title, not task 1.5
    title = rest[_TITLE_LEAD.match(rest).end() :].rstrip()  # type: ignore[union-attr]
    if opener and not closed and title.endswith(opener):
        title = title[: -len(opener)].rstrip()
    return title


def _new_draft(scan: _Scan, raw_id: str, title: str, done: bool, number: int, is_group: bool) -> _Draft:
    task_id = raw_id if "0" not in raw_id else canonical_id(raw_id)  # no 0: no `02` or `N.0` to respell
    if task_id in scan.drafts:
        first = scan.drafts[task_id].line
        raise scan.error(f"task {task_id} appears twice (lines {first} and {number})", number)
    draft = _Draft(task_id, title, done, number, is_group)
    scan.drafts[task_id] = draft
    return draft


def _apply_key(scan: _Scan, draft: _Draft, key: str, value: str, number: int) -> None:
    if key in ("check", "tool", "timeout"):
        value = _unquote(value)
        if not value:
            raise scan.error(f"task {draft.id} has an empty {key}:", number)
    if key == "depends":
        draft.depends += [(dep, number) for dep in _depends(scan, draft, value, number)]
    elif key == "files":
        draft.files += [f for f in (_unquote(p) for p in value.split(",")) if f]
    elif key == "check":
        draft.checks.append(value)
    elif key == "tool":
        if not re.fullmatch(r"[\w.-]+", value):
            raise scan.error(f"task {draft.id} has tool: {value}, expected one agent name like aider", number)
        _once(scan, draft.id, "tool", draft.tool, number)
        draft.tool = (value, number)
    else:
        if duration_seconds(value) is None:
            expected = "expected a duration like 90s, 15m, 1h or 1h30m"
            raise scan.error(f"task {draft.id} has timeout: {value}, {expected}", number)
        _once(scan, draft.id, "timeout", draft.timeout, number)
        draft.timeout = (value.replace(" ", "").lower(), number)


def _depends(scan: _Scan, draft: _Draft, value: str, number: int) -> list[str]:
    """Canonical ids of a `depends:` value: `1.1, 1.2`, `1.1 1.2`, `1.1 and 1.2` or `none`."""
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


def _once(scan: _Scan, task_id: str, key: str, previous: tuple[str, int] | None, number: int) -> None:
    if previous is not None:
        raise scan.error(f"task {task_id} sets {key}: twice (lines {previous[1]} and {number})", number)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == "`":
        return value[1:-1].strip()
    return value


# --- assembling -------------------------------------------------------------------------------


def _assemble(scan: _Scan) -> TaskList:
    """Link drafts into a hierarchy by id, check dependencies, and freeze them into a TaskList."""
    drafts = scan.drafts
    parents, children = _hierarchy(drafts)
    for draft in drafts.values():
        if draft.depends:
            _check_depends(scan, draft, parents)
    # Positional arguments in Task's field order: a keyword call costs a third more, 10,000 times.
    tasks = TaskList(
        tuple([
            Task(
                d.id,
                d.title,
                d.done,
                d.line,
                tuple(dict.fromkeys(dep for dep, _ in d.depends)) if d.depends else (),  # depends
                d.tool[0] if d.tool else None,  # tool
                tuple(d.checks),
                tuple(d.files),
                d.timeout[0] if d.timeout else None,  # timeout
                _dedent(d.description),
                parents[d.id],
                tuple(children[d.id]),
                d.is_group,
            )
            for d in drafts.values()
        ]),
        scan.filename,
    )
    cycle = dependency_cycle(tasks) if any(d.depends for d in drafts.values()) else None
    if cycle:
        raise scan.error(f"dependency cycle: {' → '.join(cycle)}", drafts[cycle[0]].line)
    return tasks


def _hierarchy(drafts: dict[str, _Draft]) -> tuple[dict[str, str | None], dict[str, list[str]]]:
    """Parent and children (document order) of every id, from the ids alone."""
    parents = {task_id: _parent_id(task_id, drafts) for task_id in drafts}
    children: dict[str, list[str]] = {task_id: [] for task_id in drafts}
    for task_id, up in parents.items():
        if up is not None:
            children[up].append(task_id)
    return parents, children


def _parent_id(task_id: str, drafts: dict[str, _Draft]) -> str | None:
    """The nearest existing ancestor by id: 2.3.1 → 2.3, or 2 when there is no 2.3."""
    prefix = task_id
    while "." in prefix:
        prefix = prefix.rpartition(".")[0]
        # task_id is canonical, so its prefixes are too, except `N.0` (the prefix of N.0.1), which is N.
        candidate = prefix[:-2] if prefix.endswith(".0") and prefix.count(".") == 1 else prefix
        if candidate in drafts:
            return candidate
    return None


def _dedent(lines: list[str]) -> str:
    """The description: its lines without the indentation they share, no blank lines around it."""
    if len(lines) < 2:
        return lines[0].lstrip(" \t") if lines else ""
    indents = {line[: len(line) - len(line.lstrip(" \t"))] for line in lines if line.strip()}
    size = len(indents.pop()) if len(indents) == 1 else len(commonprefix(list(indents)))
    return "\n".join(line[size:] if line.strip() else "" for line in lines).strip("\n")


def _check_depends(scan: _Scan, draft: _Draft, parents: dict[str, str | None]) -> None:
    for dep, number in draft.depends:
        if dep == draft.id:
            raise scan.error(f"task {draft.id} depends on itself", number)
        if dep not in scan.drafts:
            raise scan.error(f"task {draft.id} depends on {dep}, which does not exist", number)
        if _is_ancestor(dep, draft.id, parents):
            raise scan.error(f"task {draft.id} depends on {dep}, which contains it", number)
        if _is_ancestor(draft.id, dep, parents):
            raise scan.error(f"task {draft.id} depends on {dep}, which is one of its own subtasks", number)


def _is_ancestor(maybe: str, task_id: str, parents: dict[str, str | None]) -> bool:
    up = parents[task_id]
    while up is not None:
        if up == maybe:
            return True
        up = parents[up]
    return False
