"""`tasks_list.md`: parse it into a TaskList, and tick checkboxes back into it byte for byte.

Pure functions, no I/O. The rules are DESIGN §3; choices it leaves open are in the docstrings here,
in `taskscan` (the grammar of a line) and in `taskorder` (which owns Task, TaskList and the selection
rules; import them from here).
"""

from __future__ import annotations

from collections.abc import Iterable
from os.path import commonprefix

from clarity.taskorder import Task, TaskList, TaskListError, canonical_id, dependency_cycle, lookup_id
from clarity.taskscan import Draft, Scan, read

__all__ = ["Task", "TaskList", "TaskListError", "canonical_id", "parse", "tick"]

Children = dict[str, list[str]]  # the children of each id that has any, in document order

# The last text parsed without a reading error, and what was read from it. A step parses
# tasks_list.md, runs the task, then ticks the same text: tick reuses that reading instead of doing it
# again (the bulk of its time). Comparing a different text costs little (lengths first, then memcmp
# up to the first difference). A Scan is never changed once read, so threads may share it.
_last_read: tuple[str, str, Scan] | None = None


def parse(text: str, filename: str = "tasks_list.md") -> TaskList:
    """Parse tasks_list.md; raise TaskListError naming the line for anything a person must fix.

    A file with no tasks parses to an empty list. A task may not depend on itself, on an ancestor
    (it is part of it) or on a descendant (a parent's `depends:` is inherited by its leaves).
    """
    global _last_read
    scan = read(text, filename)
    _last_read = (text, filename, scan)
    return _assemble(scan)


def tick(text: str, ids: Iterable[str], filename: str = "tasks_list.md") -> str:
    """Tick the given tasks (a parent or group id: all its leaves) and each ancestor that completes.

    Only the space inside `[ ]` of those lines becomes `x`; every other character is unchanged.
    Groups have no checkbox and are never written. Dependencies are not checked: `parse` does that,
    but every other error `parse` would raise, tick raises too.
    """
    last = _last_read
    if last is not None and last[1] == filename and (last[0] is text or last[0] == text):
        scan = last[2]
    else:
        scan = read(text, filename)
    drafts = scan.drafts
    parents, children = scan.hierarchy()
    ticked: set[str] = set()
    for raw in ids:
        task_id = lookup_id(raw)
        if task_id not in drafts:
            raise TaskListError(f"task {raw} is not in {filename}, so it cannot be ticked")
        ticked.update(_leaves_under(task_id, drafts, children))
    # An ancestor completes when no open leaf is left below it. Going up from a ticked leaf, the
    # first ancestor with one ends the walk: every ancestor above it contains that leaf too.
    completes: dict[str, bool] = {}
    for leaf in ticked:
        for up in _ancestors(leaf, parents):
            if up not in completes:
                completes[up] = not _has_open_leaf(up, drafts, children, ticked)
            if not completes[up]:
                break
    changed = [drafts[i] for i in ticked.union(up for up, done in completes.items() if done)]
    boxes = [(draft.line - 1, draft.box) for draft in changed if not draft.is_group]
    edits = sorted(offset for offset in scan.offsets(text, boxes) if text[offset] == " ")
    pieces, start = [], 0
    for offset in edits:
        pieces += [text[start:offset], "x"]
        start = offset + 1
    return "".join(pieces) + text[start:]


def _ancestors(task_id: str, parents: dict[str, str | None]) -> list[str]:
    """Ids above `task_id`, nearest first."""
    found = []
    up = parents[task_id]
    while up is not None:
        found.append(up)
        up = parents[up]
    return found


def _leaves_under(task_id: str, drafts: dict[str, Draft], children: Children) -> list[str]:
    found, stack = [], [task_id]
    while stack:
        current = stack.pop()
        if current in children:
            stack += children[current]
        elif not drafts[current].is_group:
            found.append(current)
    return found


