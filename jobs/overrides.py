"""Manual override: a person declares a task done or skipped (`/clarity override <id> done|skipped`).

The command records the decision in the task table (`override_by`) and the audit stream; git stays
the truth, so the next step ticks a task marked done on the branch and commits that alone
("clarity: <id> marked done by @login"), without running the agent. A task marked skipped is
unavailable, like a skipped task: it never runs, and tasks that depend on it cannot run either.
The decisions are pure (`refusal`, `to_tick`, `waived`); `record` and `tick_overridden` do the I/O.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

from clarity import tasklist
from clarity.models import Execution, TaskProgress
from clarity.status import TaskStatus
from clarity.store import Store
from clarity.tasklist import TaskList
from runner.workspace import Workspace

log = logging.getLogger(__name__)
OUTCOMES = {"done": TaskStatus.COMPLETED, "skipped": TaskStatus.SKIPPED}
RUNNING = (TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING)


def commit_message(task_id: str, login: str) -> str:
    """The subject of the commit that ticks an overridden task (it starts like a task's own commit)."""
    return f"clarity: {task_id} marked done by @{login}"


def refusal(progress: TaskProgress, outcome: str, ticked: bool, is_leaf: bool, running: bool) -> str | None:
    """Why this override cannot be done (a sentence for the commenter), or None when it can.

    `ticked`: the branch shows the task done; `is_leaf`: it is a task, not a group; `running`: the
    execution is working right now (so the task it is on cannot be overridden under it).
    """
    task = f"task {progress.task_id}"
    if outcome not in OUTCOMES:
        return f"`{outcome}` is not an override: use `done` or `skipped`"
    if not is_leaf:
        return f"{task} is a group: override the tasks under it one by one"
    if ticked or progress.status is TaskStatus.COMPLETED:
        return f"{task} is already done"
    if progress.status in RUNNING and running:
        return f"{task} is running now: `/clarity stop` it (or wait for it to fail) first"
    if progress.status is TaskStatus.SKIPPED and progress.override_by and outcome == "skipped":
        return f"{task} is already skipped (by @{progress.override_by})"
    return None


def overridden(progress: TaskProgress, outcome: str, login: str) -> list[TaskProgress]:
    """The task table writes of an override, in order: back to pending first if it failed or was skipped
    (the task state machine only completes or skips a pending task), then the person's outcome."""
    steps = []
    if progress.status is not TaskStatus.PENDING:
        progress = dataclasses.replace(progress, status=TaskStatus.PENDING)
        steps.append(progress)
    steps.append(dataclasses.replace(progress, status=OUTCOMES[outcome], override_by=login, last_error=""))
    return steps


def record(store: Store, execution: Execution, progress: TaskProgress, outcome: str, login: str) -> None:
    """Write the override to the task table, the audit stream, the execution's log and the process log."""
    store.settle_tasks(execution.id, overridden(progress, outcome, login), actor=login)  # counts a task marked done
    store.audit_event(execution, "task.override", login, {"task": progress.task_id, "outcome": outcome})
    store.log(execution.id, f"task {progress.task_id}: marked {outcome} by @{login}", task=progress.task_id)
    log.info("execution %s: task %s marked %s by @%s", execution.id, progress.task_id, outcome, login)


def to_tick(table: Mapping[str, TaskProgress], tasks: TaskList) -> list[tuple[str, str]]:
    """(task id, login) of the tasks people marked done that the branch still shows open, in list order."""
    marked = {p.task_id: p.override_by for p in table.values()
              if p.status is TaskStatus.COMPLETED and p.override_by}
    return [(t.id, marked[t.id]) for t in tasks.leaves() if not t.done and t.id in marked]


def waived(table: Mapping[str, TaskProgress]) -> frozenset[str]:
    """Tasks people marked skipped: settled, though never ticked."""
    return frozenset(p.task_id for p in table.values() if p.status is TaskStatus.SKIPPED and p.override_by)


def tick_overridden(store: Store, ws: Workspace, execution: Execution, tasks_file: str, text: str,
                    tasks: TaskList) -> str | None:
    """Tick and commit (one commit each) the tasks marked done by hand, then push; the new list text,
    or None when there was nothing to tick. The agent does not run for them."""
    pending = to_tick(store.tasks(execution.id), tasks)
    if not pending:
        return None
    for task_id, login in pending:
        text = tasklist.tick(text, [task_id], tasks_file)
        ws.write(tasks_file, text.encode("utf-8"))
        sha = ws.commit(commit_message(task_id, login), paths=[tasks_file]) or ""
        store.set_task_status(execution.id, task_id, TaskStatus.COMPLETED, commit=sha)
        store.log(execution.id, f"task {task_id}: ticked on `{execution.branch}` as marked done by @{login}"
                                f"{f' (commit {sha[:10]})' if sha else ''}", task=task_id)
    ws.push(execution.branch)
    return text
