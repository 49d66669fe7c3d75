"""The engine's controls on one execution: stop, pause, resume, stop point, retry, replay, override, priority.

Every way in acts through these, with the execution in hand: the comment commands (jobs.verbs), the
check-run buttons (jobs.buttons), the dashboard's buttons (jobs.control_jobs), GitHub's events
(jobs.lifecycle) and the REST API (jobs.api_engine). Each changes state through the store and answers
on the execution's issue.
"""

from __future__ import annotations

import contextlib
import dataclasses

from githubkit.exception import RequestFailed

from clarity import numbers, repoconfig, stopping, tasklist
from clarity.actors import literal, shown
from clarity.flags import Flag
from clarity.models import Execution
from clarity.status import ExecutionStatus, TaskStatus
from clarity.tasklist import TaskListError
from github_app import repos
from github_app.reporting import Reporter
from jobs import admission, budgets, overrides, reports, reruns, scheduler
from jobs.context import Engine

S = ExecutionStatus
RESUMABLE = (S.PAUSED, S.BLOCKED)


def link(eng: Engine, execution: Execution) -> str:
    """The execution's id, linked to its dashboard page."""
    return f"[`{execution.id}`]({eng.dashboard_url(execution.id)})"


def scope(execution: Execution) -> str:
    """How far the execution runs: "only task 2", "until 2.3" or "to the end of the list"."""
    if execution.only:
        return f"only task {execution.only}"
    return f"until {execution.stop_point}" if execution.stop_point else "to the end of the list"


def live_statuses() -> tuple[ExecutionStatus, ...]:
    """The statuses of an execution someone is working on or waiting for: active, or queued."""
    return tuple(s for s in ExecutionStatus if s.is_active) + (S.QUEUED,)


def unknown_task(reporter: Reporter, repo: str, refs: tuple[str, ...], task_id: str | None) -> str | None:
    """The parser's message when `task_id` is not in the task list at the first of `refs` that has one.

    Checked when the command arrives, so `/clarity run until 9.9` is answered at once; a list that
    cannot be read here (missing, broken) is left for the step, which blocks with the exact error.
    """
    if not task_id:
        return None
    try:
        config = repoconfig.parse(_first_file(reporter, repo, repoconfig.CONFIG_PATH, refs))
        raw = _first_file(reporter, repo, config.tasks_file, refs)
        tasks = tasklist.parse(raw.decode("utf-8-sig", "replace"), config.tasks_file) if raw else None
    except (RequestFailed, repoconfig.ConfigError, TaskListError):
        return None
    try:
        if tasks is not None:
            tasks.get(task_id)
    except TaskListError as exc:
        return str(exc)
    return None


def _first_file(reporter: Reporter, repo: str, path: str, refs: tuple[str, ...]) -> bytes | None:
    for ref in refs:
        data = repos.read_file(reporter.gh, repo, path, ref)
        if data is not None:
            return data
    return None


def stop_execution(eng: Engine, reporter: Reporter | None, target: Execution, actor: str,
                   why: str = "") -> str:
    """Stop one execution (from a comment, a button or an event); tell its issue when a reporter is given.

    What a stop does is said once, in clarity.stopping; the replies quote it."""
    reason = why or f"stopped by {shown(actor)}"
    orphaned = target.status.is_active and eng.store.lease_holder(target.repo) != target.id
    if target.status in (S.QUEUED, *RESUMABLE) or orphaned:
        # Nobody is working on it (waiting, settled, or its worker died and the lease expired): stop now.
        eng.store.remove_waiting(target.repo, target.id)
        eng.store.transition(target.id, S.STOPPED, actor, reason)
        message = f"Stopped {link(eng, target)}" + (f": {why}." if why else ".") + " " + stopping.sentence(stopping.AFTER)
    elif target.status.is_terminal:
        return f"already {target.status}"
    else:
        eng.store.set_flag(target.id, Flag.STOP, actor)
        message = (f"Stopping {link(eng, target)}" + (f" ({why})" if why else "")
                   + f": {stopping.RUNNING}. {stopping.sentence(stopping.AFTER)}")
    if reporter is not None:
        reporter.comment(target.issue_number, message)
    return f"stop {target.id}"


