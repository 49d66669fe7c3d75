"""Every number an execution shows, computed in one place: tasks done and total, attempts, errors, success rate.

The numbers are a pure function of the execution's task table and its scope (`count`): nothing else
adds, subtracts or estimates them. The scope is the set of task ids the execution's stop point (or
`only`) covers that were open when the list was last read (`scope`, from `tasks_list.md`); a task the
execution completed counts whether or not it is still in that scope (a person's override of a task
beyond the stop point included), so `done <= total` always holds.

- done: tasks completed (by the engine or marked done by a person);
- total: done + the other tasks in scope (open, failed or skipped);
- left: tasks in scope still to run (pending, in progress, verifying, error-solving);
- passed / failed: tasks the engine ran to completed / failed (a person's decision is not the engine's);
- success rate = passed / (passed + failed), None before any task finished (the Metrics page's rate);
- attempts, errors: the sums of the tasks' agent attempts and failed attempts; retries: the attempts
  after each task's first.

`clarity.store.Store` keeps them on the execution's record (`fields()`), written in the same Redis
transaction as the task table and the scope, so `of(execution)` reads the numbers of any record without
its table, and every surface (comments, check runs, the PR, the API, the pages, the live feed) renders
this one value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clarity.rates import rate, rate_text, wire_rate  # numbers.rate & co. stay where callers look for them
from clarity.status import TaskStatus

if TYPE_CHECKING:
    from clarity.models import Execution, TaskProgress
    from clarity.tasklist import TaskList

OPEN = frozenset({TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING})
# Numbers field → the execution record's field that keeps it (the seed's names where it has them).
RECORD = {"done": "tasks_completed", "total": "tasks_total", "left": "tasks_left", "passed": "tasks_passed",
          "failed": "tasks_failed", "attempts": "attempts", "errors": "error_count", "retries": "retry_count"}
FIELDS = frozenset(RECORD.values())


@dataclass(frozen=True, slots=True)
class Numbers:
    """An execution's numbers (see the module's docstring for what each one counts)."""

    done: int = 0
    total: int = 0
    left: int = 0
    passed: int = 0
    failed: int = 0
    attempts: int = 0
    errors: int = 0
    retries: int = 0

    def __add__(self, other: Numbers) -> Numbers:
        return Numbers(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))

    def __sub__(self, other: Numbers) -> Numbers:
        return Numbers(*(a - b for a, b in zip(_values(self), _values(other), strict=True)))

    @property
    def known(self) -> bool:
        """Whether the execution has read its scope yet (a fresh one has not: 0/0 means "not yet")."""
        return self.total > 0

    @property
    def success_rate(self) -> float | None:
        """passed / (passed + failed), None before any task finished."""
        return rate(self.passed, self.failed)

    @property
    def progress(self) -> str:
        """"3/4"."""
        return f"{self.done}/{self.total}"

    @property
    def success_text(self) -> str:
        """"75%", or "—" before any task finished."""
        return rate_text(self.passed, self.failed)

    def tasks_text(self) -> str:
        """"3/4 tasks done" and what else a reader should know: ", 1 failed"."""
        return f"{self.progress} tasks done" + (f", {self.failed} failed" if self.failed else "")

    def detail_text(self) -> str:
        """"5 attempt(s), 1 failed; success rate 75%": the attempts behind the tasks."""
        return f"{self.attempts} attempt(s), {self.errors} failed; success rate {self.success_text}"

    def fields(self) -> dict[str, int]:
        """The execution record's fields that keep these numbers."""
        return {RECORD[f.name]: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> dict[str, Any]:
        """Wire shape (camelCase, the PRD's names), with the success rate as every surface shows it."""
        return {"tasksCompleted": self.done, "tasksTotal": self.total, "tasksLeft": self.left,
                "tasksPassed": self.passed, "tasksFailed": self.failed, "attempts": self.attempts,
                "errorCount": self.errors, "retryCount": self.retries,
                "successRate": wire_rate(self.passed, self.failed), "successText": self.success_text}


def _values(n: Numbers) -> tuple[int, ...]:
    return tuple(getattr(n, f.name) for f in dataclasses.fields(n))


def row(progress: TaskProgress, in_scope: bool) -> Numbers:
    """What one row of the task table adds to its execution's numbers."""
    status, by_engine = progress.status, not progress.override_by
    done = status is TaskStatus.COMPLETED
    made = progress.attempts_made
    return Numbers(done=int(done), total=int(done or in_scope), left=int(in_scope and status in OPEN),
                   passed=int(done and by_engine), failed=int(status is TaskStatus.FAILED and by_engine),
                   attempts=made, errors=progress.attempts_failed, retries=max(made - 1, 0))


def count(table: Mapping[str, TaskProgress], scope: Collection[str]) -> Numbers:
    """The numbers of a task table and a scope: the sum of every row's (a scope id without a row is pending)."""
    total = Numbers()
    for task_id, progress in table.items():
        total += row(progress, task_id in scope)
    missing = sum(1 for task_id in scope if task_id not in table)
    return total + Numbers(total=missing, left=missing)


def of(execution: Execution) -> Numbers:
    """The numbers the store keeps on an execution's record."""
    return Numbers(**{name: int(getattr(execution, field)) for name, field in RECORD.items()})


def stamp(execution: Execution, numbers: Numbers) -> Execution:
    """The record with these numbers (for a report made before the store records what it reports)."""
    fields: dict[str, Any] = numbers.fields()
    return dataclasses.replace(execution, **fields)


def total_of(executions: Iterable[Execution]) -> Numbers:
    """The numbers of several executions together (their success rate is over all their tasks)."""
    total = Numbers()
    for execution in executions:
        total += of(execution)
    return total


def scope(tasks: TaskList, stop_point: str | None, only: str | None) -> list[str]:
    """The open tasks an execution covers, in run order: `only`'s leaves, or what runs up to the stop point."""
    if only:
        return [t.id for t in tasks.leaves(under=only) if not t.done]
    return tasks.run_order(stop_point)
