"""Who runs when: one execution per repository (a lease with heartbeat), a fair turn for each customer.

An execution whose repository is busy waits in that repository's line (`queued`). One that may run
is put in the ready set (clarity.ready) and a slot job goes on the RQ queue of its priority; workers
drain the queues from priority 10 down to 1, and each slot picks, when it starts, the execution to
step: highest priority, then the customer served longest ago, then the longest wait. One task per
step, then the execution is ready again, so customers share workers round-robin.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from rq import Worker

from clarity.actors import shown

# The arithmetic of estimates lives in clarity.eta, so the dashboard can share it.
from clarity.eta import DEFAULT_TASK_SECONDS, eta_text, remaining_tasks, task_seconds, unknown  # noqa: F401
from clarity.models import Execution
from clarity.ready import Ready, schedule
from clarity.status import ExecutionStatus
from clarity.store import NotFound
from jobs import context
from jobs.context import Engine

log = logging.getLogger(__name__)

STEP_JOB = "jobs.step.run_slot"
WAKE_JOB = "jobs.scheduler.wake"
# The repo lease lives `settings.lease_ttl` seconds: a step renews it while it works, a lost worker's
# lease simply expires and jobs.recovery picks the execution up again.


def submit(engine: Engine, execution: Execution, actor: str) -> Execution:
    """Start a queued execution now if its repository is free, else keep it waiting in line."""
    if engine.store.acquire_lease(execution.repo, execution.id, engine.settings.lease_ttl):
        execution = engine.store.transition(execution.id, ExecutionStatus.INITIALIZING, actor, "started")
        enqueue_step(engine, execution.id)
        return execution
    if execution.status is not ExecutionStatus.QUEUED:
        execution = engine.store.transition(execution.id, ExecutionStatus.QUEUED, actor, "repository busy")
    if execution.id not in engine.store.waiting(execution.repo):
        engine.store.enqueue_waiting(execution.repo, execution.id)
    return execution


def enqueue_step(engine: Engine, execution_id: str) -> None:
    """Make the execution ready for its next step and put a slot for it on its priority's queue."""
    execution = engine.store.get(execution_id)
    engine.store.ready.add(execution.id, execution.priority, execution.installation_id)
    enqueue_slot(engine, execution.priority)


def enqueue_step_later(engine: Engine, execution_id: str, seconds: float) -> None:
    """Make the execution ready for its next step in `seconds` (GitHub asked us to slow down).

    It keeps its repository meanwhile: its lease lasts the wait and a lease time more, so no other
    execution takes the repository and recovery sees it held. RQ's scheduler (`clarity worker` runs
    it) enqueues `wake` when the time comes; were that lost, the lease would lapse and recovery would
    pick the execution up, as it does an execution whose worker was lost.
    """
    execution = engine.store.get(execution_id)
    engine.store.acquire_lease(execution.repo, execution.id, seconds + engine.settings.lease_ttl + 1)
    # RQ keeps a scheduled time in whole seconds, truncated, and fires once the current whole second
    # reaches it: up to 1 s early. The next whole second after the wait is never early.
    due = datetime.fromtimestamp(math.floor(time.time() + seconds) + 1, tz=UTC)
    engine.intake_queue.enqueue_at(due, WAKE_JOB, execution.id,
                                   description=f"wake {execution.id} after {seconds:.0f} s", result_ttl=3600,
                                   failure_ttl=7 * 24 * 3600)


def wake(execution_id: str) -> str:
    """RQ job: the wait is over; the execution is ready for its next step again (if it still runs)."""
    eng = context.engine()
    try:
        execution = eng.store.get(execution_id)
    except NotFound:
        return f"{execution_id}: forgotten meanwhile"
    if execution.status not in (ExecutionStatus.INITIALIZING, ExecutionStatus.AUTONOMOUS):
        return f"{execution_id}: nothing to do, it is {execution.status}"
    enqueue_step(eng, execution_id)
    return f"{execution_id}: ready again"