def _has_open_leaf(task_id: str, drafts: dict[str, Draft], children: Children, ticked: set[str]) -> bool:
    """True when a leaf below `task_id` is neither done nor about to be ticked."""
    stack = list(children.get(task_id, ()))
    while stack:
        current = stack.pop()
        if current in children:
            stack += children[current]
        elif not drafts[current].done and not drafts[current].is_group and current not in ticked:
            return True
    return False


# --- assembling -------------------------------------------------------------------------------


def _assemble(scan: Scan) -> TaskList:
    """Link drafts into a hierarchy by id, check dependencies, and freeze them into a TaskList."""
    drafts = scan.drafts
    parents, children = scan.hierarchy()
    with_depends = [d for d in drafts.values() if d.depends]
    for draft in with_depends:
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
                tuple(d.checks) if d.checks else (),
                tuple(d.files) if d.files else (),
                d.timeout[0] if d.timeout else None,  # timeout
                _dedent(d.description),
                parents[d.id],
                tuple(children[d.id]) if d.id in children else (),
                d.is_group,
            )
            for d in drafts.values()
        ]),
        scan.filename,
    )
    if with_depends and not _points_backwards(with_depends, drafts, children):
        cycle = dependency_cycle(tasks)
        if cycle:
            raise scan.error(f"dependency cycle: {' → '.join(cycle)}", drafts[cycle[0]].line)
    return tasks


def _dedent(lines: list[str]) -> str:
    """The description: its lines without the indentation they share, no blank lines around it."""
    if len(lines) < 2:
        return lines[0].lstrip(" \t") if lines else ""
    indents = {line[: len(line) - len(line.lstrip(" \t"))] for line in lines if line.strip()}
    size = len(indents.pop()) if len(indents) == 1 else len(commonprefix(list(indents)))
    return "\n".join(line[size:] if line.strip() else "" for line in lines).strip("\n")


def _check_depends(scan: Scan, draft: Draft, parents: dict[str, str | None]) -> None:
    own = draft.id
    for dep, number in draft.depends or ():
        if dep == own:
            raise scan.error(f"task {own} depends on itself", number)
        if dep not in scan.drafts:
            raise scan.error(f"task {own} depends on {dep}, which does not exist", number)
        # An ancestor's id is a prefix of its descendants' ids (up to a dot): only then walk the tree.
        if own.startswith(dep + ".") and _is_ancestor(dep, own, parents):
            raise scan.error(f"task {own} depends on {dep}, which contains it", number)
        if dep.startswith(own + ".") and _is_ancestor(own, dep, parents):
            raise scan.error(f"task {own} depends on {dep}, which is one of its own subtasks", number)


def _is_ancestor(maybe: str, task_id: str, parents: dict[str, str | None]) -> bool:
    up = parents[task_id]
    while up is not None:
        if up == maybe:
            return True
        up = parents[up]
    return False


def _points_backwards(with_depends: list[Draft], drafts: dict[str, Draft], children: Children) -> bool:
    """True when every dependency lies wholly above what depends on it, so there can be no cycle.

    That is: each task X that `depends:` on Y starts (X and all below it) after Y ends (Y and all
    below it). Then the last line of a node's subtree goes down along every "waits for" edge
    (strictly for a dependency, or equal but one level deeper for a child), so no path returns. The
    usual file passes this in one look per dependency; one that does not gets the full cycle search.
    """
    spans: dict[str, tuple[int, int]] = {}
    for draft in with_depends:
        start = _span(draft.id, drafts, children, spans)[0] if draft.id in children else draft.line
        for dep, _ in draft.depends or ():
            end = _span(dep, drafts, children, spans)[1] if dep in children else drafts[dep].line
            if end >= start:
                return False
    return True


def _span(task_id: str, drafts: dict[str, Draft], children: Children,
          spans: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """First and last line of `task_id` and everything below it (remembered in `spans`)."""
    if task_id not in spans:
        first = last = drafts[task_id].line
        stack = list(children[task_id])
        while stack:
            current = stack.pop()
            line = drafts[current].line
            first, last = min(first, line), max(last, line)
            stack += children.get(current, ())
        spans[task_id] = (first, last)
    return spans[task_id]