def pause_execution(eng: Engine, reporter: Reporter, target: Execution, actor: str) -> str:
    """Pause one execution after its current task (a comment or the dashboard's Pause button)."""
    eng.store.set_flag(target.id, Flag.PAUSE, actor)
    reporter.comment(target.issue_number, f"{link(eng, target)} will pause after the current task.")
    return f"pause {target.id}"


def resume_execution(eng: Engine, reporter: Reporter, target: Execution, actor: str) -> str:
    """Continue a paused or blocked execution (a comment or a Resume button)."""
    return _continue(eng, reporter, target, actor, None, "resume")


def move_stop_point(eng: Engine, reporter: Reporter, target: Execution, task_id: str) -> str:
    """Give one execution another stop point (a comment or the API); a stop point reached before is behind it."""
    if target.status not in (*live_statuses(), *RESUMABLE):
        reporter.comment(target.issue_number, f"{link(eng, target)} is {target.status}: its stop point "
                                              "cannot change any more.")
        return f"refused: {target.status}"
    problem = unknown_task(reporter, target.repo, (target.branch, target.base_branch), task_id)
    if problem:
        reporter.comment(target.issue_number, f"{problem}. The stop point stays {scope(target)}.")
        return "refused: unknown task"
    rescope(eng, reporter, eng.store.update(target.id, stop_point=task_id))
    eng.store.clear_flag(target.id, Flag.STOP_POINT_REACHED)  # else a resume would drop the new stop point
    reporter.comment(target.issue_number, f"{link(eng, target)} now stops after task {task_id}.")
    return f"stop-point {target.id} {task_id}"


def retry_execution(eng: Engine, reporter: Reporter, target: Execution, actor: str, task_id: str | None) -> str:
    """Make a failed task eligible again and continue (a comment, a Retry button or a re-run request); a named
    task that did not fail or was not skipped is refused with the reason (jobs.reruns)."""
    if target.status in RESUMABLE:
        rerun = reruns.retry(eng.store.tasks(target.id), task_id)
        if rerun.refusal:
            reporter.comment(target.issue_number, f"{rerun.refusal[0].upper()}{rerun.refusal[1:]}. Nothing was retried.")
            return f"refused: {rerun.refusal}"
    return _continue(eng, reporter, target, actor, task_id, "retry")


def replay_execution(eng: Engine, reporter: Reporter, target: Execution, actor: str, from_task: str | None,
                     tool: str | None = None, stop_point: str | None = None) -> str:
    """Run a blocked or paused execution again from `from_task` (the API's replay): that task and the ones
    after it in run order that failed or were skipped become pending, with another tool or stop point if given.

    Tasks a person settled stay settled; without `from_task` every failed task runs again. A replay that would
    run nothing again (the task is done, say) is refused with the reason, and changes nothing (jobs.reruns).
    """
    if target.status not in RESUMABLE:
        reporter.comment(target.issue_number, f"{link(eng, target)} is {target.status}: nothing to replay. "
                                              f"{reports.next_move(target)}".rstrip())
        return f"nothing to replay: {target.status}"
    refs = (target.branch, target.base_branch)
    for named in (from_task, stop_point):
        problem = unknown_task(reporter, target.repo, refs, named)
        if problem:
            reporter.comment(target.issue_number, f"{problem}. Nothing was replayed.")
            return f"refused: {problem}"
    rerun = reruns.replay(eng.store.tasks(target.id), from_task)
    if rerun.refusal:
        reporter.comment(target.issue_number, f"{link(eng, target)}: {rerun.refusal}. Nothing was replayed.")
        return f"refused: {rerun.refusal}"
    if tool or stop_point:
        target = eng.store.update(target.id, **({"tool": tool} if tool else {}),
                                  **({"stop_point": stop_point} if stop_point else {}))
        if stop_point:
            eng.store.clear_flag(target.id, Flag.STOP_POINT_REACHED)
            rescope(eng, reporter, target)
    eng.store.log(target.id, f"replay of {reruns.listed(rerun.tasks)} by {shown(actor)}"
                             + (f", tool {tool}" if tool else "") + (f", until {stop_point}" if stop_point else ""))
    return _continue(eng, reporter, target, actor, None, "replay", rerun.tasks)