def enqueue_slot(engine: Engine, priority: int) -> None:
    """One RQ job that will step whichever ready execution is next when a worker takes it."""
    timeout = int(engine.settings.task_timeout * (engine.settings.retries + 2) + 600)
    engine.queue_for(priority).enqueue(STEP_JOB, job_timeout=timeout, description=f"step (priority {priority})",
                                       result_ttl=3600, failure_ttl=7 * 24 * 3600)


def slots_queued(engine: Engine) -> int:
    """Slot jobs waiting on every steps queue."""
    return sum(queue.count for queue in engine.steps_queues)


def reprioritise(engine: Engine, execution: Execution, priority: int, actor: str) -> Execution:
    """Give an execution another priority (a manager's call); a waiting one moves in line at once."""
    if not 1 <= priority <= 10:
        raise ValueError(f"priority must be a whole number from 1 to 10, got {priority}")
    previous = execution.priority
    execution = engine.store.update(execution.id, priority=priority)
    if engine.store.ready.reprioritise(execution.id, priority) and priority > previous:
        enqueue_slot(engine, priority)  # a slot on the faster queue; the old one finds nobody or another
    engine.store.log(execution.id, f"priority {previous} → {priority} by {shown(actor)}")
    engine.store.audit_event(execution, "execution.reprioritised", actor, {"from": previous, "to": priority})
    return execution


def release(engine: Engine, execution: Execution) -> None:
    """Free the repository and start the next execution waiting for it, if any."""
    engine.store.ready.remove(execution.id)
    engine.store.release_lease(execution.repo, execution.id)
    while (next_id := engine.store.pop_waiting(execution.repo)) is not None:
        waiting = engine.store.get(next_id)
        if waiting.status is ExecutionStatus.QUEUED:
            submit(engine, waiting, "scheduler")
            return


def position(engine: Engine, execution: Execution) -> int | None:
    """1-based place of a queued execution in its repository's line."""
    line = engine.store.waiting(execution.repo)
    return line.index(execution.id) + 1 if execution.id in line else None


# -- estimates ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Estimate:
    """When an execution should start its next step and finish, in seconds from now (None: unknown)."""

    starts_in: float | None
    finishes_in: float | None
    task_seconds: float  # the mean task duration the estimate uses


def estimate(engine: Engine, execution: Execution) -> Estimate:
    """Start and finish estimates from measured task durations, the repo's line and the ready set."""
    store = engine.store
    per_task = task_seconds(store.durations(execution.repo) or store.durations())
    status = execution.status
    if status.is_settled:
        return Estimate(None, None, per_task)
    if status is ExecutionStatus.QUEUED:
        ahead = [store.lease_holder(execution.repo)] + store.waiting(execution.repo)
        ahead = ahead[:ahead.index(execution.id)] if execution.id in ahead else ahead
        wait = sum(remaining_tasks(found) for found in _still_known(engine, ahead)) * per_task
        return Estimate(wait, None if unknown(execution) else wait + remaining_tasks(execution) * per_task, per_task)
    until_worker = ready_wait(engine, execution.id, per_task)
    # No end before the list is read: a fresh execution's 0/0 says nothing of how long it will take.
    finishes = None if unknown(execution) else (until_worker or 0.0) + remaining_tasks(execution) * per_task
    return Estimate(until_worker, finishes, per_task)


def _still_known(engine: Engine, execution_ids: list[str | None]) -> list[Execution]:
    """The executions behind these ids; one forgotten with its installation may still hold the lease."""
    found = []
    for execution_id in filter(None, execution_ids):
        try:
            found.append(engine.store.get(execution_id))
        except NotFound:
            continue
    return found


def ready_order(engine: Engine) -> list[Ready]:
    """Executions waiting for a worker, in the order workers will take them."""
    return schedule(engine.store.ready.entries(), engine.store.ready.served())


def ready_wait(engine: Engine, execution_id: str, per_task: float) -> float:
    """Seconds until a worker takes this execution's next step (0 when it is being worked on)."""
    order = [r.execution_id for r in ready_order(engine)]
    if execution_id not in order:
        return 0.0
    workers = capacity(engine)
    return (order.index(execution_id) // workers) * per_task


def capacity(engine: Engine) -> int:
    """Workers taking steps now (at least one, so estimates stay finite while none is up)."""
    return max(len(Worker.all(queue=engine.steps_queues[0])), 1)
