"""What each `/clarity` verb does on the issue it was written on: the handlers github_app.commands names.

Each handler takes `(engine, reporter, comment event, command)`, acts on the issue's execution through
jobs.control (the same functions the buttons, the dashboard and the REST API call), answers on the
issue, and returns what it did (RQ keeps it). jobs.comments resolves them from GRAMMAR's `handler`
names once, at import; tests/test_commands_handled.py holds every row to a handler of this shape.
"""

from __future__ import annotations

from clarity import numbers
from clarity.models import Execution
from clarity.status import ExecutionStatus
from github_app import commands, repos
from github_app.commands import Command
from github_app.reporting import Reporter
from jobs import admission, budgets, control, reports, scheduler
from jobs.comment_event import CommentEvent
from jobs.context import Engine
from jobs.control import RESUMABLE, S, link, live_statuses, scope


def _current(eng: Engine, event: CommentEvent, statuses: tuple[ExecutionStatus, ...]) -> Execution | None:
    """The newest execution of this issue/PR in one of `statuses`."""
    found = eng.store.find(event.repo, event.issue_number, statuses)
    return found[0] if found else None


def _target_or_say(eng: Engine, reporter: Reporter, event: CommentEvent,
                   statuses: tuple[ExecutionStatus, ...], nothing: str) -> Execution | None:
    """The issue's execution a command applies to; when there is none, say so on the issue."""
    target = _current(eng, event, statuses)
    if target is None:
        newest = eng.store.find(event.repo, event.issue_number)
        if newest:  # say where the issue's execution is, and what moves it from there
            nothing += f" {link(eng, newest[0])} is {newest[0].status}. {reports.next_move(newest[0])}".rstrip()
        reporter.comment(event.issue_number, nothing)
    return target


def new_execution(event: CommentEvent, command: Command, branch: str, base: str) -> Execution:
    """The record for a fresh `run`, before it is stored."""
    return Execution(
        id="", installation_id=event.installation_id, repo=event.repo, account=event.account,
        issue_number=event.issue_number, is_pull_request=event.is_pull_request, branch=branch,
        base_branch=base, requester=event.author, status=S.QUEUED, stop_point=command.until,
        only=command.only, tool=command.tool, priority=command.priority or 5,
        trigger_comment_id=event.comment_id, budget=command.budget or "",
    )


