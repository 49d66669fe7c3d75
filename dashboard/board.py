"""The overview's model: the executions a viewer sees, grouped customer → repository, with counts and ETAs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from clarity import eta
from clarity.models import Execution
from clarity.status import ExecutionStatus
from clarity.store import Store
from dashboard.auth import Viewer

SHOWN = 200  # executions on the overview


@dataclass(frozen=True, slots=True)
class Row:
    """One execution on the overview, with what the page shows beside the record."""

    execution: Execution
    task_seconds: float  # the repository's typical task duration
    eta: str  # "about 12 min" left for a live execution, "" otherwise


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
    """What the overview says about an execution's remaining time."""
    if execution.status.is_active:
        return eta.eta_text(eta.remaining_tasks(execution) * per_task) + " left"
    return ""


def group(executions: list[Execution], per_task: dict[str, float]) -> tuple[Customer, ...]:
    """Customers by account name, each one's repositories by name, executions newest first."""
    by_customer: dict[int, dict[str, list[Row]]] = {}
    accounts: dict[int, str] = {}
    for ex in sorted(executions, key=lambda e: -e.created_at):
        seconds = per_task.get(ex.repo, eta.DEFAULT_TASK_SECONDS)
        accounts.setdefault(ex.installation_id, ex.account)
        by_customer.setdefault(ex.installation_id, {}).setdefault(ex.repo, []).append(
            Row(ex, seconds, time_left(ex, seconds)))
    return tuple(
        Customer(inst, accounts[inst], tuple(Repository(name, tuple(rows)) for name, rows in sorted(repos.items())))
        for inst, repos in sorted(by_customer.items(), key=lambda item: accounts[item[0]].lower()))


def build(store: Store, viewer: Viewer) -> Board:
    """The board for a viewer: only installations they see; counts over every execution they see."""
    executions = [e for e in store.executions(limit=SHOWN) if viewer.sees(e.installation_id)]
    repos = sorted({e.repo for e in executions if e.status.is_active})
    pipe = store.r.pipeline(transaction=False)
    for repo in repos:
        pipe.lrange(f"{store.namespace}:repo:{repo}:durations", 0, -1)
    per_task = {repo: eta.task_seconds([float(v) for v in found]) for repo, found in zip(repos, pipe.execute())}
    # An operator's counts cover every execution (one field read each); a scoped viewer's, those shown.
    counted = store.status_counts() if viewer.everything else Counter(str(e.status) for e in executions)
    counts = {str(s): int(counted.get(str(s), 0)) for s in ExecutionStatus}
    return Board(group(executions, per_task), counts, sum(counts.values()))
