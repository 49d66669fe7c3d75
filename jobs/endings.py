"""How a step ends its execution (stopped, paused, completed, blocked) or puts its next step off.

Ending is one order of events: the step's time is charged, the execution settles, the stop flag is
lowered, and the repository is freed only once the step has ended (jobs.step). GitHub then hears it
all at once: the summary check run concludes while the PR is refreshed and the closing comment posted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from githubkit.exception import GitHubException

from clarity.flags import Flag
from clarity.models import Execution, TaskProgress
from clarity.status import ExecutionStatus
from github_app.client import RetryLater, describe_error
from jobs import budgets, publish, reports
from jobs.stepcontext import StepContext

log = logging.getLogger(__name__)
S = ExecutionStatus
MAX_DEFERRALS = 8  # GitHub asking us to slow down this often in a row blocks the execution (a person looks)
MAX_DEFER = 900.0  # seconds: the longest a wait GitHub did not name grows to (the wait it names is kept)
MOVED = ("the branch moved on GitHub while the task ran (someone else pushed to it): paused so the two don't "
         "collide; `/clarity resume` goes on from their commits")


def finish(ctx: StepContext, ex: Execution, status: ExecutionStatus, reason: str, notify: bool = True) -> str:
    """Settle the execution in `status` and tell GitHub (unless `notify` is off: the caller has told it)."""
    store = ctx.store
    ctx.clock.charge()  # before the execution settles: a resume reads its active time
    if ex.status is not status:
        ex = store.transition(ex.id, status, "engine", reason, current_task=None)
    store.clear_flag(ex.id, Flag.STOP)
    store.log(ex.id, f"execution {status}: {reason}")
    ctx.after.release = ex  # freed when the step ends (see jobs.step.Step.run)
    named = ctx.checkout.config.notify if ctx.checkout else ()

    def tell() -> None:  # the PR (ready for review, or a draft again), then the closing comment
        if notify:  # each on its own: a PR GitHub would not refresh must not swallow the comment
            report(ex, "pull request not refreshed", lambda: refresh_pull(
                ctx, ex, str(status), draft=status not in (S.PAUSED, S.COMPLETED)))
            report(ex, "closing comment not posted", lambda: ctx.reporter.comment(
                ex.issue_number, reports.finished(ex, reason, ctx.dashboard_url(), named)))
    publish.together(lambda: summary(ctx, ex, final=True), tell)
    return f"{status}: {reason}"


def out_of_budget(ctx: StepContext, limit: str) -> str:
    """Pause on an exhausted budget, from `autonomous` as the state machine asks, saying how to go on."""
    ex = budgets.settle(ctx.store, ctx.store.get(ctx.execution_id))
    return finish(ctx, ex, S.PAUSED, budgets.pause_reason(limit))


def branch_moved(ctx: StepContext) -> str:
    """Pause: someone pushed to the branch while the task ran (never forced: their work stays)."""
    ex = ctx.store.get(ctx.execution_id)
    if ex.status in (S.TASK_EXECUTING, S.ERROR_SOLVING):  # the state machine pauses from autonomous
        ex = ctx.store.transition(ex.id, S.AUTONOMOUS, "engine", "the branch moved under the task")
    return finish(ctx, ex, S.PAUSED, MOVED)


def defer(ctx: StepContext, exc: RetryLater) -> str:
    """GitHub asked us to slow down for longer than a worker should sleep: the execution stays runnable,
    keeps its repository, and its next step comes back in line after the wait (jobs.scheduler); the task
    in hand is pending again, which is no failed attempt. A wait GitHub did not name (a secondary limit
    without headers) doubles each time in a row, and after MAX_DEFERRALS the execution blocks."""
    store = ctx.store
    ex = store.get(ctx.execution_id)
    why = describe_error(exc)
    times = store.count_deferral(ex.id)
    if times > MAX_DEFERRALS:
        return finish(ctx, ex, S.BLOCKED, f"GitHub kept asking us to slow down ({times - 1} times in a row; "
                                          f"last: {why}); `/clarity resume` tries again")
    seconds = max(min(exc.seconds * 2 ** (times - 1), MAX_DEFER) if exc.guessed else exc.seconds, 1.0)
    if ex.status in (S.TASK_EXECUTING, S.ERROR_SOLVING):
        ex = store.transition(ex.id, S.AUTONOMOUS, "engine", "GitHub asked us to slow down", current_task=None)
    said = f"GitHub asked us to slow down; resuming in {seconds:.0f} s"
    store.log(ex.id, f"{said} ({why})", "warning")
    log.warning("execution %s: %s (%s)", ex.id, said, why)
    store.audit_event(ex, "execution.deferred", "engine", {**ctx.who, "seconds": seconds, "why": why})
    ctx.after.later = seconds
    return f"deferred: {said}"


def report(ex: Execution, failure: str, call: Callable[[], object]) -> None:
    """Make one report to GitHub; if GitHub fails it, log `failure` with context and go on to the next."""
    try:
        call()
    except GitHubException as exc:
        log.warning("execution %s: %s (%s#%s, %s): %s", ex.id, failure, ex.repo, ex.issue_number, ex.status,
                    describe_error(exc))


def summary(ctx: StepContext, ex: Execution, final: bool = False, tasks: dict[str, TaskProgress] | None = None,
            old_ended: bool = False) -> None:
    """The execution's summary check run, on the branch head this step last saw (jobs.publish)."""
    publish.summary(ctx.eng, ctx.reporter, ex, ctx.head_sha, final, tasks, old_ended)


def refresh_pull(ctx: StepContext, ex: Execution, status: str, draft: bool = True,
                 tasks: dict[str, TaskProgress] | None = None) -> None:
    """The execution's PR body (and draft state), in the repo's PR template if it has one (jobs.publish)."""
    template = ctx.checkout.pr_template if ctx.checkout else None
    publish.refresh_pull(ctx.eng, ctx.reporter, ex, status, template, draft, tasks)
