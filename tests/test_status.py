"""The execution and task state machines allow exactly the designed transitions."""

from __future__ import annotations

import pytest

from clarity.status import (
    EXECUTION_TRANSITIONS,
    TASK_TRANSITIONS,
    ExecutionStatus,
    IllegalTransition,
    TaskStatus,
    check_execution,
    check_task,
)

E, T = ExecutionStatus, TaskStatus


def test_seed_statuses_exist() -> None:
    seed = {"initializing", "autonomous", "task-executing", "error-solving", "paused", "completed", "blocked",
            "failed"}
    assert seed <= {s.value for s in E}
    assert {s.value for s in T} == {"pending", "in-progress", "verifying", "error-solving", "completed",
                                    "failed", "skipped"}


@pytest.mark.parametrize(("old", "new"), [
    (E.QUEUED, E.INITIALIZING), (E.INITIALIZING, E.AUTONOMOUS), (E.AUTONOMOUS, E.TASK_EXECUTING),
    (E.TASK_EXECUTING, E.ERROR_SOLVING), (E.ERROR_SOLVING, E.TASK_EXECUTING), (E.TASK_EXECUTING, E.AUTONOMOUS),
    (E.AUTONOMOUS, E.PAUSED), (E.AUTONOMOUS, E.COMPLETED), (E.ERROR_SOLVING, E.BLOCKED),
    (E.PAUSED, E.INITIALIZING), (E.BLOCKED, E.INITIALIZING), (E.TASK_EXECUTING, E.STOPPED),
])
def test_designed_transitions_are_allowed(old: E, new: E) -> None:
    assert check_execution(old, new) is new


@pytest.mark.parametrize(("old", "new"), [
    (E.COMPLETED, E.AUTONOMOUS), (E.STOPPED, E.INITIALIZING), (E.FAILED, E.PAUSED),
    (E.QUEUED, E.TASK_EXECUTING), (E.PAUSED, E.TASK_EXECUTING), (E.TASK_EXECUTING, E.COMPLETED),
])
def test_illegal_transitions_raise(old: E, new: E) -> None:
    with pytest.raises(IllegalTransition, match=f"illegal execution transition: {old} → {new}"):
        check_execution(old, new)


def test_terminal_statuses_have_no_way_out() -> None:
    for status in E:
        assert (not EXECUTION_TRANSITIONS[status]) == status.is_terminal


def test_settled_statuses_are_the_terminal_ones_and_those_waiting_for_a_person() -> None:
    assert {s for s in E if s.is_settled} == {E.COMPLETED, E.FAILED, E.STOPPED, E.PAUSED, E.BLOCKED}


def test_task_machine() -> None:
    assert check_task(T.PENDING, T.IN_PROGRESS) is T.IN_PROGRESS
    assert check_task(T.VERIFYING, T.COMPLETED) is T.COMPLETED
    with pytest.raises(IllegalTransition):
        check_task(T.COMPLETED, T.IN_PROGRESS)
    with pytest.raises(IllegalTransition):
        check_task(T.PENDING, T.VERIFYING)
    assert all(isinstance(v, frozenset) for v in TASK_TRANSITIONS.values())


def test_every_status_has_a_badge() -> None:
    assert all(s.badge for s in E)