def run(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Start an execution, or resume this issue's paused/blocked one with the new scope."""
    live = _current(eng, event, live_statuses())
    if live:
        reporter.comment(event.issue_number, (
            f"An execution is already working here: {link(eng, live)} ({live.status.badge} {live.status}, "
            f"{scope(live)}). Change its stop point with `/clarity stop-point <id>` or end it with "
            "`/clarity stop`."))
        return f"refused: {live.id} already live"
    previous = _current(eng, event, RESUMABLE)
    branch = previous.branch if previous else f"clarity/issue-{event.issue_number}"
    refs = (branch, previous.base_branch) if previous else (branch, "")
    read_at = refs if not event.is_pull_request or previous else ("",)  # a new PR run reads its default branch
    config = admission.config_at(reporter, event.repo, read_at)
    disabled = admission.refusal(config)
    if disabled:
        reporter.comment(event.issue_number, disabled)
        return admission.REFUSED
    problem = control.unknown_task(reporter, event.repo, read_at, command.until or command.only)
    if problem:
        reporter.comment(event.issue_number, f"{problem}. Nothing was started; `/clarity status` shows the list.")
        return "refused: unknown task"
    if previous:
        execution = _rescoped(eng, reporter, event, command, previous)
    else:
        where = _branch_for(reporter, event)
        if where is None:
            return "refused: fork"
        execution = eng.store.create(new_execution(event, command, *where), actor=event.author)
    execution = scheduler.submit(eng, execution, event.author)
    if execution.status is S.QUEUED:
        holder = eng.store.lease_holder(execution.repo) or "another execution"
        reporter.comment(event.issue_number, (
            f"Queued {link(eng, execution)} ({scope(execution)}): this repository runs one execution at a "
            f"time and `{holder}` is working now. Position {scheduler.position(eng, execution)} in line."))
        return f"queued {execution.id}"
    reporter.comment(event.issue_number, (
        f"{'Resuming' if previous else 'Starting'} execution {link(eng, execution)} on branch "
        f"`{execution.branch}`, {scope(execution)}. Progress appears as check runs and on the dashboard."
        + admission.parallel_note(config)))
    return f"started {execution.id}"


def _rescoped(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command,
              previous: Execution) -> Execution:
    """A paused or blocked execution given the new command's scope, tool, priority and budget."""
    execution = eng.store.update(previous.id, stop_point=command.until, only=command.only,
                                 tool=command.tool, priority=command.priority or previous.priority,
                                 requester=event.author, trigger_comment_id=event.comment_id)
    if command.budget:  # new limits replace the same ones, the others stay
        execution = budgets.set_limits(eng.store, execution, command.budget, event.author)
    control.reset_failed(eng, execution, None)
    control.rescope(eng, reporter, execution)
    return execution


def _branch_for(reporter: Reporter, event: CommentEvent) -> tuple[str, str] | None:
    """(branch, base) a new execution works on; None, said on the PR, when the PR comes from a fork."""
    if not event.is_pull_request:
        return f"clarity/issue-{event.issue_number}", repos.default_branch(reporter.gh, event.repo)
    head = repos.pull_head(reporter.gh, event.repo, event.issue_number)
    if head.head_repo and head.head_repo != event.repo:
        reporter.comment(event.issue_number, (
            f"This pull request comes from the fork `{head.head_repo}`: Clarity can only push to "
            "branches of this repository. Open the PR from a branch here, or comment on an issue."))
        return None
    return head.head_ref, head.base_ref


def stop(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """End this issue's execution (clarity.stopping.MEANS says how)."""
    target = _target_or_say(eng, reporter, event, live_statuses() + RESUMABLE,
                            "Nothing to stop: no execution is live on this issue.")
    if not target:
        return "nothing to stop"
    return control.stop_execution(eng, reporter, target, event.author)


def pause(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Pause after the current task."""
    target = _target_or_say(eng, reporter, event, live_statuses(),
                            "Nothing to pause: no execution is running on this issue.")
    if not target:
        return "nothing to pause"
    return control.pause_execution(eng, reporter, target, event.author)


def resume(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Continue a paused or blocked execution where it stopped."""
    target = _target_or_say(eng, reporter, event, RESUMABLE,
                            "Nothing to resume: no paused or blocked execution on this issue.")
    if not target:
        return "nothing to resume"
    if command.budget:
        target = budgets.set_limits(eng.store, target, command.budget, event.author)
    return control.resume_execution(eng, reporter, target, event.author)


def set_stop_point(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Move the stop point of the live (or paused) execution."""
    target = _target_or_say(eng, reporter, event, live_statuses() + RESUMABLE,
                            "No execution here to change: start one with `/clarity run`.")
    if not target or not command.task_id:
        return "no execution"
    return control.move_stop_point(eng, reporter, target, command.task_id)


def retry(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Re-run a blocked execution's failed task (or the named one)."""
    target = _target_or_say(eng, reporter, event, RESUMABLE,
                            "Nothing to retry: no blocked or paused execution on this issue.")
    if not target:
        return "nothing to retry"
    return control.retry_execution(eng, reporter, target, event.author, command.task_id)


def override(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """`/clarity override <id> done|skipped [because …]`: a person settles a task; a paused/blocked execution resumes."""
    target = _target_or_say(eng, reporter, event, live_statuses() + RESUMABLE,
                            "Nothing to override: no execution on this issue. Start one with `/clarity run`.")
    if not target or not command.task_id or not command.outcome:
        return "nothing to override"
    return control.override_task(eng, reporter, target, command.task_id, command.outcome, event.author,
                                 command.reason or "")


def prioritise(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Give this issue's live or queued execution another priority (a manager's command)."""
    target = _target_or_say(eng, reporter, event, live_statuses(),
                            "Nothing to re-prioritise: no execution is live or queued on this issue.")
    if not target or command.priority is None:
        return "nothing to re-prioritise"
    return control.prioritise_execution(eng, reporter, target, command.priority, event.author)


def show_help(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Reply with the help, generated from the grammar table."""
    reporter.comment(event.issue_number, commands.help_text())
    return "replied: help"


def status(eng: Engine, reporter: Reporter, event: CommentEvent, command: Command) -> str:
    """Reply with the issue's execution, its task table and the command that moves it on."""
    reporter.comment(event.issue_number, status_text(eng, event.repo, event.issue_number))
    return "replied: status"


def _eta_line(eng: Engine, execution: Execution) -> str:
    """". Priority 5; next step now; done in about 12 min" for a live execution, else nothing."""
    est = scheduler.estimate(eng, execution)
    if est.finishes_in is None:
        return ""
    where = f"position {scheduler.position(eng, execution)} in this repository's line; " \
        if execution.status is S.QUEUED else ""
    return (f". Priority {execution.priority}; {where}next step {control.starts(eng, execution)}; "
            f"done in {scheduler.eta_text(est.finishes_in)} (tasks take {scheduler.eta_text(est.task_seconds)})")


def status_text(eng: Engine, repo: str, issue_number: int) -> str:
    """A compact status reply: the newest execution of this issue with its task table."""
    found = eng.store.find(repo, issue_number)
    if not found:
        return "No execution on this issue yet. Start one with `/clarity run until <task id>`."
    execution = found[0]
    # Each fact once: a running execution's reason is the engine's note of its last move ("task 2"), which
    # "working on 2" already says; a stop point reached is its scope, said again.
    reason = execution.reason if execution.status.is_settled else ""
    scoped = "" if reason and execution.stop_point and f"stop point {execution.stop_point}" in reason \
        else f"{scope(execution)}, "
    lines = [
        f"**Execution {link(eng, execution)}**: {execution.status.badge} {execution.status}, "
        f"{scoped}{numbers.of(execution).tasks_text()}"
        + (f", working on {execution.current_task}" if execution.current_task else "")
        + (f". {reason[0].upper()}{reason[1:]}" if reason else "") + _eta_line(eng, execution) + ".", "",
        "| task | title | status | attempts |", "|---|---|---|---|",
    ]
    for progress in eng.store.tasks(execution.id).values():
        lines.append(f"| {progress.task_id} | {progress.title} | {progress.status} | {progress.attempts} |")
    if execution.pr_url:
        lines += ["", f"Pull request: {execution.pr_url}"]
    if reports.next_move(execution):
        lines += ["", reports.next_move(execution)]
    return "\n".join(lines)
