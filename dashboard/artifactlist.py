"""The artifacts page's sections: an execution's files grouped by task, then by attempt (clarity.artifacts' layout).

`<task id>/attempt-<n>/<file>` is one attempt's file; anything else (a file beside the attempts, a folder
a check made elsewhere) is listed under its task, or under the execution when it sits at the top. Tasks in
the order of their ids (1.2 before 1.10), attempts by number. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from clarity.artifacts import Entry

_ATTEMPT = re.compile(r"attempt-(\d+)")


@dataclass(frozen=True, slots=True)
class File:
    """One file: its path under the execution's folder (for the link), its name within its group, its size."""

    path: str
    name: str
    size: int


@dataclass(slots=True)
class Attempt:
    """One attempt's files."""

    number: int
    files: list[File] = field(default_factory=list)


@dataclass(slots=True)
class TaskFiles:
    """One task's attempts, and its files outside them ("" task: files at the execution's top)."""

    task_id: str
    attempts: list[Attempt] = field(default_factory=list)
    other: list[File] = field(default_factory=list)


def group(entries: Iterable[Entry]) -> list[TaskFiles]:
    """The files of a listing by task and attempt (folders are implied by the files under them)."""
    tasks: dict[str, TaskFiles] = {}
    attempts: dict[tuple[str, int], Attempt] = {}
    for entry in entries:
        if entry.is_dir:
            continue
        parts = entry.path.split("/")
        task = parts[0] if len(parts) > 1 else ""
        found = tasks.setdefault(task, TaskFiles(task))
        number = _ATTEMPT.fullmatch(parts[1]) if len(parts) > 2 else None
        if number:
            key = (task, int(number.group(1)))
            if key not in attempts:
                attempts[key] = Attempt(key[1])
                found.attempts.append(attempts[key])
            attempts[key].files.append(File(entry.path, "/".join(parts[2:]), entry.size))
        else:
            found.other.append(File(entry.path, "/".join(parts[1:]) if task else entry.path, entry.size))
    for found in tasks.values():
        found.attempts.sort(key=lambda a: a.number)
        for attempt in found.attempts:
            attempt.files.sort(key=lambda f: f.name)
    return sorted(tasks.values(), key=lambda t: (t.task_id == "", _id_key(t.task_id)))


def size_text(size: int) -> str:
    """A file size as people read it: 812 B, 4.1 KiB, 2.0 MiB."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"


def _id_key(task_id: str) -> tuple[tuple[int, str], ...]:
    """1.2 before 1.10; a folder that is not a task id sorts after the ids, by name."""
    return tuple((int(p), "") if p.isdigit() else (1 << 30, p) for p in task_id.split("."))
