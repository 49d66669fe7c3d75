"""Manual override: a person declares a task done or skipped (`/clarity override <id> done|skipped [because …]`).

The command records the decision in the task table (`override_by`, `override_reason`, `override_at`) and the
audit stream; git stays the truth, so the next step writes every override as an outcome, in a commit of its
own without running the agent: a task marked done is ticked and gets its `task_outcomes.md` section ("clarity:
<id> marked done by @login", who, when, why in the body); a task marked skipped keeps its open box and gets
its section ("clarity: <id> skipped by @login"). A skipped task is unavailable, like a skipped task: it never
runs, and tasks that depend on it cannot run either. The decisions are pure (`refusal`, `to_record`,
`waived`, `mark`); `record` and `tick_overridden` do the I/O.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

from clarity import outcomes, tasklist
from clarity.actors import shown
from clarity.models import Execution, TaskProgress
from clarity.status import TaskStatus
from clarity.store import Store
from clarity.tasklist import TaskList
from runner.workspace import Workspace

log = logging.getLogger(__name__)
OUTCOMES = {"done": TaskStatus.COMPLETED, "skipped": TaskStatus.SKIPPED}
RUNNING = (TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING)


def commit_message(progress: TaskProgress, artifacts_url: str = "") -> str:
    """The commit that records an override: its subject starts like a task's own commit (`clarity: <id> `);
    its body says who, when, why, and what the agent had done before."""
    done = progress.status is TaskStatus.COMPLETED
    said = outcomes.decision("done" if done else "skipped", progress.override_by, progress.override_at,
                             progress.override_reason)
    lines = [f"clarity: {progress.task_id} {'marked done' if done else 'skipped'} by {shown(progress.override_by)}",
             "", said[0].upper() + said[1:] + ".",
             f"Attempts before: {progress.attempts}" + (f" (tool {progress.tool})" if progress.tool else ""),
             "Checks: not run for this outcome (a person's decision)"]
    if artifacts_url:
        lines.append(f"Artifacts: {artifacts_url}")
    return "\n".join(lines)


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
        return f"{task} is already skipped (by {shown(progress.override_by)})"
    return None


def overridden(progress: TaskProgress, outcome: str, login: str, reason: str = "",
               at: float | None = None) -> list[TaskProgress]:
    """The task table writes of an override, in order: back to pending first if it failed or was skipped
    (the task state machine only completes or skips a pending task), then the person's outcome. The
    attempts the task had stay counted (the override is one more outcome of it, not a fresh start)."""
    steps = []
    if progress.status is not TaskStatus.PENDING:
        progress = dataclasses.replace(progress, status=TaskStatus.PENDING)
        steps.append(progress)
    steps.append(dataclasses.replace(progress, status=OUTCOMES[outcome], override_by=login, last_error="",
                                     override_reason=reason, override_at=time.time() if at is None else at,
                                     commit=""))
    return steps


def record(store: Store, execution: Execution, progress: TaskProgress, outcome: str, login: str,
           reason: str = "") -> None:
    """Write the override to the task table, the audit stream, the execution's log and the process log."""
    store.settle_tasks(execution.id, overridden(progress, outcome, login, reason), actor=login)  # counts a done
    store.audit_event(execution, "task.override", login, {"task": progress.task_id, "outcome": outcome,
                                                          "reason": reason})
    store.log(execution.id, f"task {progress.task_id}: marked {outcome} by {shown(login)}"
                            + (f": {reason}" if reason else ""), task=progress.task_id)
    log.info("execution %s: task %s marked %s by %s", execution.id, progress.task_id, outcome, login)


def to_record(table: Mapping[str, TaskProgress], tasks: TaskList) -> list[TaskProgress]:
    """The overrides not yet written to the branch, in list order: tasks marked done that it still shows open,
    and tasks marked skipped whose outcome has no commit yet."""
    ids = {t.id: t for t in tasks.leaves()}
    return [p for task_id, p in ((t.id, table.get(t.id)) for t in ids.values()) if p is not None and p.override_by
            and ((p.status is TaskStatus.COMPLETED and not ids[task_id].done)
                 or (p.status is TaskStatus.SKIPPED and not p.commit))]


def waived(table: Mapping[str, TaskProgress]) -> frozenset[str]:
    """Tasks people marked skipped: settled, though never ticked."""
    return frozenset(p.task_id for p in table.values() if is_waived(p))


def is_waived(progress: TaskProgress) -> bool:
    """Whether a person marked this task skipped."""
    return progress.status is TaskStatus.SKIPPED and bool(progress.override_by)


def mark(progress: TaskProgress) -> str:
    """How the PR's task table marks a task a person settled ("" for the agent's own)."""
    if not progress.override_by or progress.status not in (TaskStatus.COMPLETED, TaskStatus.SKIPPED):
        return ""
    outcome = "done" if progress.status is TaskStatus.COMPLETED else "skipped"
    return "✋ overridden: " + outcomes.decision(outcome, progress.override_by, progress.override_at,
                                                progress.override_reason)


def outcome_of(progress: TaskProgress, execution_id: str, base_sha: str, artifacts_url: str) -> outcomes.Outcome:
    """The `task_outcomes.md` section of an override."""
    return outcomes.Outcome(
        task_id=progress.task_id, title=progress.title, tool=progress.tool, attempts=progress.attempts,
        duration=progress.duration, base_commit=base_sha, execution_id=execution_id,
        finished_at=progress.override_at, override="done" if progress.status is TaskStatus.COMPLETED else "skipped",
        override_by=progress.override_by, reason=progress.override_reason,
        links=(("Artifacts of its attempts", artifacts_url),) if artifacts_url else ())


def tick_overridden(store: Store, ws: Workspace, execution: Execution, files: tuple[str, str], text: str,
                    tasks: TaskList, dashboard_url: str) -> str | None:
    """Write every override not yet on the branch as an outcome, one commit each, then push: a task marked
    done is ticked in `files[0]` (the task list) and gets its section in `files[1]` (`task_outcomes.md`); a
    task marked skipped gets its section only. The new list text, or None when there was nothing to write.
    The agent does not run for them."""
    tasks_file, outcomes_file = files
    pending = to_record(store.tasks(execution.id), tasks)
    if not pending:
        return None
    for progress in pending:
        done = progress.status is TaskStatus.COMPLETED
        url = f"{dashboard_url}/artifacts/{progress.task_id}" if progress.attempts else ""
        if done:
            text = tasklist.tick(text, [progress.task_id], tasks_file)
            ws.write(tasks_file, text.encode("utf-8"))
        section = outcome_of(progress, execution.id, ws.head_sha(), url)
        ws.write(outcomes_file, outcomes.append(ws.read(outcomes_file), section))
        sha = ws.commit(commit_message(progress, url), paths=[tasks_file, outcomes_file]) or ""
        store.set_task_status(execution.id, progress.task_id, progress.status, commit=sha)
        said = "ticked on" if done else "recorded as skipped on"
        store.log(execution.id, f"task {progress.task_id}: {said} `{execution.branch}` as {shown(progress.override_by)} "
                                f"decided{f' (commit {sha[:10]})' if sha else ''}", task=progress.task_id)
    ws.push(execution.branch)
    return text
