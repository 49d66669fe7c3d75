"""The execution page's task tree: the engine's task table with every id under its parent (2.3.1 under 2.3).

Hierarchy comes from the id, as in tasks_list.md (DESIGN §3). The engine's table holds the tasks it runs,
which are leaves; their parents are not in it, so the tree adds a row for each missing parent (the page
names it with the title `titles` give, from the task list: dashboard.titles), counting the tasks under it that
are done. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clarity.models import TaskProgress
from clarity.status import TaskStatus


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the tree: a task of the table, or a parent of some (`progress` None)."""

    task_id: str
    level: int  # 1 for `2`, 2 for `2.3`, 3 for `2.3.1` (aria-level)
    progress: TaskProgress | None = None
    done: int = 0  # a parent: tasks under it in the table that are completed
    total: int = 0  # a parent: tasks under it in the table
    title: str = ""  # a parent: its title in the task list ("" when unknown)


def level(task_id: str) -> int:
    """How deep an id sits: its number of parts."""
    return task_id.count(".") + 1


def ancestors(task_id: str) -> list[str]:
    """The ids above an id, outermost first: `2.3.1` → `2`, `2.3`."""
    parts = task_id.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def parents(tasks: Mapping[str, TaskProgress]) -> list[str]:
    """The ids the tree adds rows for: parents of the table's tasks that the table does not hold."""
    return list(dict.fromkeys(p for t in tasks.values() for p in ancestors(t.task_id) if p not in tasks))


def rows(tasks: Mapping[str, TaskProgress], titles: Mapping[str, str] | None = None) -> list[Row]:
    """The table in its order, each task preceded by the parents not shown yet that the table does not hold."""
    under: dict[str, list[TaskProgress]] = {}
    for progress in tasks.values():
        for parent in ancestors(progress.task_id):
            under.setdefault(parent, []).append(progress)
    shown: set[str] = set()
    found: list[Row] = []
    for progress in tasks.values():
        for parent in ancestors(progress.task_id):
            if parent not in shown and parent not in tasks:
                below = under[parent]
                found.append(Row(parent, level(parent), None,
                                 sum(1 for p in below if p.status is TaskStatus.COMPLETED), len(below),
                                 (titles or {}).get(parent, "")))
                shown.add(parent)
        found.append(Row(progress.task_id, level(progress.task_id), progress))
        shown.add(progress.task_id)
    return found
