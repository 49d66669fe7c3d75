"""Task lists as values, and the rules for what runs next: scope, eligibility, order, blockers, cycles.

`tasklist` reads and writes the markdown; this module knows nothing about it. Selection works on a
`TaskGraph` with one kind of edge, "X waits for Y": a leaf waits for its dependencies (its own
`depends:` plus those of its ancestors), a parent or group waits for its children. A node is done
when it is a ticked leaf, or a parent/group whose children are all done.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

_ID = re.compile(r"[0-9]+(?:\.[0-9]+)*\.?")
_PLAIN_ID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
_TIMEOUT = re.compile(r"(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?")


class TaskListError(ValueError):
    """A problem in tasks_list.md, worded for the person who has to fix the file."""

    def __init__(self, reason: str, line: int | None = None, filename: str = "tasks_list.md") -> None:
        self.reason = reason
        self.line = line
        self.filename = filename
        super().__init__(f"{filename} line {line}: {reason}" if line is not None else reason)


@dataclass(frozen=True, slots=True)
class Task:
    """One task or group of tasks_list.md; `done` is its own checkbox (always False for a group)."""

    id: str
    title: str
    done: bool
    line: int
    depends: tuple[str, ...] = ()
    tool: str | None = None
    checks: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    timeout: str | None = None
    description: str = ""
    parent: str | None = None
    children: tuple[str, ...] = ()
    is_group: bool = False

    @property
    def is_leaf(self) -> bool:
        """True for an executable task: no children and not a heading group."""
        return not self.children and not self.is_group

    def timeout_seconds(self) -> int | None:
        """The `timeout:` in seconds, or None when the task sets none."""
        return None if self.timeout is None else duration_seconds(self.timeout)


@dataclass(frozen=True, slots=True)
class TaskList:
    """The tasks of one file in document order (groups included), with the selection rules.

    A leaf is done when ticked; a parent or group when all its leaves are done, whatever its own
    checkbox says. A leaf waits for its own `depends:` and for those of its ancestors.
    """

    tasks: tuple[Task, ...]
    filename: str = "tasks_list.md"
    _by_id: dict[str, Task] = field(init=False, repr=False, compare=False)
    _cache: TaskGraph | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {t.id: t for t in self.tasks})

    @property
    def _graph(self) -> TaskGraph:
        # Built on first use: parsing alone (or a file without dependencies) does not pay for it.
        if self._cache is None:
            object.__setattr__(self, "_cache", TaskGraph.build(self.tasks))
        assert self._cache is not None
        return self._cache

    def get(self, task_id: str) -> Task:
        """The task or group with this id (any spelling: `1.0` finds `1`)."""
        found = self._by_id.get(lookup_id(task_id))
        if found is None:
            raise TaskListError(f"task {task_id} is not in {self.filename}")
        return found

    def leaves(self, under: str | None = None) -> list[Task]:
        """Executable tasks in document order, all of them or those under one task or group."""
        if under is None:
            return [self._by_id[leaf] for leaf in self._graph.leaves]
        return [self._by_id[leaf] for leaf in self._graph.leaves_under(self.get(under).id)]

    def is_done(self, task_id: str) -> bool:
        """A leaf: ticked. A parent or group: every leaf under it is done."""
        return self._graph.done[self.get(task_id).id]

    def next_task(self, until: str | None = None, unavailable: frozenset[str] = frozenset()) -> Task | None:
        """The first open leaf in scope whose dependencies are done and which is not `unavailable`.

        `unavailable` holds the ids the engine must not start (blocked, failed, skipped); a parent
        or group id there covers its leaves, and ids not in the list are ignored.
        """
        known = (lookup_id(i) for i in unavailable)
        skip = frozenset(leaf for i in known if i in self._by_id for leaf in self._graph.leaves_under(i))
        found = first_eligible(self._graph, self._scope(until), skip)
        return None if found is None else self._by_id[found]

    def run_order(self, until: str | None = None) -> list[str]:
        """Leaf ids in the order they would run if each one succeeded, up to the stop point."""
        return simulated_order(self._graph, self._scope(until))

    def stop_reached(self, until: str | None) -> bool:
        """True when every leaf the stop point covers is done (`None`: the whole list)."""
        return not self._scope(until)

    def blocked_by(self, task_id: str, failed: set[str]) -> set[str]:
        """The `failed` ids that `task_id` waits for, directly or through other open tasks."""
        return failed_in_the_way(self._graph, self.get(task_id).id, {lookup_id(i) for i in failed})

    def _scope(self, until: str | None) -> set[str]:
        if until is None:
            return leaves_in_scope(self._graph, None)
        stop = self._by_id.get(lookup_id(until))
        if stop is None:
            raise TaskListError(f"stop point {until} is not a task or group in {self.filename}")
        return leaves_in_scope(self._graph, stop.id)


def canonical_id(raw: str) -> str:
    """The one spelling of a task id: `1`, `1.` and `1.0` are `1`; `02.3.` is `2.3`."""
    if _PLAIN_ID.fullmatch(raw) and not (raw.endswith(".0") and raw.count(".") == 1):
        return raw
    found = _canonical(raw)
    if found is None:
        raise TaskListError(f"{raw!r} is not a task id (expected numbers separated by dots, like 2.3.1)")
    return found


@lru_cache(maxsize=65536)
def _canonical(raw: str) -> str | None:
    text = raw.strip()
    if not _ID.fullmatch(text):
        return None
    parts = [str(int(p)) for p in text.rstrip(".").split(".")]
    if len(parts) == 2 and parts[1] == "0":
        parts.pop()
    return ".".join(parts)


def lookup_id(raw: str) -> str:
    """`canonical_id` for lookups: anything that is not an id stays as it is, and is not found."""
    if _PLAIN_ID.fullmatch(raw) and not (raw.endswith(".0") and raw.count(".") == 1):
        return raw
    return _canonical(raw) or raw


def duration_seconds(value: str) -> int | None:
    """Seconds in a duration like `90s`, `15m`, `1h30m`; None when it is not one (or is zero)."""
    m = _TIMEOUT.fullmatch(value.replace(" ", "").lower())
    if not m or not any(m.groups()):
        return None
    seconds = int(m["h"] or 0) * 3600 + int(m["m"] or 0) * 60 + int(m["s"] or 0)
    return seconds or None


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """Indexes over a task list, built once, read by every selection function."""

    pos: dict[str, int]
    parent: dict[str, str | None]
    waits: dict[str, tuple[str, ...]]
    leaves: tuple[str, ...]
    leaf_set: frozenset[str]
    done: dict[str, bool]

    @classmethod
    def build(cls, nodes: Sequence[Task]) -> TaskGraph:
        """Index `nodes` (document order) for selection."""
        pos = {n.id: i for i, n in enumerate(nodes)}
        parent = {n.id: (n.parent if n.parent in pos else None) for n in nodes}
        for n in nodes:  # a hand-built list may give only one side of the link
            if n.children:
                parent.update((c, n.id) for c in n.children if c in pos)
        leaf_set = frozenset(n.id for n in nodes if not n.children and not n.is_group)
        ordered = _top_down(nodes, parent)
        waits: dict[str, tuple[str, ...]] = {}
        inherited: dict[str, tuple[str, ...]] = {}
        for n in ordered:
            up = parent[n.id]
            own = tuple(d for d in n.depends if d in pos) if n.depends else ()
            if up is None or not inherited[up]:
                inherited[n.id] = own
            else:
                inherited[n.id] = _unique(inherited[up] + own) if own else inherited[up]
            if n.id in leaf_set:
                waits[n.id] = inherited[n.id]
            else:
                waits[n.id] = tuple(c for c in n.children if c in pos)
        done: dict[str, bool] = {}
        for n in reversed(ordered):
            done[n.id] = n.done if n.id in leaf_set else all(done[c] for c in waits[n.id])
        leaves = tuple(n.id for n in nodes if n.id in leaf_set)
        return cls(pos=pos, parent=parent, waits=waits, leaves=leaves, leaf_set=leaf_set, done=done)

    def leaves_under(self, node: str) -> list[str]:
        """The leaves under `node` (itself when it is a leaf), in document order."""
        found: list[str] = []
        stack = [node]
        while stack:
            current = stack.pop()
            if current in self.leaf_set:
                found.append(current)
            else:
                stack.extend(self.waits[current])
        return sorted(found, key=self.pos.__getitem__)


def _top_down(nodes: Sequence[Task], parent: dict[str, str | None]) -> list[Task]:
    """Nodes ordered so every parent comes before its children.

    That is the document order in the usual file; otherwise by depth, then document order.
    """
    seen: set[str] = set()
    for n in nodes:
        up = parent[n.id]
        if up is not None and up not in seen:
            break
        seen.add(n.id)
    else:
        return list(nodes)
    depth: dict[str, int] = {}
    for n in nodes:
        up = parent[n.id]
        if up is None or up in depth:  # the usual case: the parent came first in the document
            depth[n.id] = depth[up] + 1 if up is not None else 0
            continue
        chain = []
        current: str | None = n.id
        while current is not None and current not in depth:
            chain.append(current)
            current = parent[current]
        base = depth[current] if current is not None else -1
        for node in reversed(chain):
            base += 1
            depth[node] = base
    by_depth: list[list[Task]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for n in nodes:  # a stable sort by depth, in one pass
        by_depth[depth[n.id]].append(n)
    return [n for level in by_depth for n in level]


def _unique(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


def leaves_in_scope(graph: TaskGraph, until: str | None) -> set[str]:
    """Open leaves a run `until` this node must do: those up to its last leaf, plus their open deps."""
    if until is None:
        start = [leaf for leaf in graph.leaves if not graph.done[leaf]]
    else:
        cut = max([graph.pos[until]] + [graph.pos[leaf] for leaf in graph.leaves_under(until)])
        start = [leaf for leaf in graph.leaves if graph.pos[leaf] <= cut and not graph.done[leaf]]
    found: set[str] = set()
    seen = set(start)
    stack = list(start)
    while stack:
        node = stack.pop()
        if node in graph.leaf_set:
            found.add(node)
        for wanted in graph.waits[node]:
            if wanted not in seen and not graph.done[wanted]:
                seen.add(wanted)
                stack.append(wanted)
    return found


def first_eligible(graph: TaskGraph, in_scope: set[str], unavailable: frozenset[str]) -> str | None:
    """The first leaf of `in_scope` in document order that is open, available and has its deps done."""
    for leaf in sorted(in_scope, key=graph.pos.__getitem__):
        if leaf in unavailable or graph.done[leaf]:
            continue
        if all(graph.done[d] for d in graph.waits[leaf]):
            return leaf
    return None


def simulated_order(graph: TaskGraph, in_scope: set[str]) -> list[str]:
    """Simulate ticking: repeatedly take the first eligible leaf of `in_scope` in document order."""
    done = dict(graph.done)
    unmet: dict[str, int] = {}
    dependants: dict[str, list[str]] = {}
    for node, wanted in graph.waits.items():
        if done[node]:
            continue
        open_waits = [w for w in wanted if not done[w]]
        unmet[node] = len(open_waits)
        for w in open_waits:
            dependants.setdefault(w, []).append(node)
    ready = [(graph.pos[leaf], leaf) for leaf in in_scope if unmet.get(leaf, 0) == 0 and not done[leaf]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, leaf = heapq.heappop(ready)
        order.append(leaf)
        finished = [leaf]
        while finished:
            node = finished.pop()
            done[node] = True
            for dependant in dependants.get(node, ()):
                unmet[dependant] -= 1
                if unmet[dependant]:
                    continue
                if dependant in graph.leaf_set:
                    if dependant in in_scope:
                        heapq.heappush(ready, (graph.pos[dependant], dependant))
                else:
                    finished.append(dependant)
    return order


def failed_in_the_way(graph: TaskGraph, node: str, failed: set[str]) -> set[str]:
    """The ids in `failed` that `node` waits for, directly or through other open tasks."""
    found: set[str] = set()
    seen = {node}
    stack = [node]
    while stack:
        current = stack.pop()
        for wanted in graph.waits[current]:
            if wanted in seen or graph.done[wanted]:
                continue
            seen.add(wanted)
            if wanted in failed:
                found.add(wanted)
            stack.append(wanted)
    return found


def find_cycle(graph: TaskGraph) -> list[str] | None:
    """A cycle of waits as a closed path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in sorted(graph.waits, key=graph.pos.__getitem__):
        if root in state:
            continue
        if not graph.waits[root]:  # waits for nothing, so on no cycle (most leaves)
            state[root] = 2
            continue
        path = [root]
        state[root] = 1
        iters = [iter(graph.waits[root])]
        while iters:
            step = next(iters[-1], None)
            if step is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(step) == 1:
                cycle = path[path.index(step) :]
                first = min(range(len(cycle)), key=lambda i: graph.pos[cycle[i]])
                cycle = cycle[first:] + cycle[:first]
                return cycle + [cycle[0]]
            elif step not in state:
                state[step] = 1
                path.append(step)
                iters.append(iter(graph.waits[step]))
    return None


def dependency_cycle(tasks: TaskList) -> list[str] | None:
    """A cycle of waits in `tasks` as a closed path (`1.2 → 1.3 → 1.2`), or None."""
    return find_cycle(tasks._graph)
