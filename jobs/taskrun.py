"""One task of a step, run as jobs.planner's `RunTask` says: its tools in turn, its check run, then
either the commit, the push and the record of a pass, or the record and the escalation of a failure.

The order of a pass is the rule here: commit, confirm the lease, report while pushing, record, then the
new summary on the pushed commit (`_passed`). Whatever stops a task half-way leaves no half-done work
in the workspace and no check run spinning (`_abandon`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from githubkit.exception import RequestFailed

from clarity import metrics, numbers, outcomes, tasklist
from clarity.models import Execution, TaskProgress
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from clarity.tasklist import Task
from github_app.annotations import Annotation
from github_app.client import RetryLater, describe_error
from github_app.reporting import RETRY, STOP, Button, Conclusion
from jobs import budgets, endings, gates, heartbeat, publish, reports, sandboxes, toolchain
from jobs.attempts import AttemptPlan, Cancelled, Hook, TaskResult, exchange_of
from jobs.checkout import Blocked, Checkout, TaskFile
from jobs.failures import classify_exception
from jobs.stepcontext import StepContext
from runner import exchange
from runner.routing import Route
from runner.sandbox import Limits, Sandbox
from runner.workspace import GitError, PushRejected

log = logging.getLogger(__name__)
S = ExecutionStatus


class TaskRun:
    """Run one task of the execution and record how it went; `run` says what happened."""

    def __init__(self, ctx: StepContext, hold: heartbeat.Hold, ex: Execution, checkout: Checkout, listed: TaskFile,
                 task: Task, attempts_before: int, meter: budgets.Meter) -> None:
        self.ctx, self.store, self.hold = ctx, ctx.store, hold
        self.ex, self.checkout, self.listed, self.task = ex, checkout, listed, task
        self.before = attempts_before  # the task's attempts in earlier rounds: this step's go on from them
        self.meter = meter
        self.base_sha = ctx.head_sha  # what sync checked out (or the overrides' commit): the agent has not run yet
        self.check_id: int | None = None  # the task's check run, once GitHub has opened it

    def run(self) -> str:
        """Route the task to its tools, run them under the task's check run, and record the result."""
        eng, config, task = self.ctx.eng, self.checkout.config, self.task
        route = toolchain.choose(eng, self.ex, config, task, self.ctx.reporter.gh)  # run > task > rules > default
        command = config.agents.command or config.agent_command or eng.settings.agent_command
        self.ex = self.store.transition(self.ex.id, S.TASK_EXECUTING, "engine", f"task {task.id}",
                                        current_task=task.id)
        # The task's check run is opened while the agent works (a round trip to GitHub off the task's
        # path); it is waited for once the attempts are over, and named in the task's row then.
        opening, = publish.begin(lambda: self._open_check(route))
        self.store.set_task_status(self.ex.id, task.id, TaskStatus.IN_PROGRESS, title=task.title, tool=route.primary,
                                   depends=task.depends, criteria=task.checks)
        plan = self._plan(route.primary, command)
        try:
            return self._attempts(plan, route, command, opening)
        except Exception as exc:
            self._abandon(exc, opening)
            raise
        finally:
            exchange.remove(exchange_of(plan))  # what the runs left there is theirs: the artifacts have the rest

    def _open_check(self, route: Route) -> int:
        ex, task = self.ex, self.task
        self.store.record_check(ex.id, task.id, sha=self.base_sha)  # where to look if no answer is heard
        opened = self.ctx.reporter.start_check(self.base_sha, reports.check_name(task), self.ctx.dashboard_url(),
                                               f"{ex.id}:{task.id}", f"Running task {task.id} with "
                                               f"{route.describe()}.", actions=(STOP,))
        self.store.record_check(ex.id, task.id, opened)  # a worker lost from here on leaves no run spinning
        return opened

    def _plan(self, agent: str, command: str) -> AttemptPlan:
        """The attempts' plan: the agent, the checks (the task's, then the repo's gates), limits and folders."""
        settings, config, ex, task = self.ctx.eng.settings, self.checkout.config, self.ex, self.task
        # Attempts count on across rounds (a retry, a replay, a recovered step): never an artifacts folder twice.
        return AttemptPlan(
            task=task, agent=agent, agent_options={"command": command} if command else {},
            checks=task.checks + config.gates, workdir=self.checkout.workdir,
            artifacts=settings.artifacts_dir / ex.id / task.id, repo=ex.repo, branch=ex.branch,
            limits=Limits(timeout=task.timeout_seconds() or config.timeout or settings.task_timeout),
            retries=config.retries if config.retries is not None else settings.retries,
            backoff=settings.retry_backoff, diff=self.checkout.ws.diff,
            max_artifact_bytes=settings.artifact_max_bytes,
            allow=gates.allowlist(settings, config), check_timeout=config.check_timeout, meter=self.meter,
            first_attempt=self.before + 1,
            exchange=settings.exchange_dir / ex.id / task.id)

    def _attempts(self, plan: AttemptPlan, route: Route, command: str, opening: Future[object]) -> str:
        eng, config, ex, task = self.ctx.eng, self.checkout.config, self.ex, self.task
        # Agents and checks see their workspace, its git read-only and this task's exchange folder, never
        # the rest of the data dir (other customers' workspaces, any artifacts, the worker's git
        # directories): hidden under bubblewrap, absent under docker.
        sandbox = sandboxes.for_task(eng.settings, config, exchange_of(plan), ex.id, task.id, plan.workdir)
        self._before_task(sandbox, plan)
        self.store.log(ex.id, f"task {task.id}: {route.describe()}", task=task.id)
        chain = toolchain.run_chain(
            plan, route, sandbox, self.ctx.cancel, attempt_hook(self.store, ex, task.id, self.before),
            toolchain.Edges(say=lambda line: self.store.log(ex.id, f"task {task.id}: {line}", task=task.id),
                            discard=self.checkout.ws.discard, record=toolchain.stats_store(eng).record_for(ex.repo)),
            lambda tool: toolchain.options_for(tool, config.agents, command), toolchain.agent_keys(eng, ex))
        result, agent = chain.result, chain.tool
        self.check_id = _opened_or_none(opening)  # None: created, completed, once the task is over (_check)
        if len(chain.tries) > 1 or chain.skipped:
            self.store.log(ex.id, f"task {task.id}: tools: {chain.summary()}", task=task.id)
        self.store.put_task(ex.id, dataclasses.replace(self.store.task(ex.id, task.id), tool=agent,
                                                       check_run_id=self.check_id))
        metrics.task_finished(agent, result.passed, result.duration, result.attempts)
        if not result.passed:
            return self._failed(result)
        return self._passed(result, agent)

    def _before_task(self, sandbox: Sandbox, plan: AttemptPlan) -> None:
        """Block before any attempt when the allowlist refuses a check or `setup:` fails (jobs.gates)."""
        ex, task = self.ex, self.task
        failed = gates.before_task(self.checkout.config.setup, sandbox, plan.workdir, plan.checks, plan.limits,
                                   plan.allow, lambda line: self.store.log(ex.id, f"task {task.id}: {line}",
                                                                           task=task.id))
        if failed:
            raise Blocked(f"task {task.id}: {failed}")

    def _abandon(self, exc: Exception, opening: Future[object]) -> None:
        """Whatever stopped the task, leave no half-done work and no check run spinning forever."""
        ex, task = self.ex, self.task
        self.checkout.ws.discard()
        cancelled, paused = isinstance(exc, Cancelled), isinstance(exc, (budgets.Exhausted, PushRejected))
        if self.check_id is None:
            self.check_id = _opened_or_none(opening)  # None when GitHub refused to open it
        done = self.store.task(ex.id, task.id).status is TaskStatus.COMPLETED  # its PR or summary failed
        with contextlib.suppress(RequestFailed):
            # Nothing is written while GitHub asks us to slow down: the next step takes the task up again.
            if self.check_id is not None and not done and not isinstance(exc, RetryLater):
                self.ctx.reporter.finish_check(self.check_id, "cancelled" if cancelled else "neutral" if paused else
                                               "failure", reports.check_name(task), "Stopped before the task "
                                               "finished." if cancelled else f"Paused: {exc}." if paused else str(exc))
        if not self.hold.lost.is_set() and self.store.task(ex.id, task.id).status is not TaskStatus.COMPLETED:
            infra = classify_exception(exc)  # isolation, git, disk: recorded as `infra` on the task
            self.store.set_task_status(ex.id, task.id, TaskStatus.PENDING,
                                       **({"error_class": str(infra), "last_error": str(exc)[-2000:]}
                                          if infra else {}))

    def _artifacts_url(self) -> str:
        """The dashboard page listing this task's artifacts (prompts, logs, diffs, checks, timings)."""
        return f"{self.ctx.dashboard_url()}/artifacts/{self.task.id}"

    # -- a pass ---------------------------------------------------------------------------------
    def _passed(self, result: TaskResult, agent: str) -> str:
        sha, stat = self._commit(result, agent)
        self.hold.confirm()  # a step that lost its lease never pushes (raises heartbeat.LeaseLost)
        # Report before recording: a worker lost in between leaves the task open in the table, and the
        # next step finds it ticked on the branch (checkout.follow_git), so the check run never stays open.
        # The task's check run, the PR body and the old summary's end need nothing of the commit on
        # GitHub: they travel while it does, from the table about to be recorded. A push that fails
        # tells GitHub again (the check run fails in _abandon, endings.finish refreshes the PR and concludes
        # the summary on the commit it stayed on); the new summary needs the commit there: after it.
        done, table, after = self._foretold(result, sha)
        pulled = self._push_reporting(result, agent, sha, stat, table, after)
        self._record(result, sha, done, table, after, pulled)
        self.ctx.after.again = True
        return f"task {self.task.id} completed"

    def _commit(self, result: TaskResult, agent: str) -> tuple[str, Callable[[], str]]:
        """Tick the task, append its outcome, commit: the sha the branch will have, and its diff stat (late)."""
        ws, config, ex, task, before = self.checkout.ws, self.checkout.config, self.ex, self.task, self.before
        ws.write(config.tasks_file, tasklist.tick(self.listed.text, [task.id]).encode("utf-8"))
        url = self._artifacts_url()
        outcome = reports.outcome(ex, task, agent, result, self.base_sha, before, url)
        ws.write(config.outcomes_file, outcomes.append(ws.read(config.outcomes_file), outcome))
        committed = ws.commit(reports.commit_message(task, agent, result, before, url))
        sha = committed or self.base_sha

        def stat() -> str:  # for the check run's text: git works it out beside the push
            try:
                return ws.stat(sha) if committed else ""
            except GitError:
                return ""
        return sha, stat

    def _foretold(self, result: TaskResult, sha: str) -> tuple[TaskProgress, dict[str, TaskProgress], Execution]:
        """The task's row as it will be recorded, the table with it, and the execution as it will then be."""
        ex, task = self.ex, self.task
        table = self.store.tasks(ex.id)
        done = dataclasses.replace(table.get(task.id) or TaskProgress(task_id=task.id), status=TaskStatus.COMPLETED,
                                   commit=sha, duration=result.duration, attempts=self.before + result.attempts,
                                   last_error="", error_class="",
                                   checks=tuple(reports.check_json(r) for r in result.checks))
        table[task.id] = done
        # What the summary and the PR say before the store records it: the same count the store will make.
        after = numbers.stamp(dataclasses.replace(ex, status=S.AUTONOMOUS, current_task=None),
                              numbers.count(table, self.store.scope(ex.id)))
        return done, table, after

    def _pull(self, after: Execution, table: dict[str, TaskProgress]) -> Callable[[], None]:
        def pull() -> None:
            endings.refresh_pull(self.ctx, after, "running", tasks=table)
        return pull

    def _push_reporting(self, result: TaskResult, agent: str, sha: str, stat: Callable[[], str],
                        table: dict[str, TaskProgress], after: Execution) -> BaseException | None:
        """Push while the check run's success, the old summary's end and the PR body travel; what the PR's
        refresh raised, to raise once the task is recorded."""
        ex, task, before = self.ex, self.task, self.before
        # A PR is opened on the branch once it is on GitHub (the first push makes it), then refreshed.
        early = publish.begin(
            lambda: self._check("success", f"Task {task.id} done in {reports.attempts_said(result.attempts, before)}",
                                reports.task_summary(task, agent, result, sha, before),
                                reports.task_text(result, stat(), self._artifacts_url())),
            lambda: publish.end_summary(self.ctx.reporter, ex, sha),
            self._pull(after, table) if ex.pr_number else _nothing)
        try:
            self.checkout.ws.push(ex.branch)
        finally:
            checked, _, pulled = publish.wait(early)  # before anything reports the push's failure
        self.ctx.head_sha = sha
        if self.ctx.warm is not None:
            self.ctx.warm.pushed = (ex.branch, sha)  # the next step of this job starts from here, unfetched
        if checked is not None:
            raise checked  # before recording, as if it had failed alone
        return pulled

    def _record(self, result: TaskResult, sha: str, done: TaskProgress, table: dict[str, TaskProgress],
                after: Execution, pulled: BaseException | None) -> None:
        """Record the pass while the new summary (and the PR, on the first task) travels."""
        task = self.task
        moved = publish.begin(lambda: endings.summary(self.ctx, after, tasks=table, old_ended=True),
                              _nothing if self.ex.pr_number else self._pull(after, table))
        # The table and the counter in one transaction: a worker lost between two writes would leave
        # the task completed and uncounted, and nothing later could tell.
        ex = self.store.settle_tasks(self.ex.id, [done], new=S.AUTONOMOUS, reason=f"task {task.id} completed",
                                     current_task=None)
        self.store.record_duration(ex.repo, result.duration)
        self.store.log(ex.id, f"task {task.id}: done in {result.attempts} attempt(s), commit {sha[:10]}",
                       task=task.id)
        summarized, opened = publish.wait(moved)  # summary() logs GitHub's refusals itself: this is anything else
        pulled = pulled or opened
        if summarized is not None:
            log.warning("execution %s: summary not moved to %s", ex.id, sha[:10], exc_info=summarized)
        if pulled is not None:
            raise pulled  # after recording: the task is done, the PR could not be refreshed

    # -- a failure ------------------------------------------------------------------------------
    def _failed(self, result: TaskResult) -> str:
        ex, task, config, before = self.ex, self.task, self.checkout.config, self.before
        self.checkout.ws.discard()  # the broken attempt is never committed
        self.store.set_task_status(ex.id, task.id, TaskStatus.FAILED, attempts=before + result.attempts,
                                   duration=result.duration, last_error=result.last_error[-2000:],
                                   error_class=result.error_class)
        self._check("failure", f"Task {task.id} failed after {reports.attempts_said(result.attempts, before)}",
                    reports.failure_summary(task, result, task.checks + config.gates, before),
                    reports.task_text(result, "", self._artifacts_url()),
                    reports.annotations_for(result, str(self.checkout.ws.root)), actions=(RETRY, STOP))
        self.store.update(ex.id, current_task=None)
        if config.on_failure == "continue":
            self.store.transition(ex.id, S.AUTONOMOUS, "engine", f"task {task.id} failed; continuing")
            self.ctx.after.again = True
            return f"task {task.id} failed; continuing"
        self.ctx.reporter.comment(ex.issue_number, reports.escalation(ex, task, result, self.ctx.dashboard_url(),
                                                                      before))
        return endings.finish(self.ctx, self.store.get(ex.id), S.BLOCKED,
                              f"task {task.id} failed after {result.attempts} attempts", notify=False)

    def _check(self, conclusion: Conclusion, title: str, summary: str, text: str = "",
               annotations: Sequence[Annotation] = (), actions: tuple[Button, ...] = ()) -> None:
        """Complete the task's check run; one GitHub would not open while the agent worked is created now,
        completed (the agent's work is never thrown away for want of a check run)."""
        ex, task = self.ex, self.task
        if self.check_id is not None:
            self.ctx.reporter.finish_check(self.check_id, conclusion, title, summary, text, annotations, actions)
            return
        opened = self.ctx.reporter.completed_check(self.base_sha, reports.check_name(task), self.ctx.dashboard_url(),
                                                   f"{ex.id}:{task.id}", conclusion, title, summary, text,
                                                   annotations, actions)
        self.store.record_check(ex.id, task.id, opened)
        self.store.log(ex.id, f"task {task.id}: its check run, not opened when the task began, created completed",
                       task=task.id)


