"""The step's planner (jobs.planner.plan_step) as a table: one look at an execution → what the step does next."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clarity import tasklist
from clarity.budget import Budget
from clarity.flags import Flag
from clarity.models import Execution, TaskProgress
from clarity.status import ExecutionStatus as E
from clarity.status import TaskStatus as T
from jobs.planner import (
    Conclude,
    Idle,
    Initialize,
    Next,
    OutOfBudget,
    Pause,
    ReadBranch,
    RunTask,
    Stop,
    plan_step,
)

LIST = """# Tasks
- [ ] 1. Setup
  - [x] 1.1 Skeleton
  - [ ] 1.2 CI
- [ ] 2. Data
  - [ ] 2.1 Schema
    - depends: 1.2
  - [ ] 2.2 Fixtures
- [ ] 3. Docs
"""
TASKS = tasklist.parse(LIST)
ALL_DONE = tasklist.parse(tasklist.tick(LIST, ["1.2", "2.1", "2.2", "3"]))
FIRST_DONE = tasklist.parse(tasklist.tick(LIST, ["1.2"]))  # task 1 done: its stop point is reached
EMPTY = tasklist.parse("# Tasks\nNothing yet.\n")
STOP = {Flag.STOP: "ada"}
PAUSE = {Flag.PAUSE: "bob"}
NO_TIME = Budget(time=60)
UNLIMITED = Budget()
BLOCKED_BY = "cannot run: they depend on failed or unfinished tasks"


def ex(status: E = E.AUTONOMOUS, stop_point: str | None = None, only: str | None = None, attempts: int = 0,
       time_used: float = 0.0, cost: float = 0.0) -> Execution:
    return Execution(id="e1", installation_id=1, repo="a/b", account="a", issue_number=1, is_pull_request=False,
                     branch="clarity/issue-1", base_branch="main", requester="ada", status=status,
                     stop_point=stop_point, only=only, attempts=attempts, time_used=time_used, cost_usd=cost)


def rows(**statuses: T | tuple[T, str] | int) -> dict[str, TaskProgress]:
    """A task table from `t1_2=T.FAILED`, `t3=(T.SKIPPED, "grace")` (skipped by a person), `t1_2=3` (3 attempts)."""
    table = {}
    for key, value in statuses.items():
        task_id = key[1:].replace("_", ".")
        if isinstance(value, int):
            table[task_id] = TaskProgress(task_id=task_id, attempts=value)
        elif isinstance(value, tuple):
            table[task_id] = TaskProgress(task_id=task_id, status=value[0], override_by=value[1])
        else:
            table[task_id] = TaskProgress(task_id=task_id, status=value)
    return table


def run(task_id: str, before: int = 0) -> RunTask:
    return RunTask(TASKS.get(task_id), before)


@dataclass(frozen=True)
class Row:
    """One look at the world, and what the step must do next."""

    why: str
    execution: Execution
    tasks: tasklist.TaskList | None
    want: Next
    table: dict[str, TaskProgress] = field(default_factory=dict)
    flags: dict[Flag, str] = field(default_factory=dict)
    elapsed: float = 0.0
    limits: Budget = UNLIMITED


TABLE = [
    # 1. Only an initializing or autonomous execution is stepped.
    Row("a paused execution's stale slot does nothing", ex(E.PAUSED), None, Idle(E.PAUSED)),
    Row("a queued one neither, stop flag or not", ex(E.QUEUED), None, Idle(E.QUEUED), flags=STOP),
    Row("nor a finished one", ex(E.COMPLETED), TASKS, Idle(E.COMPLETED)),
    Row("nor one another step is working on", ex(E.TASK_EXECUTING), TASKS, Idle(E.TASK_EXECUTING)),
    # 2. Stop comes before anything else is read.
    Row("the stop flag stops before the branch is read", ex(), None, Stop("ada"), flags=STOP),
    Row("an initializing execution stops before its gates", ex(E.INITIALIZING), None, Stop("ada"), flags=STOP),
    Row("stop wins over pause", ex(), TASKS, Stop("ada"), flags={**STOP, **PAUSE}),
    # 3. Then the branch.
    Row("a runnable execution reads its branch first", ex(), None, ReadBranch()),
    Row("the pause flag waits until the list is read", ex(), None, ReadBranch(), flags=PAUSE),
    # 4. The first step initializes.
    Row("initializing: every open task in order", ex(E.INITIALIZING), TASKS, Initialize(("1.2", "2.1", "2.2", "3"))),
    Row("initializing up to a stop point", ex(E.INITIALIZING, "2.1"), TASKS, Initialize(("1.2", "2.1"))),
    Row("initializing with only", ex(E.INITIALIZING, only="2"), TASKS, Initialize(("2.1", "2.2"))),
    Row("a pause waits until the execution is initialized", ex(E.INITIALIZING), TASKS, Initialize(
        ("1.2", "2.1", "2.2", "3")), flags=PAUSE),
    # 5. Pause, between tasks.
    Row("the pause flag pauses", ex(), TASKS, Pause("bob"), flags=PAUSE),
    Row("a pause comes before the budget", ex(attempts=9), TASKS, Pause("bob"), flags=PAUSE,
        limits=Budget(attempts=9)),
    # 6. The next task.
    Row("the first open task in document order", ex(), TASKS, run("1.2")),
    Row("its attempts go on from its earlier rounds", ex(), TASKS, run("1.2", 3), rows(t1_2=3)),
    Row("a failed task is passed over, so are its dependants", ex(), TASKS, run("2.2"), rows(t1_2=T.FAILED)),
    Row("a skipped task too", ex(), TASKS, run("2.2"), rows(t1_2=(T.SKIPPED, "grace"))),
    Row("only: its open leaves whose dependencies are done", ex(only="2"), TASKS, run("2.2")),
    Row("only a leaf", ex(only="3"), TASKS, run("3")),
    Row("a stop point: tasks up to it", ex(stop_point="2.1"), FIRST_DONE, run("2.1")),
    Row("the budget allows the attempt", ex(time_used=50), TASKS, run("1.2"), elapsed=5, limits=NO_TIME),
    Row("the step's own time counts against the budget", ex(time_used=50), TASKS, OutOfBudget(
        "time budget of 1m used up (59.5s active)"), elapsed=9.5, limits=NO_TIME),
    Row("attempts used up", ex(attempts=5), TASKS, OutOfBudget("attempt budget of 5 used up (5 attempts made)"),
        limits=Budget(attempts=5)),
    Row("cost reached", ex(cost=2.5), TASKS, OutOfBudget("cost budget $2.00 reached ($2.50 spent)"),
        limits=Budget(cost=2)),
    # 7. Nothing eligible: the conclusion.
    Row("every task done", ex(), ALL_DONE, Conclude(E.COMPLETED, "every task in the list is done")),
    Row("a list without tasks is done", ex(), EMPTY, Conclude(E.COMPLETED, "every task in the list is done")),
    Row("done or skipped by a person", ex(), tasklist.parse(tasklist.tick(LIST, ["1.2", "2.1"])), Conclude(
        E.COMPLETED, "every task in the list is done or skipped by a person (2.2, 3)"),
        rows(t2_2=(T.SKIPPED, "grace"), t3=(T.SKIPPED, "ada"))),
    Row("the stop point reached", ex(stop_point="1"), FIRST_DONE, Conclude(E.PAUSED, "stop point 1 reached")),
    Row("only's tasks done", ex(only="1"), FIRST_DONE, Conclude(E.PAUSED, "stop point 1 reached")),
    Row("an exhausted budget does not hold up the conclusion", ex(attempts=5), ALL_DONE, Conclude(
        E.COMPLETED, "every task in the list is done"), limits=Budget(attempts=5)),
    Row("blocked behind a failure", ex(), tasklist.parse(tasklist.tick(LIST, ["2.2", "3"])), Conclude(
        E.BLOCKED, f"tasks 1.2, 2.1 {BLOCKED_BY} (1.2)"), rows(t1_2=T.FAILED)),
    Row("the engine's own skip is no person's: it blocks", ex(stop_point="1"), TASKS, Conclude(
        E.BLOCKED, f"tasks 1.2 {BLOCKED_BY} (1.2)"), rows(t1_2=T.SKIPPED)),
    Row("only, its task waiting for one outside it", ex(only="2.1"), TASKS, Conclude(
        E.BLOCKED, f"tasks 2.1 {BLOCKED_BY} (none)")),
    Row("at most five open tasks are named", ex(), tasklist.parse(LIST.replace("- [x] 1.1", "- [ ] 1.1")),
        Conclude(E.BLOCKED, f"tasks 1.1, 1.2, 2.1, 2.2, 3 {BLOCKED_BY} (1.1, 1.2, 2.1, 2.2, 3)"),
        rows(t1_1=T.FAILED, t1_2=T.FAILED, t2_1=T.FAILED, t2_2=T.FAILED, t3=T.FAILED)),
]


@pytest.mark.parametrize("row", TABLE, ids=[row.why for row in TABLE])
def test_the_step_does_what_the_table_says(row: Row) -> None:
    assert plan_step(row.execution, row.tasks, row.table, row.flags, row.elapsed, row.limits) == row.want


def test_a_conclusion_says_whether_gates_run_and_the_stop_point_is_behind() -> None:
    ends = {c.status: (c.gated, c.at_stop_point) for c in (Conclude(E.COMPLETED, ""), Conclude(E.PAUSED, ""),
                                                              Conclude(E.BLOCKED, ""))}
    assert ends == {E.COMPLETED: (True, False), E.PAUSED: (True, True), E.BLOCKED: (False, False)}


LEAVES = ("1.1", "1.2", "2.1", "2.2", "3")


@given(done=st.sets(st.sampled_from(LEAVES)),
       settled=st.dictionaries(st.sampled_from(LEAVES), st.sampled_from([T.FAILED, T.SKIPPED, T.PENDING])),
       stop_point=st.sampled_from([None, "1", "2", "2.1", "3"]), only=st.sampled_from([None, "2", "2.2"]))
def test_a_task_run_is_open_available_and_ready(done: set[str], settled: dict[str, T], stop_point: str | None,
                                                only: str | None) -> None:
    tasks = tasklist.parse(tasklist.tick(LIST.replace("- [x] 1.1", "- [ ] 1.1"), done))
    table = {i: TaskProgress(task_id=i, status=s) for i, s in settled.items()}
    plan = plan_step(ex(stop_point=stop_point, only=only), tasks, table, {})
    if isinstance(plan, RunTask):
        task = plan.task
        assert not task.done and settled.get(task.id) not in (T.FAILED, T.SKIPPED)
        assert all(tasks.is_done(d) for d in task.depends)
    else:
        assert isinstance(plan, Conclude)
        assert (plan.status is E.COMPLETED) == (done == set(LEAVES))
