"""The budget at work (DESIGN §15): a step's meter, usage reports, the pause, and the resume check.

The decisions are clarity.budget's; this module reads and writes the store around them. The time
budget counts active time: each step adds its duration to `Execution.time_used` when it ends, and
within a step the meter adds the step's own running time, so the running attempt's wall clock is
min(task timeout, time left) (jobs.attempts) and the sandbox kills it at the budget's deadline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from clarity import budget
from clarity.actors import shown
from clarity.budget import Budget, BudgetError, Usage
from clarity.models import Execution
from clarity.repoconfig import RepoConfig
from clarity.status import ExecutionStatus
from clarity.store import Store
from runner import exchange

log = logging.getLogger(__name__)
USAGE_ENV = "CLARITY_USAGE_FILE"
USAGE_FILE = "usage.json"  # in the attempt's exchange folder, where the agent may write its report
USAGE_MAX_BYTES = 65536
HINT = "raise it with `/clarity resume budget <limits>` (like `budget 1h $10`)"
_SETTLE_FIRST = (ExecutionStatus.INITIALIZING, ExecutionStatus.TASK_EXECUTING, ExecutionStatus.ERROR_SOLVING)


class Exhausted(Exception):
    """The execution's budget is used up; the message names the limit ("time budget of 5s used up")."""


def effective(config: RepoConfig, execution: Execution) -> Budget:
    """The execution's limits: its own (comment or API) over the repository's `budget:`."""
    try:
        own = budget.stored(execution.budget)
    except BudgetError:  # written by us in canonical form; a bad one must not take the limits away silently
        log.warning("execution %s: stored budget %r unreadable; the repository's applies", execution.id,
                    execution.budget)
        own = Budget()
    return own.over(config.budget)


def used(execution: Execution, extra_time: float = 0.0) -> Usage:
    """What the execution used, as its record says (plus time not yet added to it)."""
    return Usage(time=execution.time_used + extra_time, attempts=execution.attempts,
                 cost=execution.cost_usd, tokens=execution.tokens_used)


def over_budget(config: RepoConfig, execution: Execution) -> str | None:
    """Why the execution may not go on (for a resume), or None."""
    return budget.exhausted(effective(config, execution), used(execution))


class Meter:
    """One step's view of its execution's budget: check before an attempt, cap its clock, charge usage."""

    def __init__(self, store: Store, execution: Execution, limits: Budget, step_started: float) -> None:
        self.store = store
        self.id = execution.id
        self.limits = limits
        self.time_before = execution.time_used  # active time of the earlier steps
        self.step_started = step_started  # time.monotonic() when this step began

    def usage(self) -> Usage:
        """Usage now: the store's counters and the clock of this step."""
        return used(self.store.get(self.id), time.monotonic() - self.step_started)

    def time_left(self) -> float | None:
        """Seconds of active time left, None without a time limit."""
        if self.limits.time is None:
            return None
        return budget.time_left(self.limits, Usage(time=self.time_before + time.monotonic() - self.step_started))

    def check(self, out_of_time: bool = False) -> None:
        """Raise Exhausted (logged and audited) when no further attempt may start."""
        if self.limits.is_empty:
            return
        reason = budget.exhausted(self.limits, self.usage(), out_of_time)
        if reason is None:
            return
        announce(self.store, self.store.get(self.id), self.limits, reason)
        raise Exhausted(reason)

    def charge(self, folder: Path, task_id: str, reported: Usage | None = None) -> Usage:
        """Add one attempt's usage to the totals and return it: the agent's usage report (`usage.json` in
        `folder`), else what the tool itself reported (`reported`, see runner.agentreport).

        A broken report is logged (execution log too) and ignored: the tool's own account counts then.
        """
        spent = self._report(folder, task_id)
        if spent is None:
            spent = reported or Usage()
        if spent.tokens:
            self.store.incr(self.id, "tokens_used", spent.tokens)
        if spent.cost:
            self.store.add(self.id, "cost_usd", spent.cost)
        return Usage(cost=spent.cost, tokens=spent.tokens)

    def _report(self, folder: Path, task_id: str) -> Usage | None:
        """The usage report the run left in `folder`, or None (missing, or unreadable and logged)."""
        report = folder / USAGE_FILE
        try:
            try:  # the run wrote it: a regular file, no link followed, no FIFO waited on
                data, more = exchange.read_regular(report, USAGE_MAX_BYTES)
            except FileNotFoundError:
                return None
            if more:
                raise BudgetError(f"larger than {USAGE_MAX_BYTES} bytes")
            return budget.parse_usage(data.decode("utf-8", "replace"))
        except (OSError, BudgetError) as exc:
            log.warning("execution %s: task %s: usage report %s ignored: %s", self.id, task_id, report, exc)
            self.store.log(self.id, f"task {task_id}: the agent's usage report was ignored: {exc}", "warning",
                           task_id)
            return None


def announce(store: Store, execution: Execution, limits: Budget, reason: str) -> None:
    """Log and audit that the budget allows no further attempt: the execution is about to pause."""
    store.log(execution.id, f"budget: {reason}; the execution pauses", "warning")
    store.audit_event(execution, "budget.exhausted", "engine", {"reason": reason, "limits": limits.spec()})


class Clock:
    """A step's active time, added to `Execution.time_used` whenever it is charged.

    The step charges it as it settles the execution (so a resume right after sees the time) and
    when it ends (for steps that go on to the next task).
    """

    def __init__(self, store: Store, execution_id: str) -> None:
        self.store = store
        self.id = execution_id
        self.started = self.charged = time.monotonic()

    def charge(self) -> None:
        """Add the time since the last charge."""
        now = time.monotonic()
        self.store.add(self.id, "time_used", max(0.0, now - self.charged))
        self.charged = now


def settle(store: Store, execution: Execution) -> Execution:
    """Bring a working execution to `autonomous`, from where the state machine allows the pause."""
    if execution.status in _SETTLE_FIRST:
        return store.transition(execution.id, ExecutionStatus.AUTONOMOUS, "engine", "budget used up")
    return execution


def pause_reason(reason: str) -> str:
    """The pause's reason: the limit, then how to go on."""
    return f"{reason}; {HINT}"


def set_limits(store: Store, execution: Execution, spec: str, actor: str) -> Execution:
    """Lay a person's limits (canonical words, `/clarity resume budget 1h`) over the execution's own."""
    merged = budget.parse_spec(spec).over(budget.stored(execution.budget))
    updated = store.update(execution.id, budget=merged.spec())
    store.audit_event(updated, "budget.changed", actor, {"budget": merged.spec()})
    store.log(execution.id, f"budget set by {shown(actor)}: {merged.describe()}")
    return updated
