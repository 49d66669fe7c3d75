"""What a step does next, decided from one look at its execution: `plan_step(...) -> Next`. Pure.

The step (jobs.step) reads the execution, its task list as the branch has it, its task table and its
flags, asks `plan_step`, and does what the answer says. Everything that chooses between running a task
and ending the execution lives here, in the order the rules apply; nothing here reads Redis, git,
GitHub or a clock, so tests/test_planner.py holds every rule to a table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clarity import budget, numbers
from clarity.budget import Budget
from clarity.flags import Flag
from clarity.models import Execution, TaskProgress
from clarity.status import ExecutionStatus, TaskStatus
from clarity.tasklist import Task, TaskList
from jobs.budgets import used
from jobs.overrides import waived

S = ExecutionStatus
RUNNABLE = (S.INITIALIZING, S.AUTONOMOUS)
UNAVAILABLE = (TaskStatus.FAILED, TaskStatus.SKIPPED)  # never started again until a person retries them
NO_LIMITS = Budget()


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing to do: the execution is not runnable (settled, queued, or another step's)."""

    status: ExecutionStatus


@dataclass(frozen=True, slots=True)
class Stop:
    """Someone asked for a stop: the execution ends `stopped`."""

    by: str


@dataclass(frozen=True, slots=True)
class ReadBranch:
    """Sync the workspace and read the task list from the branch, then plan again with it."""


@dataclass(frozen=True, slots=True)
class Initialize:
    """The execution's first step: its `pre` gates, then `autonomous`; then plan again."""

    order: tuple[str, ...]  # the tasks it covers, in the order they would run


@dataclass(frozen=True, slots=True)
class Pause:
    """Someone asked for a pause: their flag is lowered and the execution ends the step `paused`."""

    by: str


@dataclass(frozen=True, slots=True)
class OutOfBudget:
    """A task is ready but the budget allows no attempt: the execution pauses, naming the limit."""

    limit: str


@dataclass(frozen=True, slots=True)
class RunTask:
    """Run this task; its attempts count on from those of its earlier rounds (a retry, a replay)."""

    task: Task
    attempts_before: int


@dataclass(frozen=True, slots=True)
class Conclude:
    """Nothing in scope can run: the execution ends `completed`, `paused` at its stop point, or `blocked`."""

    status: ExecutionStatus
    reason: str

    @property
    def gated(self) -> bool:
        """Whether the `post_execution` gates run first (a failing one blocks the execution instead)."""
        return self.status is not S.BLOCKED

    @property
    def at_stop_point(self) -> bool:
        """Paused at the stop point: a resume goes on past it (Flag.STOP_POINT_REACHED)."""
        return self.status is S.PAUSED


Next = Idle | Stop | ReadBranch | Initialize | Pause | OutOfBudget | RunTask | Conclude


def plan_step(execution: Execution, tasks: TaskList | None, table: Mapping[str, TaskProgress],
              flags: Mapping[Flag, str], elapsed: float = 0.0, limits: Budget = NO_LIMITS) -> Next:
    """What the step does next. The first rule that holds decides:

    1. the execution is not initializing or autonomous → Idle
    2. the stop flag is up → Stop
    3. the task list is not read yet (`tasks` None) → ReadBranch
    4. initializing → Initialize
    5. the pause flag is up → Pause (after the task in hand: a step starts none)
    6. a task is eligible → OutOfBudget if `limits` allow no attempt, else RunTask
    7. otherwise → Conclude: blocked while a task in scope is open, else completed when the whole list
       is done, else paused at the stop point

    `flags` holds the flags up, each with who raised it; `elapsed` is how long the step has run (its
    time counts against the budget before it is added to the execution's).
    """
    if execution.status not in RUNNABLE:
        return Idle(execution.status)
    stop_by = flags.get(Flag.STOP)
    if stop_by:
        return Stop(stop_by)
    if tasks is None:
        return ReadBranch()
    if execution.status is S.INITIALIZING:
        return Initialize(tuple(numbers.scope(tasks, execution.stop_point, execution.only)))
    pause_by = flags.get(Flag.PAUSE)
    if pause_by:
        return Pause(pause_by)
    task = next_task(execution, tasks, unavailable(table))
    if task is None:
        return conclude(execution, tasks, table)
    limit = budget.exhausted(limits, used(execution, elapsed)) if not limits.is_empty else None
    if limit:
        return OutOfBudget(limit)
    return RunTask(task, table[task.id].attempts if task.id in table else 0)


def next_task(execution: Execution, tasks: TaskList, skip: frozenset[str]) -> Task | None:
    """The first eligible task: in document order up to the stop point, or among `only`'s leaves, whose
    dependencies are done and which is not in `skip`."""
    if not execution.only:
        return tasks.next_task(execution.stop_point, skip)
    for task in tasks.leaves(under=execution.only):
        if not task.done and task.id not in skip and all(tasks.is_done(d) for d in task.depends):
            return task
    return None


def conclude(execution: Execution, tasks: TaskList, table: Mapping[str, TaskProgress]) -> Conclude:
    """Nothing eligible: blocked behind a failure while a task in scope is open, completed when every task
    of the list is done (or skipped by a person), else paused at the stop point."""
    settled = waived(table)  # skipped by a person: settled, never ticked
    in_scope = (tasks.leaves(under=execution.only) if execution.only else
                [tasks.get(i) for i in tasks.run_order(execution.stop_point)])
    open_in_scope = [t.id for t in in_scope if not t.done and t.id not in settled]
    if open_in_scope:
        failed = ", ".join(sorted(unavailable(table))) or "none"
        return Conclude(S.BLOCKED, f"tasks {', '.join(open_in_scope[:5])} cannot run: they depend on "
                                   f"failed or unfinished tasks ({failed})")
    if all(t.done or t.id in settled for t in tasks.leaves()):
        return Conclude(S.COMPLETED, "every task in the list is done"
                        + (f" or skipped by a person ({', '.join(sorted(settled))})" if settled else ""))
    return Conclude(S.PAUSED, f"stop point {execution.only or execution.stop_point} reached")


def unavailable(table: Mapping[str, TaskProgress]) -> frozenset[str]:
    """Tasks that failed or were skipped: none of them starts again until a person retries it."""
    return frozenset(p.task_id for p in table.values() if p.status in UNAVAILABLE)

