"""The step job: ONE task of one execution, then re-enqueue (DESIGN §1). A step reads, plans, acts.

It reads its execution, its task list from the branch (jobs.checkout), its task table and its flags;
jobs.planner decides what comes next; the step does it: runs the task (jobs.taskrun) or ends the
execution (jobs.endings). Git is the truth for progress, so a replayed step never repeats a pushed
task. A slot job whose execution has more to do takes the next step itself when nobody else waits
for a worker (jobs.chaining).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from githubkit.exception import RequestFailed
from rq import get_current_job

from clarity import logcontext, repoconfig
from clarity.actors import shown
from clarity.budget import Budget
from clarity.flags import Flag
from clarity.models import Execution
from clarity.status import ExecutionStatus
from clarity.store import Brief
from clarity.tasklist import TaskListError
from github_app.client import RetryLater, describe_error
from github_app.reporting import Reporter
from jobs import budgets, chaining, checkout, endings, gates, heartbeat, planner, sandboxes, scheduler
from jobs.attempts import Cancelled
from jobs.checkout import Blocked, Checkout, TaskFile
from jobs.context import Engine
from jobs.context import engine as default_engine
from jobs.planner import Conclude, Idle, Initialize, OutOfBudget, Pause, RunTask, Stop
from jobs.stepcontext import After, StepContext
from jobs.taskrun import TaskRun
from runner.agents import AgentError
from runner.sandbox import IsolationError
from runner.workspace import GitError, PushRefused, PushRejected

log = logging.getLogger(__name__)
S = ExecutionStatus


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
    time_left = chaining.JobTimeLeft(job.timeout, chaining.step_worst_case(eng.settings))

    def keep(ex: Brief) -> bool:
        return time_left.allows() and eng.store.ready.keep(job.id, ex.id, ex.installation_id)

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
    """One step of one execution: read what it needs, ask jobs.planner, act on the answer."""

    def __init__(self, engine: Engine, execution_id: str, who: dict[str, str] | None = None,
                 warm: chaining.Warm | None = None, keep: Callable[[Brief], bool] | None = None) -> None:
        self.eng = engine
        self.store = engine.store
        self.id = execution_id
        self.who = who or {}  # the RQ job and worker running this step, for the audit stream
        self.warm = warm  # what the previous step of this job left: REST clients, workspace, last push
        self.keep = keep  # may this job take the execution's next step itself? (jobs.chaining)
        self.kept = False  # it did: the next step runs in this job, no slot was queued
        self.cancel = threading.Event()  # the heartbeat's: a stop or a lost lease kills the attempt
        self.after = After()  # what the step leaves to do once it has ended

    # -- the step's frame -------------------------------------------------------------------------
    def run(self) -> str:
        """Do the next task (or finish the execution) and say what happened."""
        with logcontext.bind(execution_id=self.id):
            # Step boundaries go to the audit stream: who worked on what, when.
            self.store.audit_event(self.store.brief(self.id), "step.started", "engine", self.who)
            outcome = "crashed"
            clock = budgets.Clock(self.store, self.id)  # the time budget counts steps' durations
            try:
                # The step's REST client, entered in _run: one connection pool for all its calls, where
                # githubkit would otherwise build a client and open a connection (TLS) for every call.
                # A chain of steps in one job shares its clients (the job's ExitStack closes them).
                with (contextlib.nullcontext(self.warm.http) if self.warm else contextlib.ExitStack()) as http:
                    outcome = self._run(clock, http)
                return outcome
            finally:
                clock.charge()
                self._ended(outcome)

    def _ended(self, outcome: str) -> None:
        """Free the repository, or make the execution ready again, only now: no two steps of one
        repository ever overlap."""
        ended = self.store.brief(self.id)
        self.store.audit_event(ended, "step.finished", "engine", {**self.who, "outcome": outcome})
        if self.after.release is not None:
            scheduler.release(self.eng, self.after.release)
        if self.after.later is not None:
            scheduler.enqueue_step_later(self.eng, self.id, self.after.later)
        elif outcome != "crashed":
            self.store.reset_deferrals(self.id)
        if self.after.again:
            self.kept = self.keep is not None and self.keep(ended)
            if not self.kept:
                scheduler.enqueue_step(self.eng, self.id)

    def _run(self, clock: budgets.Clock, http: contextlib.ExitStack) -> str:
        """Plan the step's start (nothing to do, stop, or read the branch), lease the repository, act."""
        ex = self.store.get(self.id)
        plan = planner.plan_step(ex, None, {}, self._flags(Flag.STOP))
        if isinstance(plan, Idle):
            return f"nothing to do: execution is {plan.status}"
        if not self.store.acquire_lease(ex.repo, ex.id, self.eng.settings.lease_ttl):
            scheduler.submit(self.eng, self.store.transition(ex.id, S.QUEUED, "engine", "lease lost"), "engine")
            return "repository busy: back in line"
        # Before the stop: finishing (stopped) reports through the context's reporter too.
        reporter = Reporter(self._client(http, ex.installation_id), ex.repo,
                            sandboxes.UNSANDBOXED if self.eng.settings.sandbox == "none" else "")
        ctx = StepContext(self.eng, self.id, self.who, clock, reporter, self.cancel, self.warm, self.after)
        if isinstance(plan, Stop):
            return endings.finish(ctx, ex, S.STOPPED, f"stopped by {shown(plan.by)}")
        return self._held(ctx, ex)  # ReadBranch

    def _client(self, http: contextlib.ExitStack, installation_id: int):  # type: ignore[no-untyped-def]
        """The REST client of the installation: the job's, kept across its steps, or this step's own."""
        if self.warm is None:
            return http.enter_context(self.eng.github.client(installation_id))
        if installation_id not in self.warm.clients:
            self.warm.clients[installation_id] = http.enter_context(self.eng.github.client(installation_id))
        return self.warm.clients[installation_id]

    def _flags(self, *names: Flag) -> dict[Flag, str]:
        """The flags among `names` that are up, with who raised each."""
        return {name: by for name in names if (by := self.store.flag(self.id, name))}

    def _held(self, ctx: StepContext, ex: Execution) -> str:
        """Advance under the lease's heartbeat; what cut the step short decides how the execution ends."""
        try:
            with heartbeat.beating(self.eng, ex, self.cancel) as hold:
                return self._advance(ctx, hold, ex)
        except heartbeat.LeaseLost as exc:  # another step has the execution now: leave it, unchanged, to it
            self.after.release, self.after.again = None, False
            return f"abandoned: {exc}"
        except budgets.Exhausted as exc:  # checked before every attempt; the time budget also kills one
            return endings.out_of_budget(ctx, str(exc))
        except Cancelled:
            return endings.finish(ctx, self.store.get(self.id), S.STOPPED,
                                  f"stopped by {shown(self.store.flag(self.id, Flag.STOP) or '')}")
        except (Blocked, TaskListError, repoconfig.ConfigError, AgentError, IsolationError) as exc:
            return endings.finish(ctx, self.store.get(self.id), S.BLOCKED, str(exc))
        except PushRejected:  # never forced: their work stays, ours waits for a person
            return endings.branch_moved(ctx)
        except PushRefused as exc:  # GitHub's own rule (workflows, file size, rulesets): a person must act
            log.warning("execution %s: push refused: %s", self.id, exc.reason)
            return endings.finish(ctx, self.store.get(self.id), S.BLOCKED, str(exc))
        except RetryLater as exc:  # before RequestFailed: it is one
            return endings.defer(ctx, exc)
        except (GitError, RequestFailed, OSError) as exc:
            reason = describe_error(exc)
            log.exception("execution %s: step failed: %s", self.id, reason)
            return endings.finish(ctx, self.store.get(self.id), S.BLOCKED, f"the engine hit an error: {reason}")
        except Exception as exc:
            # A bug: free the repository and tell people, then let RQ keep the traceback.
            log.exception("execution %s: unexpected error in step", self.id)
            endings.finish(ctx, self.store.get(self.id), S.BLOCKED,
                           f"internal error ({type(exc).__name__}); see the logs")
            raise

    # -- read, plan, act --------------------------------------------------------------------------
    def _advance(self, ctx: StepContext, hold: heartbeat.Hold, ex: Execution) -> str:
        """Read the branch, then plan and act: initialize first if need be, then one task or the end."""
        ws, workdir = checkout.sync(self.eng, self.warm, ex)
        ctx.head_sha = ws.synced_sha
        ctx.checkout = files = checkout.open_checkout(ws, workdir)  # any ending from here on uses its config
        ex, listed = self._follow(ctx, ex, files)
        limits = budgets.effective(files.config, ex)
        while True:
            # The stop flag was read as the step began; from here on the heartbeat watches it (and kills
            # the attempt), so only the pause is asked for.
            plan = planner.plan_step(ex, listed.tasks, self.store.tasks(ex.id), self._flags(Flag.PAUSE),
                                     time.monotonic() - ctx.clock.started, limits)
            if not isinstance(plan, Initialize):
                break
            ex = self._initialize(ctx, ex, files, plan)
        if isinstance(plan, RunTask):
            meter = budgets.Meter(self.store, ex, limits, ctx.clock.started)
            with logcontext.bind(task_id=plan.task.id):
                return TaskRun(ctx, hold, ex, files, listed, plan.task, plan.attempts_before, meter).run()
        return self._end(ctx, ex, files, limits, plan)

    def _follow(self, ctx: StepContext, ex: Execution, files: Checkout) -> tuple[Execution, TaskFile]:
        """The task list, and the table in line with it: what git shows done, what people decided by hand,
        and the tasks the execution covers now (its numbers are counted from them, every step)."""
        listed = checkout.read_tasks(files, ex)
        ex = checkout.follow_git(self.store, ctx.reporter, ex, files.ws, listed.tasks)
        overridden = checkout.settle_overrides(self.eng, files, ex, listed)
        if overridden is not None:
            listed, ctx.head_sha = overridden, files.ws.head_sha()
        return checkout.track_scope(self.store, ex, listed.tasks), listed

    def _initialize(self, ctx: StepContext, ex: Execution, files: Checkout, plan: Initialize) -> Execution:
        """The `pre` gates (Blocked if one fails), then `autonomous` and the first summary."""
        blocked = self._gates(ex, files, "pre", files.config.pre_gates)
        if blocked:
            raise Blocked(blocked)
        self.store.clear_flag(ex.id, Flag.STOP_POINT_REACHED)
        self.store.log(ex.id, f"{len(plan.order)} task(s) to run: {' → '.join(plan.order) or 'none'}")
        ex = self.store.transition(ex.id, S.AUTONOMOUS, "engine", "initialized",
                                   started_at=ex.started_at or time.time())
        endings.summary(ctx, ex)
        return ex

    def _end(self, ctx: StepContext, ex: Execution, files: Checkout, limits: Budget,
             plan: planner.Next) -> str:
        """End the execution as the plan says (no task to run in this step)."""
        if isinstance(plan, Pause):
            self.store.clear_flag(ex.id, Flag.PAUSE)
            return endings.finish(ctx, ex, S.PAUSED, f"paused by {shown(plan.by)}")
        if isinstance(plan, OutOfBudget):
            budgets.announce(self.store, ex, limits, plan.limit)
            return endings.out_of_budget(ctx, plan.limit)
        if isinstance(plan, Conclude):
            return self._conclude(ctx, ex, files, plan)
        if isinstance(plan, Idle):  # settled meanwhile by someone who did not wait for the step
            return f"nothing to do: execution is {plan.status}"
        raise AssertionError(f"no step ends with {plan} once the branch is read")

    def _conclude(self, ctx: StepContext, ex: Execution, files: Checkout, plan: Conclude) -> str:
        """The `post_execution` gates come before completed or paused at the stop point: a failing one blocks."""
        if plan.gated:
            blocked = self._gates(ex, files, "post_execution", files.config.post_execution_gates)
            if blocked:
                return endings.finish(ctx, ex, S.BLOCKED, blocked)
        if plan.at_stop_point:
            self.store.set_flag(ex.id, Flag.STOP_POINT_REACHED, "engine")
        return endings.finish(ctx, ex, plan.status, plan.reason)

    def _gates(self, ex: Execution, files: Checkout, phase: str, specs: tuple[str, ...]) -> str | None:
        """A `pre` or `post_execution` gate phase (jobs.gates): the blocking reason, or None."""
        return gates.run_phase(self.eng.settings, files.config, ex.id, phase, specs, files.workdir,
                               lambda line, level: self.store.log(ex.id, line, level)) if specs else None