def attempt_hook(store: Store, ex: Execution, task_id: str, before: int = 0) -> Hook:
    """What the task table records as the attempts at a task go (the execution's attempts and errors are its sums)."""
    def on(event: str, attempt: int, detail: str) -> None:
        if event == "attempt":
            row = store.task(ex.id, task_id)
            store.put_task(ex.id, dataclasses.replace(row, status=TaskStatus.IN_PROGRESS, attempts=before + attempt,
                                                      attempts_made=row.attempts_made + 1))
            if attempt > 1:
                store.transition(ex.id, S.TASK_EXECUTING, "engine", f"task {task_id} attempt {attempt}")
            store.log(ex.id, f"task {task_id}: attempt {before + attempt} started", task=task_id)
        elif event == "verifying":
            store.set_task_status(ex.id, task_id, TaskStatus.VERIFYING)
            store.log(ex.id, f"task {task_id}: agent done, running checks", task=task_id)
        elif event == "failed":
            store.log(ex.id, f"task {task_id}: attempt {before + attempt} failed\n{detail}", "warning", task_id)
            row = store.task(ex.id, task_id)
            store.put_task(ex.id, dataclasses.replace(row, status=TaskStatus.ERROR_SOLVING, last_error=detail[-2000:],
                                                      attempts_failed=row.attempts_failed + 1))
            store.transition(ex.id, S.ERROR_SOLVING, "engine", f"task {task_id} attempt {attempt} failed")
    return on


def _nothing() -> None:
    return None


def _opened(opening: Future[object]) -> int:
    """The id of the check run `_open_check` opened, once it has; what GitHub answered otherwise, raised."""
    opened = opening.result()
    assert isinstance(opened, int)
    return opened


def _opened_or_none(opening: Future[object]) -> int | None:
    """`_opened`, or None when it could not be opened (on the way out of a failed task: its error wins)."""
    try:
        return _opened(opening)
    except Exception as exc:  # noqa: BLE001 - the task's own error is the one to report
        log.warning("the task's check run was not opened: %s", describe_error(exc))
        return None
