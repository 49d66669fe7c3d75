"""Who runs when: one execution per repository (a lease with heartbeat), the rest wait in line."""

from __future__ import annotations

import logging

from clarity.models import Execution
from clarity.status import ExecutionStatus
from jobs.context import Engine

log = logging.getLogger(__name__)

STEP_JOB = "jobs.step.run_step"
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
    """Queue the next step of an execution (one task per job, so workers rotate across customers)."""
    timeout = int(engine.settings.task_timeout * (engine.settings.retries + 2) + 600)
    engine.steps_queue.enqueue(STEP_JOB, execution_id, job_timeout=timeout,
                               description=f"step {execution_id}", result_ttl=3600, failure_ttl=7 * 24 * 3600)


def release(engine: Engine, execution: Execution) -> None:
    """Free the repository and start the next execution waiting for it, if any."""
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
