"""Execution and task statuses (DESIGN §7) and the only transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """Where an execution is in its life; the seed's statuses plus `queued` and `stopped`."""

    QUEUED = "queued"
    INITIALIZING = "initializing"
    AUTONOMOUS = "autonomous"
    TASK_EXECUTING = "task-executing"
    ERROR_SOLVING = "error-solving"
    PAUSED = "paused"
    COMPLETED = "completed"
    BLOCKED = "blocked"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        """No transition leaves this status."""
        return self in _TERMINAL

    @property
    def is_settled(self) -> bool:
        """Terminal, or waiting for a person (paused, blocked): the execution has stopped moving."""
        return self in _SETTLED

    @property
    def is_active(self) -> bool:
        """The execution holds (or is about to take) its repository's lease."""
        return self in _ACTIVE

    @property
    def badge(self) -> str:
        """The seed's emoji, shown beside the word so status never relies on colour alone."""
        return _BADGES[self]


class TaskStatus(StrEnum):
    """Where one task is within an execution."""

    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    VERIFYING = "verifying"
    ERROR_SOLVING = "error-solving"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class IllegalTransition(ValueError):
    """A status change the state machine does not allow."""

    def __init__(self, kind: str, old: str, new: str) -> None:
        super().__init__(f"illegal {kind} transition: {old} → {new}")
        self.old, self.new = old, new


E = ExecutionStatus
T = TaskStatus
_TERMINAL = frozenset({E.COMPLETED, E.FAILED, E.STOPPED})
_SETTLED = _TERMINAL | {E.PAUSED, E.BLOCKED}
_ACTIVE = frozenset({E.INITIALIZING, E.AUTONOMOUS, E.TASK_EXECUTING, E.ERROR_SOLVING})
_BADGES = {
    E.QUEUED: "⏳", E.INITIALIZING: "🔵", E.AUTONOMOUS: "🟢", E.TASK_EXECUTING: "🟡",
    E.ERROR_SOLVING: "🟠", E.PAUSED: "⏸️", E.COMPLETED: "✅", E.BLOCKED: "🔴",
    E.FAILED: "❌", E.STOPPED: "⏹️",
}

EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    E.QUEUED: frozenset({E.INITIALIZING, E.STOPPED}),
    E.INITIALIZING: frozenset({E.AUTONOMOUS, E.QUEUED, E.BLOCKED, E.FAILED, E.STOPPED}),
    E.AUTONOMOUS: frozenset({E.TASK_EXECUTING, E.QUEUED, E.PAUSED, E.COMPLETED, E.BLOCKED, E.FAILED, E.STOPPED}),
    E.TASK_EXECUTING: frozenset({E.AUTONOMOUS, E.ERROR_SOLVING, E.BLOCKED, E.FAILED, E.STOPPED}),
    E.ERROR_SOLVING: frozenset({E.TASK_EXECUTING, E.AUTONOMOUS, E.BLOCKED, E.FAILED, E.STOPPED}),
    E.PAUSED: frozenset({E.QUEUED, E.INITIALIZING, E.STOPPED}),
    E.BLOCKED: frozenset({E.QUEUED, E.INITIALIZING, E.STOPPED}),
    E.COMPLETED: frozenset(),
    E.FAILED: frozenset(),
    E.STOPPED: frozenset(),
}

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    T.PENDING: frozenset({T.IN_PROGRESS, T.SKIPPED, T.COMPLETED}),
    T.IN_PROGRESS: frozenset({T.VERIFYING, T.ERROR_SOLVING, T.FAILED, T.PENDING}),
    T.VERIFYING: frozenset({T.COMPLETED, T.ERROR_SOLVING, T.FAILED, T.PENDING}),
    T.ERROR_SOLVING: frozenset({T.IN_PROGRESS, T.FAILED, T.PENDING}),
    T.COMPLETED: frozenset(),
    T.FAILED: frozenset({T.PENDING}),
    T.SKIPPED: frozenset({T.PENDING}),
}


def check_execution(old: ExecutionStatus | str, new: ExecutionStatus | str) -> ExecutionStatus:
    """Return `new` as a status if old → new is allowed, else raise IllegalTransition."""
    old_s, new_s = ExecutionStatus(old), ExecutionStatus(new)
    if new_s not in EXECUTION_TRANSITIONS[old_s]:
        raise IllegalTransition("execution", old_s, new_s)
    return new_s


def check_task(old: TaskStatus | str, new: TaskStatus | str) -> TaskStatus:
    """Return `new` as a task status if old → new is allowed, else raise IllegalTransition."""
    old_s, new_s = TaskStatus(old), TaskStatus(new)
    if new_s not in TASK_TRANSITIONS[old_s]:
        raise IllegalTransition("task", old_s, new_s)
    return new_s