def _continue(eng: Engine, reporter: Reporter, target: Execution, actor: str, task_id: str | None,
              verb: str, reopen: tuple[str, ...] | None = None) -> str:
    """Resume, retry or replay: failed tasks (all, or `task_id`, or exactly `reopen`) become eligible and the
    execution goes back in line; the reply names what runs again."""
    if target.status not in RESUMABLE:
        reporter.comment(target.issue_number, f"{link(eng, target)} is {target.status}: nothing to {verb}. "
                                              f"{reports.next_move(target)}".rstrip())
        return f"nothing to {verb}: {target.status}"
    config = admission.config_at(reporter, target.repo, (target.branch, target.base_branch))
    disabled = admission.refusal(config)
    if disabled:
        reporter.comment(target.issue_number, f"{link(eng, target)} stays {target.status}. {disabled}")
        return admission.REFUSED
    over = budgets.over_budget(config, target) if config is not None else None  # unreadable: the step pauses
    if over:
        reporter.comment(target.issue_number, f"{link(eng, target)} stays {target.status}: {over}. "
                                              f"To go on, {budgets.HINT}.")
        return f"refused: {over}"
    reset = [one for named in (reopen if reopen is not None else (task_id,))
             for one in reset_failed(eng, target, named)]
    if target.stop_point and eng.store.flag(target.id, Flag.STOP_POINT_REACHED):
        target = eng.store.update(target.id, stop_point=None)  # that stop point is behind us: run on
        rescope(eng, reporter, target)
    target = scheduler.submit(eng, target, actor)
    if verb == "resume":
        message = f"Resuming {link(eng, target)}, {scope(target)} ({shown(actor)})."
    elif verb == "replay":
        message = (f"Replaying {reruns.listed(reset)} in {link(eng, target)}, {scope(target)}"
                   + (f", with `{target.tool}`" if target.tool else "") + f" ({shown(actor)}).")
    elif reset:
        what = f"task {task_id}" if task_id else f"the failed {reruns.listed(reset)}"
        message = f"Retrying {what} in {link(eng, target)} ({shown(actor)})."
    else:
        message = f"Retrying {link(eng, target)}: no task of it had failed; it goes on, {scope(target)} ({shown(actor)})."
    reporter.comment(target.issue_number, message)
    return f"{verb} {target.id}"


def override_task(eng: Engine, reporter: Reporter, target: Execution, task_id: str, outcome: str, actor: str,
                  reason: str = "") -> str:
    """Settle one task of an execution by hand (a comment or the API), then resume it if it was waiting.

    The override is an outcome like any other: the next step commits it to `task_outcomes.md` (who, when,
    `reason`), and the PR's task table marks it (jobs.overrides)."""
    if target.status not in (*live_statuses(), *RESUMABLE):
        reporter.comment(target.issue_number, f"{link(eng, target)} is {target.status}: nothing to override.")
        return f"refused: {target.status}"
    tasks = _read_tasks(reporter, target.repo, (target.branch, target.base_branch))
    progress = eng.store.task(target.id, task_id)
    try:
        if tasks is None:
            raise TaskListError(f"the task list of `{target.branch}` cannot be read")
        task = tasks.get(task_id)
        progress = dataclasses.replace(progress, title=progress.title or task.title)
        problem = overrides.refusal(progress, outcome, task.done, task.is_leaf,
                                    target.status.is_active and target.current_task == task_id)
    except TaskListError as exc:
        problem = str(exc)
    if problem:
        reporter.comment(target.issue_number, f"{problem[0].upper()}{problem[1:]}. Nothing was changed.")
        return f"refused: {problem}"
    overrides.record(eng.store, target, progress, outcome, actor, reason)
    effect = (f"Clarity ticks it on `{target.branch}` in its own commit, without running the agent"
              if outcome == "done" else "it will not run, nor will tasks that depend on it")
    why = f" (reason: {literal(reason)})" if reason else ""
    reporter.comment(target.issue_number, f"Task {task_id} of {link(eng, target)} marked **{outcome}** by "
                                          f"{shown(actor)}{why}: {effect}; `task_outcomes.md` records it.")
    if target.status in RESUMABLE:
        return _continue(eng, reporter, eng.store.get(target.id), actor, None, "resume")
    return f"override {target.id} {task_id} {outcome}"


