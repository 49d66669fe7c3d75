"""Which tasks a retry or a replay runs again, or why it would run none (pure; jobs.control acts on it).

A retry or a replay promises to run tasks again, so it names the tasks it re-opens, and when there are
none it is refused with the reason instead of answering "Retrying task 1.2" and doing nothing. Only a
failed or skipped task runs again: a done task's commit is on the branch (git is the truth) and stays.
A task a person skipped (`/clarity override <id> skipped`) runs again only when it is named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clarity.actors import shown
from clarity.models import TaskProgress
from clarity.status import TaskStatus

AGAIN = (TaskStatus.FAILED, TaskStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class Rerun:
    """The tasks to make pending again, in run order, or why none can be (`refusal`, a clause)."""

    tasks: tuple[str, ...] = ()
    refusal: str = ""


def failed(table: Mapping[str, TaskProgress]) -> tuple[str, ...]:
    """The tasks that failed or were skipped by the engine (not by a person), in run order."""
    return tuple(task_id for task_id, progress in table.items()
                 if progress.status in AGAIN and not progress.override_by)


def retry(table: Mapping[str, TaskProgress], task_id: str | None) -> Rerun:
    """`/clarity retry [<id>]`: the named task if it failed or was skipped, else every failed task (maybe none:
    a blocked execution with nothing failed, its config fixed, simply goes on)."""
    if task_id is None:
        return Rerun(failed(table))
    progress = table.get(task_id)
    if progress is None:
        return Rerun(refusal=_outside(task_id))
    if progress.status in AGAIN:
        return Rerun((task_id,))
    return Rerun(refusal=_why_not(progress, "a retry", ()))


def replay(table: Mapping[str, TaskProgress], from_task: str | None) -> Rerun:
    """The REST API's replay: the failed and skipped tasks from `from_task` on, in run order (every failed one
    without it); refused when that is none, since a replay that runs nothing again is no replay."""
    if from_task is None:
        tasks = failed(table)
        return Rerun(tasks) if tasks else Rerun(refusal="no task of it failed or was skipped, so a replay has nothing "
                                                        "to run again; `resume` continues it")
    if from_task not in table:
        return Rerun(refusal=_outside(from_task))
    order = list(table)
    later = order[order.index(from_task):]
    tasks = tuple(task_id for task_id in later if table[task_id].status in AGAIN and not table[task_id].override_by)
    return Rerun(tasks) if tasks else Rerun(refusal=_why_not(table[from_task], "a replay", later[1:]))


def listed(tasks: Sequence[str]) -> str:
    """`task 1.2`, `tasks 1.2, 1.3`."""
    return f"task{'' if len(tasks) == 1 else 's'} {', '.join(tasks)}"


def _outside(task_id: str) -> str:
    return (f"task {task_id} is not one this execution runs (it was done before the execution started, or lies "
            "outside its scope)")


def _why_not(progress: TaskProgress, what: str, after: Sequence[str]) -> str:
    """Why `what` (a retry, a replay) cannot run this task again; `after`: the tasks it would also look at."""
    task = f"task {progress.task_id}"
    also = " and no task after it failed or was skipped" if after else ""
    if progress.status is TaskStatus.COMPLETED:
        how = (f"was marked done by {shown(progress.override_by)}" if progress.override_by else
               f"is done (commit {progress.commit[:10]})" if progress.commit else "is done")
        return (f"{task} {how}{also}: {what} runs failed and skipped tasks again, never done ones (a done task's "
                "commit stays on the branch)")
    if progress.status is TaskStatus.SKIPPED:  # skipped by a person, and not named
        return f"{task} was skipped by {shown(progress.override_by)}{also}: `/clarity retry {progress.task_id}` runs it"
    return f"{task} has not failed (it is {progress.status}){also}: `resume` runs what is left"
