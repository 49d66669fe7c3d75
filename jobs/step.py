"""The step job: ONE task of one execution, then re-enqueue (DESIGN §1).

Git is the truth for progress: every step re-reads `tasks_list.md` from the branch, so a replayed
step never repeats a pushed task. A slot job whose execution has more to do takes the next step
itself when nobody else waits for a worker (jobs.chaining).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

from githubkit.exception import GitHubException, RequestFailed
from rq import get_current_job

from clarity import logcontext, metrics, numbers, outcomes, repoconfig, tasklist
from clarity.actors import shown
from clarity.flags import Flag
from clarity.models import Execution, TaskProgress
from clarity.repoconfig import RepoConfig
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Brief, Store
from clarity.tasklist import Task, TaskList, TaskListError
from github_app.annotations import Annotation
from github_app.client import RetryLater, describe_error
from github_app.reporting import RETRY, STOP, Button, Conclusion, Reporter
from jobs import (
    budgets,
    chaining,
    gates,
    heartbeat,
    overrides,
    publish,
    reports,
    sandboxes,
    scheduler,
    toolchain,
)
from jobs.attempts import AttemptPlan, Cancelled, Hook, TaskResult, exchange_of
from jobs.context import Engine
from jobs.context import engine as default_engine
from jobs.failures import classify_exception
from runner import exchange
from runner.agents import AgentError
from runner.sandbox import IsolationError, Limits, Sandbox
from runner.workspace import GitError, PushRefused, PushRejected, Workspace

log = logging.getLogger(__name__)
S = ExecutionStatus
RUNNABLE = (S.INITIALIZING, S.AUTONOMOUS)
OPEN_TASK = (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING)
SUBJECT_SCAN = 500  # commits of the branch searched for a task's commit
MAX_DEFERRALS = 8  # GitHub asking us to slow down this often in a row blocks the execution (a person looks)
MAX_DEFER = 900.0  # seconds: the longest a wait GitHub did not name grows to (the wait it names is kept)
MOVED = ("the branch moved on GitHub while the task ran (someone else pushed to it): paused so the two don't "
         "collide; `/clarity resume` goes on from their commits")


class Blocked(Exception):
    """The execution cannot go on without a human; the message says why."""


def run_slot() -> str:
    """RQ job entry point: step the execution that is next in line now (jobs.scheduler), and its
    following steps while nobody else waits and the job has time (jobs.chaining)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_slot runs as an RQ job")
    eng = default_engine()
    execution_id = eng.store.ready.take(job.id)
    if execution_id is None:
        return "nobody was ready"
    budget = chaining.Budget(job.timeout, chaining.step_worst_case(eng.settings))

    def keep(ex: Brief) -> bool:
        return budget.allows() and eng.store.ready.keep(job.id, ex.id, ex.installation_id)

    outcomes: list[str] = []
    try:
        with contextlib.ExitStack() as http:
            warm = chaining.Warm(http)
            while True:
                step = Step(eng, execution_id, {"job": job.id, "worker": job.worker_name or ""}, warm=warm, keep=keep)
                outcomes.append(step.run())
                if not step.kept:
                    break
    finally:
        eng.store.ready.done(job.id)
    more = f" ({len(outcomes) - 1} step(s) before it in this job)" if len(outcomes) > 1 else ""
    return f"{execution_id}: {outcomes[-1]}{more}"