def rescope(eng: Engine, reporter: Reporter, target: Execution) -> None:
    """Count the execution's numbers over its new stop point at once (its next step counts them again)."""
    tasks = _read_tasks(reporter, target.repo, (target.branch, target.base_branch))
    if tasks is not None:
        with contextlib.suppress(TaskListError):  # a stop point the list no longer has: the step blocks on it
            eng.store.set_scope(target.id, numbers.scope(tasks, target.stop_point, target.only))


def _read_tasks(reporter: Reporter, repo: str, refs: tuple[str, ...]) -> tasklist.TaskList | None:
    """The task list at the first of `refs` that has one; None when it is missing or cannot be read."""
    try:
        config = repoconfig.parse(_first_file(reporter, repo, repoconfig.CONFIG_PATH, refs))
        raw = _first_file(reporter, repo, config.tasks_file, refs)
        return tasklist.parse(raw.decode("utf-8-sig", "replace"), config.tasks_file) if raw else None
    except (RequestFailed, repoconfig.ConfigError, TaskListError):
        return None


def prioritise_execution(eng: Engine, reporter: Reporter, target: Execution, priority: int, actor: str) -> str:
    """Give one execution another priority (a manager's comment or the API)."""
    if not (target.status.is_active or target.status is S.QUEUED):
        reporter.comment(target.issue_number, f"{link(eng, target)} is {target.status}: it waits for nobody, "
                                              "so its priority cannot change.")
        return f"refused: {target.status}"
    before = target.priority
    target = scheduler.reprioritise(eng, target, priority, actor)
    reporter.comment(target.issue_number, (
        f"{link(eng, target)} now has priority {target.priority} (was {before}; 10 runs first). "
        f"Next step: {starts(eng, target)}."))
    return f"priority {target.id} {target.priority}"


def starts(eng: Engine, execution: Execution) -> str:
    """When the execution's next step starts: "now", "in about 5 min" or "not scheduled"."""
    est = scheduler.estimate(eng, execution)
    if est.starts_in is None:
        return "not scheduled"
    return "now" if est.starts_in == 0 else f"in {scheduler.eta_text(est.starts_in)}"


def reset_failed(eng: Engine, execution: Execution, task_id: str | None) -> list[str]:
    """Make failed/skipped tasks eligible again (all of them, or just `task_id`); the ids made so.

    A task a person marked skipped (`/clarity override`) stays skipped unless it is named. Its attempts stay
    counted: the next ones go on from them (jobs.attempts), so no attempt's artifacts are ever written over.
    """
    reset = []
    for progress in eng.store.tasks(execution.id).values():
        if progress.status in (TaskStatus.FAILED, TaskStatus.SKIPPED) and task_id in (None, progress.task_id) \
                and not (progress.override_by and task_id is None):
            eng.store.put_task(execution.id, dataclasses.replace(progress, status=TaskStatus.PENDING, last_error="",
                                                                 override_by="", override_reason="", override_at=0.0,
                                                                 commit=""))
            eng.store.reset_recoveries(execution.id, progress.task_id)  # a person's retry: a fresh count
            reset.append(progress.task_id)
    return reset
