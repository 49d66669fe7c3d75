"""The overview's model: the executions a viewer sees, grouped customer → repository, with counts and ETAs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from clarity import eta, numbers
from clarity.models import Execution
from clarity.numbers import Numbers
from clarity.status import ExecutionStatus
from clarity.store import Store
from dashboard.auth import Viewer

SHOWN = 200  # executions on the overview


@dataclass(frozen=True, slots=True)
class Row:
    """One execution on the overview, with what the page shows beside the record."""

    execution: Execution
    task_seconds: float  # the repository's typical task duration
    eta: str  # what is left, in words, whatever the status (time_left)
    numbers: Numbers  # progress, success rate, attempts (clarity.numbers): as every other surface shows them


@dataclass(frozen=True, slots=True)
class Repository:
    """One repository's executions, newest first."""

    name: str
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Customer:
    """One installation (customer) and its repositories, by name."""

    installation_id: int
    account: str
    repositories: tuple[Repository, ...]


@dataclass(frozen=True, slots=True)
class Board:
    """Everything the overview renders."""

    customers: tuple[Customer, ...]
    counts: dict[str, int]  # status → executions (every status, zeros included, in the state machine's order)
    total: int


def time_left(execution: Execution, per_task: float) -> str:
    """What the pages say about an execution's remaining time, in every status (never blank)."""
    status, left = execution.status, numbers.of(execution).left
    if status.is_active:
        if eta.unknown(execution):  # its list not read yet: 0/0 says nothing about time
            return eta.WAITING
        return eta.eta_text(eta.remaining_tasks(execution) * per_task) + " left"
    if status is ExecutionStatus.QUEUED:
        return f"{eta.eta_text(max(left, 1) * per_task)} once it starts" if left else "waiting to start"
    if status in (ExecutionStatus.PAUSED, ExecutionStatus.BLOCKED):
        return f"{eta.eta_text(left * per_task)} left when resumed" if left else "nothing left before the stop point"
    if status is ExecutionStatus.COMPLETED:
        return "none: done"
    return f"none: {status}"


def group(executions: list[Execution], per_task: dict[str, float]) -> tuple[Customer, ...]:
    """Customers by account name, each one's repositories by name, executions newest first."""
    by_customer: dict[int, dict[str, list[Row]]] = {}
    accounts: dict[int, str] = {}
    for ex in sorted(executions, key=lambda e: -e.created_at):
        seconds = per_task.get(ex.repo, eta.DEFAULT_TASK_SECONDS)
        accounts.setdefault(ex.installation_id, ex.account)
        by_customer.setdefault(ex.installation_id, {}).setdefault(ex.repo, []).append(
            Row(ex, seconds, time_left(ex, seconds), numbers.of(ex)))
    return tuple(
        Customer(inst, accounts[inst], tuple(Repository(name, tuple(rows)) for name, rows in sorted(repos.items())))
        for inst, repos in sorted(by_customer.items(), key=lambda item: accounts[item[0]].lower()))


def build(store: Store, viewer: Viewer) -> Board:
    """The board for a viewer: only installations they see; counts over every execution they see."""
    executions = [e for e in store.executions(limit=SHOWN) if viewer.sees(e.installation_id)]
    repos = sorted({e.repo for e in executions if not e.status.is_terminal})
    pipe = store.r.pipeline(transaction=False)
    for repo in repos:
        pipe.lrange(f"{store.namespace}:repo:{repo}:durations", 0, -1)
    per_task = {repo: eta.task_seconds([float(v) for v in found]) for repo, found in zip(repos, pipe.execute())}
    # An operator's counts cover every execution (one field read each); a scoped viewer's, those shown.
    counted = store.status_counts() if viewer.everything else Counter(str(e.status) for e in executions)
    counts = {str(s): int(counted.get(str(s), 0)) for s in ExecutionStatus}
    return Board(group(executions, per_task), counts, sum(counts.values()))