class Step:
    """One step of one execution."""

    def __init__(self, engine: Engine, execution_id: str, who: dict[str, str] | None = None,
                 warm: chaining.Warm | None = None, keep: Callable[[Brief], bool] | None = None) -> None:
        self.eng = engine
        self.store = engine.store
        self.id = execution_id
        self.who = who or {}  # the RQ job and worker running this step, for the audit stream
        self.warm = warm  # what the previous step of this job left: REST clients, workspace, last push
        self.keep = keep  # may this job take the execution's next step itself? (jobs.chaining)
        self.kept = False  # it did: the next step runs in this job, no slot was queued
        self.cancel = threading.Event()
        # Both happen once the step has ended, so no two steps of one repository ever overlap:
        self.again = False  # the execution has more to do: make it ready again
        self.release: Execution | None = None  # the execution ended: free its repository for the next
        self.notify: tuple[str, ...] = ()  # `.github/clarity.yml` notify:, once read from the branch
        self.pr_template: str | None = None  # `.github/clarity_pr_template.md`, if the repo has one
        self.head_sha = ""  # the branch head as this step last saw it: the summary check lives there
        self.later: float | None = None  # GitHub asked us to slow down: the next step in this many seconds
        self.attempts_before = 0  # the task's attempts in earlier rounds: this step's go on from them

    # -- the step -------------------------------------------------------------------------------
    def run(self) -> str:
        """Do the next task (or finish the execution) and say what happened."""
        with logcontext.bind(execution_id=self.id):
            # Step boundaries go to the audit stream: who worked on what, when.
            self.store.audit_event(self.store.brief(self.id), "step.started", "engine", self.who)
            outcome = "crashed"
            self.clock = budgets.Clock(self.store, self.id)  # the time budget counts steps' durations
            try:
                # The step's REST client, entered in _run: one connection pool for all its calls, where
                # githubkit would otherwise build a client and open a connection (TLS) for every call.
                # A chain of steps in one job shares its clients (the job's ExitStack closes them).
                with (contextlib.nullcontext(self.warm.http) if self.warm else contextlib.ExitStack()) as self.http:
                    outcome = self._run()
                return outcome
            finally:
                self.clock.charge()
                ended = self.store.brief(self.id)
                self.store.audit_event(ended, "step.finished", "engine", {**self.who, "outcome": outcome})
                if self.release is not None:
                    scheduler.release(self.eng, self.release)
                if self.later is not None:
                    scheduler.enqueue_step_later(self.eng, self.id, self.later)
                elif outcome != "crashed":
                    self.store.reset_deferrals(self.id)
                if self.again:
                    self.kept = self.keep is not None and self.keep(ended)
                    if not self.kept:
                        scheduler.enqueue_step(self.eng, self.id)

    def _run(self) -> str:
        ex = self.store.get(self.id)
        if ex.status not in RUNNABLE:
            return f"nothing to do: execution is {ex.status}"
        if not self.store.acquire_lease(ex.repo, ex.id, self.eng.settings.lease_ttl):
            scheduler.submit(self.eng, self.store.transition(ex.id, S.QUEUED, "engine", "lease lost"), "engine")
            return "repository busy: back in line"
        # Before the stop check: finishing (stopped) reports through it too.
        self.reporter = Reporter(self._client(ex.installation_id), ex.repo,
                                 sandboxes.UNSANDBOXED if self.eng.settings.sandbox == "none" else "")
        if self.store.flag(ex.id, Flag.STOP):
            return self._finish(ex, S.STOPPED, f"stopped by {shown(self.store.flag(ex.id, Flag.STOP) or '')}")
        try:
            with self._heartbeat(ex) as self.hold:
                return self._advance(ex)
        except heartbeat.LeaseLost as exc:  # another step has the execution now: leave it, unchanged, to it
            self.release, self.again = None, False
            return f"abandoned: {exc}"
        except budgets.Exhausted as exc:  # checked before every attempt; the time budget also kills one
            return self._finish(budgets.settle(self.store, self.store.get(self.id)), S.PAUSED,
                                budgets.pause_reason(str(exc)))
        except Cancelled:
            return self._finish(self.store.get(self.id), S.STOPPED,
                                f"stopped by {shown(self.store.flag(self.id, Flag.STOP) or '')}")
        except (Blocked, TaskListError, repoconfig.ConfigError, AgentError, IsolationError) as exc:
            return self._finish(self.store.get(self.id), S.BLOCKED, str(exc))
        except PushRejected:  # never forced: their work stays, ours waits for a person
            ex = self.store.get(self.id)
            if ex.status in (S.TASK_EXECUTING, S.ERROR_SOLVING):  # the state machine pauses from autonomous
                ex = self.store.transition(ex.id, S.AUTONOMOUS, "engine", "the branch moved under the task")
            return self._finish(ex, S.PAUSED, MOVED)
        except PushRefused as exc:  # GitHub's own rule (workflows, file size, rulesets): a person must act
            log.warning("execution %s: push refused: %s", self.id, exc.reason)
            return self._finish(self.store.get(self.id), S.BLOCKED, str(exc))
        except RetryLater as exc:  # before RequestFailed: it is one
            return self._defer(exc)
        except (GitError, RequestFailed, OSError) as exc:
            reason = describe_error(exc)
            log.exception("execution %s: step failed: %s", self.id, reason)
            return self._finish(self.store.get(self.id), S.BLOCKED, f"the engine hit an error: {reason}")
        except Exception as exc:
            # A bug: free the repository and tell people, then let RQ keep the traceback.
            log.exception("execution %s: unexpected error in step", self.id)
            self._finish(self.store.get(self.id), S.BLOCKED, f"internal error ({type(exc).__name__}); see the logs")
            raise

    def _client(self, installation_id: int):  # type: ignore[no-untyped-def]  # githubkit's GitHub[...]
        """The REST client of the installation: the job's, kept across its steps, or this step's own."""
        if self.warm is None:
            return self.http.enter_context(self.eng.github.client(installation_id))
        if installation_id not in self.warm.clients:
            self.warm.clients[installation_id] = self.http.enter_context(self.eng.github.client(installation_id))
        return self.warm.clients[installation_id]

    def _workspace(self, ex: Execution) -> tuple[Workspace, Path]:
        """The repository's workspace on the branch: as this job's last step left it, after its push, or
        synced with the remote (fetch) as any step that starts a job does."""
        root = self.eng.settings.workspaces_dir / ex.repo
        warm, pushed = self.warm, self.warm.pushed if self.warm else None
        if warm is not None:
            warm.pushed = None  # a step that fails before its own push leaves nothing to resume from
            if warm.workspace is not None and warm.workspace.root == root and pushed and pushed[0] == ex.branch:
                return warm.workspace, warm.workspace.resume(ex.branch, pushed[1])
        author = self.eng.identity.author(ex.installation_id)  # the app's bot, as GitHub links commits to it
        ws = Workspace(root, self.eng.github.clone_url(ex.installation_id, ex.repo),
                       lambda: self.eng.github.installation_token(ex.installation_id), author_name=author.name,
                       author_email=author.email, on_push=lambda sha: self.eng.pushed.record(ex.repo, sha))
        if warm is not None:
            warm.workspace = ws
        return ws, ws.sync(ex.branch, ex.base_branch)

    def _advance(self, ex: Execution) -> str:
        ws, workdir = self._workspace(ex)
        self.head_sha = ws.synced_sha
        config = repoconfig.parse(ws.read(repoconfig.CONFIG_PATH))
        self.notify = config.notify
        self.config, self.workdir = config, workdir  # for the post_execution gates of _conclude
        template = ws.read(outcomes.PR_TEMPLATE_PATH)
        self.pr_template = template.decode("utf-8", "replace") if template else None
        raw = ws.read(config.tasks_file)
        if raw is None:
            raise Blocked(f"`{config.tasks_file}` does not exist on branch `{ex.branch}`")
        text = raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
        tasks = tasklist.parse(text, config.tasks_file)
        scope = ex.only or ex.stop_point
        if scope:
            tasks.get(scope)  # unknown stop point → TaskListError naming it
        ex = self._follow_git(ex, ws, tasks)
        ticked = overrides.tick_overridden(self.store, ws, ex, (config.tasks_file, config.outcomes_file), text, tasks,
                                           self.eng.dashboard_url(ex.id))
        if ticked is not None:  # people's overrides: outcomes committed (done ones ticked), the agent never runs
            text, tasks, self.head_sha = ticked, tasklist.parse(ticked, config.tasks_file), ws.head_sha()
        ex = track_scope(self.store, ex, tasks)  # every step: the numbers count what the list says now
        if ex.status is S.INITIALIZING:
            blocked = self._run_gates(ex, "pre", config.pre_gates)
            if blocked:
                raise Blocked(blocked)
            ex = self._initialize(ex, tasks)
        task = self._next(ex, tasks)
        if task is None:
            return self._conclude(ex, tasks)
        self.meter = budgets.Meter(self.store, ex, budgets.effective(config, ex), self.clock.started)
        self.meter.check()
        with logcontext.bind(task_id=task.id):
            return self._do_task(ex, ws, workdir, config, text, task)

    def _initialize(self, ex: Execution, tasks: TaskList) -> Execution:
        self.store.clear_flag(ex.id, Flag.STOP_POINT_REACHED)
        order = numbers.scope(tasks, ex.stop_point, ex.only)
        self.store.log(ex.id, f"{len(order)} task(s) to run: {' → '.join(order) or 'none'}")
        ex = self.store.transition(ex.id, S.AUTONOMOUS, "engine", "initialized", started_at=ex.started_at or time.time())
        self._summary(ex)
        return ex

    def _follow_git(self, ex: Execution, ws: Workspace, tasks: TaskList) -> Execution:
        """Record as completed, once, each task the branch shows ticked that the table still shows open.

        A worker lost between `git push` and the store update leaves exactly that. Git is the truth:
        the ticked box keeps the task from running (and being committed) again, and this keeps the
        table and `tasks_completed` in step with it.
        """
        ticked = {t.id for t in tasks.leaves() if t.done}
        found = [p for p in self.store.tasks(ex.id).values() if p.task_id in ticked and p.status in OPEN_TASK]
        if not found:
            return ex
        writes, shas = [], {}
        for progress in found:
            if progress.status in (TaskStatus.IN_PROGRESS, TaskStatus.ERROR_SOLVING):
                writes.append(dataclasses.replace(progress, status=TaskStatus.PENDING))
            shas[progress.task_id] = sha = _commit_of(ws, progress.task_id)
            writes.append(dataclasses.replace(progress, status=TaskStatus.COMPLETED, commit=sha, last_error=""))
            if progress.check_run_id is not None:
                with contextlib.suppress(RequestFailed):
                    self.reporter.finish_check(progress.check_run_id, "success", f"Task {progress.task_id} done",
                                               f"Found done on `{ex.branch}`: the step that ran it ended before "
                                               "recording it (its worker lost, or GitHub asked us to slow down).")
        ex = self.store.settle_tasks(ex.id, writes, current_task=None)  # table and counter together
        for task_id, sha in shas.items():
            self.store.log(ex.id, f"task {task_id}: found done on `{ex.branch}`"
                                  f"{f' (commit {sha[:10]})' if sha else ''}; recorded as completed", task=task_id)
        return ex

    def _unavailable(self, ex: Execution) -> frozenset[str]:
        return frozenset(t.task_id for t in self.store.tasks(ex.id).values()
                         if t.status in (TaskStatus.FAILED, TaskStatus.SKIPPED))

    def _next(self, ex: Execution, tasks: TaskList) -> Task | None:
        if self.store.flag(ex.id, Flag.PAUSE):
            return None
        unavailable = self._unavailable(ex)
        if not ex.only:
            return tasks.next_task(ex.stop_point, unavailable)
        for task in tasks.leaves(under=ex.only):
            if not task.done and task.id not in unavailable and all(tasks.is_done(d) for d in task.depends):
                return task
        return None

    def _conclude(self, ex: Execution, tasks: TaskList) -> str:
        """Nothing eligible: paused at the stop point, completed, or blocked behind a failure."""
        pause_by = self.store.flag(ex.id, Flag.PAUSE)
        if pause_by:
            self.store.clear_flag(ex.id, Flag.PAUSE)
            return self._finish(ex, S.PAUSED, f"paused by {shown(pause_by)}")
        scope = ex.only or ex.stop_point
        waived = overrides.waived(self.store.tasks(ex.id))  # skipped by a person: settled, never ticked
        open_in_scope = [t.id for t in (tasks.leaves(under=ex.only) if ex.only else
                                        [tasks.get(i) for i in tasks.run_order(ex.stop_point)])
                         if not t.done and t.id not in waived]
        if not open_in_scope:
            blocked = self._run_gates(ex, "post_execution", self.config.post_execution_gates)
            if blocked:
                return self._finish(ex, S.BLOCKED, blocked)
            if not tasks.leaves() or all(t.done or t.id in waived for t in tasks.leaves()):
                return self._finish(ex, S.COMPLETED, "every task in the list is done"
                                    + (f" or skipped by a person ({', '.join(sorted(waived))})" if waived else ""))
            self.store.set_flag(ex.id, Flag.STOP_POINT_REACHED, "engine")
            return self._finish(ex, S.PAUSED, f"stop point {scope} reached")
        failed = self._unavailable(ex)
        waiting = ", ".join(open_in_scope[:5])
        return self._finish(ex, S.BLOCKED, f"tasks {waiting} cannot run: they depend on "
                                           f"failed or unfinished tasks ({', '.join(sorted(failed)) or 'none'})")

    # -- one task -------------------------------------------------------------------------------
    def _do_task(self, ex: Execution, ws: Workspace, workdir: Path, config: RepoConfig, text: str,
                 task: Task) -> str:
        settings = self.eng.settings
        route = toolchain.choose(self.eng, ex, config, task, self.reporter.gh)  # run > task > rules > default
        agent = route.primary
        command = config.agents.command or config.agent_command or settings.agent_command
        base_sha = self.head_sha  # what sync checked out (or the overrides' commit): the agent has not run yet
        ex = self.store.transition(ex.id, S.TASK_EXECUTING, "engine", f"task {task.id}", current_task=task.id)

        def open_check() -> int:
            self.store.record_check(ex.id, task.id, sha=base_sha)  # where to look if no answer is heard
            opened = self.reporter.start_check(base_sha, reports.check_name(task), self.eng.dashboard_url(ex.id),
                                               f"{ex.id}:{task.id}", f"Running task {task.id} with "
                                               f"{route.describe()}.", actions=(STOP,))
            self.store.record_check(ex.id, task.id, opened)  # a worker lost from here on leaves no run spinning
            return opened

        # The task's check run is opened while the agent works (a round trip to GitHub off the task's
        # path); it is waited for once the attempts are over, and named in the task's row then.
        opening, = publish.begin(open_check)
        check_id: int | None = None
        # Attempts count on across rounds (a retry, a replay, a recovered step): never an artifacts folder twice.
        self.attempts_before = self.store.task(ex.id, task.id).attempts
        self.store.set_task_status(ex.id, task.id, TaskStatus.IN_PROGRESS, title=task.title, tool=agent,
                                   depends=task.depends, criteria=task.checks)
        plan = AttemptPlan(
            task=task, agent=agent, agent_options={"command": command} if command else {},
            checks=task.checks + config.gates, workdir=workdir,
            artifacts=settings.artifacts_dir / ex.id / task.id, repo=ex.repo, branch=ex.branch,
            limits=Limits(timeout=task.timeout_seconds() or config.timeout or settings.task_timeout),
            retries=config.retries if config.retries is not None else settings.retries,
            backoff=settings.retry_backoff, diff=ws.diff, max_artifact_bytes=settings.artifact_max_bytes,
            allow=gates.allowlist(settings, config), check_timeout=config.check_timeout, meter=self.meter,
            first_attempt=self.attempts_before + 1,
            exchange=settings.exchange_dir / ex.id / task.id)
        try:
            # Agents and checks see their workspace, its git read-only and this task's exchange folder, never
            # the rest of the data dir (other customers' workspaces, any artifacts, the worker's git
            # directories): hidden under bubblewrap, absent under docker.
            sandbox = sandboxes.for_task(settings, config, exchange_of(plan), ex.id, task.id, workdir)
            self._before_task(ex, task, config, sandbox, plan)
            self.store.log(ex.id, f"task {task.id}: {route.describe()}", task=task.id)
            chain = toolchain.run_chain(
                plan, route, sandbox, self.cancel, self._hook(ex, task),
                toolchain.Edges(say=lambda line: self.store.log(ex.id, f"task {task.id}: {line}", task=task.id),
                                discard=ws.discard, record=toolchain.stats_store(self.eng).record_for(ex.repo)),
                lambda tool: toolchain.options_for(tool, config.agents, command), toolchain.agent_keys(self.eng, ex))
            result, agent = chain.result, chain.tool
            check_id = _opened_or_none(opening)  # None: created, completed, once the task is over (_task_check)
            if len(chain.tries) > 1 or chain.skipped:
                self.store.log(ex.id, f"task {task.id}: tools: {chain.summary()}", task=task.id)
            self.store.put_task(ex.id, dataclasses.replace(self.store.task(ex.id, task.id), tool=agent,
                                                           check_run_id=check_id))
            metrics.task_finished(agent, result.passed, result.duration, result.attempts)
            if not result.passed:
                return self._task_failed(ex, ws, config, task, check_id, result, base_sha)
            return self._task_passed(ex, ws, config, text, task, check_id, result, agent, base_sha)
        except Exception as exc:
            # Whatever stopped the task, leave no half-done work and no check run spinning forever.
            ws.discard()
            cancelled, paused = isinstance(exc, Cancelled), isinstance(exc, (budgets.Exhausted, PushRejected))
            if check_id is None:
                check_id = _opened_or_none(opening)  # None when GitHub refused to open it
            done = self.store.task(ex.id, task.id).status is TaskStatus.COMPLETED  # its PR or summary failed
            with contextlib.suppress(RequestFailed):
                # Nothing is written while GitHub asks us to slow down: the next step takes the task up again.
                if check_id is not None and not done and not isinstance(exc, RetryLater):
                    self.reporter.finish_check(check_id, "cancelled" if cancelled else "neutral" if paused else
                                               "failure", reports.check_name(task), "Stopped before the task "
                                               "finished." if cancelled else f"Paused: {exc}." if paused else str(exc))
            if not self.hold.lost.is_set() and self.store.task(ex.id, task.id).status is not TaskStatus.COMPLETED:
                infra = classify_exception(exc)  # isolation, git, disk: recorded as `infra` on the task
                self.store.set_task_status(ex.id, task.id, TaskStatus.PENDING,
                                           **({"error_class": str(infra), "last_error": str(exc)[-2000:]}
                                              if infra else {}))
            raise
        finally:
            exchange.remove(exchange_of(plan))  # what the runs left there is theirs: the artifacts have the rest

    def _artifacts_url(self, ex: Execution, task: Task) -> str:
        """The dashboard page listing this task's artifacts (prompts, logs, diffs, checks, timings)."""
        return f"{self.eng.dashboard_url(ex.id)}/artifacts/{task.id}"

    def _before_task(self, ex: Execution, task: Task, config: RepoConfig, sandbox: Sandbox,
                     plan: AttemptPlan) -> None:
        """Block before any attempt when the allowlist refuses a check or `setup:` fails (jobs.gates)."""
        failed = gates.before_task(config.setup, sandbox, plan.workdir, plan.checks, plan.limits, plan.allow,
                                   lambda line: self.store.log(ex.id, f"task {task.id}: {line}", task=task.id))
        if failed:
            raise Blocked(f"task {task.id}: {failed}")

    def _run_gates(self, ex: Execution, phase: str, specs: tuple[str, ...]) -> str | None:
        """A `pre` or `post_execution` gate phase (jobs.gates): the blocking reason, or None."""
        return gates.run_phase(self.eng.settings, self.config, ex.id, phase, specs, self.workdir,
                               lambda line, level: self.store.log(ex.id, line, level)) if specs else None

    def _hook(self, ex: Execution, task: Task) -> Hook:
        return attempt_hook(self.store, ex, task.id, self.attempts_before)

    def _task_passed(self, ex: Execution, ws: Workspace, config: RepoConfig, text: str, task: Task,
                     check_id: int | None, result: TaskResult, agent: str, base_sha: str) -> str:
        ws.write(config.tasks_file, tasklist.tick(text, [task.id]).encode("utf-8"))
        before, url = self.attempts_before, self._artifacts_url(ex, task)
        outcome = reports.outcome(ex, task, agent, result, base_sha, before, url)
        ws.write(config.outcomes_file, outcomes.append(ws.read(config.outcomes_file), outcome))
        committed = ws.commit(reports.commit_message(task, agent, result, before, url))
        sha = committed or base_sha

        def stat() -> str:  # for the check run's text: git works it out beside the push
            try:
                return ws.stat(sha) if committed else ""
            except GitError:
                return ""
        self.hold.confirm()  # a step that lost its lease never pushes (raises heartbeat.LeaseLost)
        # Report before recording: a worker lost in between leaves the task open in the table, and the
        # next step finds it ticked on the branch (_follow_git), so the check run never stays open.
        # The task's check run, the PR body and the old summary's end need nothing of the commit on
        # GitHub: they travel while it does, from the table about to be recorded. A push that fails
        # tells GitHub again (the check run fails in _do_task, _finish refreshes the PR and concludes
        # the summary on the commit it stayed on); the new summary needs the commit there: after it.
        table = self.store.tasks(ex.id)
        done = dataclasses.replace(table.get(task.id) or TaskProgress(task_id=task.id), status=TaskStatus.COMPLETED,
                                   commit=sha, duration=result.duration, attempts=before + result.attempts, last_error="",
                                   error_class="", checks=tuple(reports.check_json(r) for r in result.checks))
        table[task.id] = done
        # What the summary and the PR say before the store records it: the same count the store will make.
        after = numbers.stamp(dataclasses.replace(ex, status=S.AUTONOMOUS, current_task=None),
                              numbers.count(table, self.store.scope(ex.id)))
        def pull() -> None:
            self._refresh_pull(after, "running", tasks=table)

        def nothing() -> None:
            return None

        # A PR is opened on the branch once it is on GitHub (the first push makes it), then refreshed.
        early = publish.begin(
            lambda: self._task_check(ex, task, check_id, base_sha, "success", f"Task {task.id} done in "
                                     f"{reports.attempts_said(result.attempts, before)}",
                                     reports.task_summary(task, agent, result, sha, before),
                                     reports.task_text(result, stat(), url)),
            lambda: publish.end_summary(self.reporter, ex, sha), pull if ex.pr_number else nothing)
        try:
            ws.push(ex.branch)
        finally:
            checked, _, pulled = publish.wait(early)  # before anything reports the push's failure
        self.head_sha = sha
        if self.warm is not None:
            self.warm.pushed = (ex.branch, sha)  # the next step of this job starts from here, unfetched
        if checked is not None:
            raise checked  # before recording, as if it had failed alone
        moved = publish.begin(lambda: self._summary(after, tasks=table, old_ended=True),
                              nothing if ex.pr_number else pull)
        # The table and the counter in one transaction: a worker lost between two writes would leave
        # the task completed and uncounted, and nothing later could tell.
        ex = self.store.settle_tasks(ex.id, [done], new=S.AUTONOMOUS, reason=f"task {task.id} completed",
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
        self.again = True
        return f"task {task.id} completed"

    def _task_failed(self, ex: Execution, ws: Workspace, config: RepoConfig, task: Task, check_id: int | None,
                     result: TaskResult, base_sha: str) -> str:
        ws.discard()  # the broken attempt is never committed
        before = self.attempts_before
        self.store.set_task_status(ex.id, task.id, TaskStatus.FAILED, attempts=before + result.attempts,
                                   duration=result.duration, last_error=result.last_error[-2000:],
                                   error_class=result.error_class)
        self._task_check(ex, task, check_id, base_sha, "failure", f"Task {task.id} failed after "
                         f"{reports.attempts_said(result.attempts, before)}",
                         reports.failure_summary(task, result, task.checks + config.gates, before),
                         reports.task_text(result, "", self._artifacts_url(ex, task)),
                         reports.annotations_for(result, str(ws.root)), actions=(RETRY, STOP))
        self.store.update(ex.id, current_task=None)
        if config.on_failure == "continue":
            self.store.transition(ex.id, S.AUTONOMOUS, "engine", f"task {task.id} failed; continuing")
            self.again = True
            return f"task {task.id} failed; continuing"
        self.reporter.comment(ex.issue_number, reports.escalation(ex, task, result, self.eng.dashboard_url(ex.id),
                                                                  before))
        return self._finish(self.store.get(ex.id), S.BLOCKED,
                            f"task {task.id} failed after {result.attempts} attempts", notify=False)

    def _task_check(self, ex: Execution, task: Task, check_id: int | None, base_sha: str, conclusion: Conclusion,
                    title: str, summary: str, text: str = "", annotations: Sequence[Annotation] = (),
                    actions: tuple[Button, ...] = ()) -> None:
        """Complete the task's check run; one GitHub would not open while the agent worked is created now,
        completed (the agent's work is never thrown away for want of a check run)."""
        if check_id is not None:
            self.reporter.finish_check(check_id, conclusion, title, summary, text, annotations, actions)
            return
        opened = self.reporter.completed_check(base_sha, reports.check_name(task), self.eng.dashboard_url(ex.id),
                                               f"{ex.id}:{task.id}", conclusion, title, summary, text, annotations,
                                               actions)
        self.store.record_check(ex.id, task.id, opened)
        self.store.log(ex.id, f"task {task.id}: its check run, not opened when the task began, created completed",
                       task=task.id)

    def _defer(self, exc: RetryLater) -> str:
        """GitHub asked us to slow down for longer than a worker should sleep: the execution stays runnable,
        keeps its repository, and its next step comes back in line after the wait (jobs.scheduler); the task
        in hand is pending again, which is no failed attempt. A wait GitHub did not name (a secondary limit
        without headers) doubles each time in a row, and after MAX_DEFERRALS the execution blocks."""
        ex = self.store.get(self.id)
        why = describe_error(exc)
        times = self.store.count_deferral(ex.id)
        if times > MAX_DEFERRALS:
            return self._finish(ex, S.BLOCKED, f"GitHub kept asking us to slow down ({times - 1} times in a row; "
                                               f"last: {why}); `/clarity resume` tries again")
        seconds = max(min(exc.seconds * 2 ** (times - 1), MAX_DEFER) if exc.guessed else exc.seconds, 1.0)
        if ex.status in (S.TASK_EXECUTING, S.ERROR_SOLVING):
            ex = self.store.transition(ex.id, S.AUTONOMOUS, "engine", "GitHub asked us to slow down",
                                       current_task=None)
        said = f"GitHub asked us to slow down; resuming in {seconds:.0f} s"
        self.store.log(ex.id, f"{said} ({why})", "warning")
        log.warning("execution %s: %s (%s)", ex.id, said, why)
        self.store.audit_event(ex, "execution.deferred", "engine", {**self.who, "seconds": seconds, "why": why})
        self.later = seconds
        return f"deferred: {said}"

    # -- endings --------------------------------------------------------------------------------
    def _finish(self, ex: Execution, status: ExecutionStatus, reason: str, notify: bool = True) -> str:
        self.clock.charge()  # before the execution settles: a resume reads its active time
        if ex.status is not status:
            ex = self.store.transition(ex.id, status, "engine", reason, current_task=None)
        self.store.clear_flag(ex.id, Flag.STOP)
        self.store.log(ex.id, f"execution {status}: {reason}")
        self.release = ex  # freed when the step ends (see run)

        def tell() -> None:  # the PR (ready for review, or a draft again), then the closing comment
            if notify:  # each on its own: a PR GitHub would not refresh must not swallow the comment
                self._report(ex, "pull request not refreshed", lambda: self._refresh_pull(
                    ex, str(status), draft=status not in (S.PAUSED, S.COMPLETED)))
                self._report(ex, "closing comment not posted", lambda: self.reporter.comment(
                    ex.issue_number, reports.finished(ex, reason, self.eng.dashboard_url(ex.id), self.notify)))
        publish.together(lambda: self._summary(ex, final=True), tell)
        return f"{status}: {reason}"

    def _report(self, ex: Execution, failure: str, call: Callable[[], object]) -> None:
        """Make one report to GitHub; if GitHub fails it, log `failure` with context and go on to the next."""
        try:
            call()
        except GitHubException as exc:
            log.warning("execution %s: %s (%s#%s, %s): %s", ex.id, failure, ex.repo, ex.issue_number, ex.status,
                        describe_error(exc))

    def _summary(self, ex: Execution, final: bool = False, tasks: dict[str, TaskProgress] | None = None,
                 old_ended: bool = False) -> None:
        publish.summary(self.eng, self.reporter, ex, self.head_sha, final, tasks, old_ended)

    def _refresh_pull(self, ex: Execution, status: str, draft: bool = True,
                      tasks: dict[str, TaskProgress] | None = None) -> None:
        publish.refresh_pull(self.eng, self.reporter, ex, status, self.pr_template, draft, tasks)

    def _heartbeat(self, ex: Execution) -> contextlib.AbstractContextManager[heartbeat.Hold]:
        return heartbeat.beating(self.eng, ex, self.cancel)


def track_scope(store: Store, ex: Execution, tasks: TaskList) -> Execution:
    """Record the open tasks the execution covers as its list says now (its numbers are counted from them)."""
    return store.set_scope(ex.id, numbers.scope(tasks, ex.stop_point, ex.only), {t.id: t.title for t in tasks.leaves()})


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


def _opened(opening: Future[object]) -> int:
    """The id of the check run `open_check` opened, once it has; what GitHub answered otherwise, raised."""
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


def _commit_of(ws: Workspace, task_id: str) -> str:
    """The sha of the branch's commit for a task (`clarity: <id> ...`), or "" if there is none."""
    prefix = f"clarity: {task_id} "
    return next((sha for sha, subject in ws.history(SUBJECT_SCAN) if subject.startswith(prefix)), "")
