"""`clarity worker`: RQ workers on Clarity's queues.

A step can hold a worker for as long as an agent runs (minutes), and a `/clarity stop` must not wait
behind it. So the default role `all` supervises two worker processes: one that only takes intake
jobs (webhook deliveries: fast), and one that takes steps and, when idle, intake too. Run more
`--role steps` processes (here or on other hosts sharing Redis) to run more executions at once.
Every steps worker also runs the reconciler (jobs.recovery): once at start, then in a thread.
"""

from __future__ import annotations

import importlib
import logging
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

from rq import Worker

from clarity import artifacts
from clarity.app_credentials import load_settings
from clarity.settings import Settings
from github_app.client import preload_models
from jobs import recovery, sandboxes
from jobs.context import engine

log = logging.getLogger(__name__)
ROLES = ("all", "intake", "steps")
WORKER_TTL = 60


def work(role: str = "all", burst: bool = False) -> int:
    """Run workers for `role`; returns an exit status."""
    if role == "all":
        load_settings()  # fail here, once, with the message naming every bad variable
        return supervise(("intake", "steps"), burst)
    eng = engine()
    preload()
    queues = [eng.intake_queue] if role == "intake" else [eng.intake_queue, *eng.steps_queues]
    # A heartbeat every ~45 s even when idle, so /readyz and recovery see a live worker quickly.
    worker = Worker(queues, connection=eng.intake_queue.connection, worker_ttl=WORKER_TTL)
    log.info("worker %s (%s) listening on %s", worker.name, role, ", ".join(q.name for q in queues))
    stop = threading.Event()
    if role == "steps":
        # Sandboxes and executions of workers that died go before this one takes new work; the
        # reconciler then runs every lease_ttl / 2.
        if removed := sandboxes.sweep(eng.settings):
            log.warning("removed %d sandbox container(s) left by dead workers", len(removed))
        recovery.reconcile_logged(eng)
        prune_artifacts(eng.settings)
        if not burst:
            recovery.run_periodically(eng.settings, stop)
    try:
        worker.work(burst=burst, logging_level=eng.settings.log_level)
    finally:
        stop.set()
    return 0


def preload() -> None:
    """Import now what jobs would import in every work horse (RQ forks one per job; it dies with it).

    The job modules and githubkit's lazily loaded models cost a step ~0.3 s each time otherwise
    (bench/overhead_bench.py).
    """
    importlib.import_module("jobs.intake")
    importlib.import_module("jobs.step")
    preload_models()


def prune_artifacts(settings: Settings) -> list[str]:
    """Delete the artifacts of executions older than the retention (at a steps worker's start)."""
    try:
        pruned = artifacts.prune(settings.artifacts_dir, settings.artifact_retention_days)
    except OSError as exc:  # a full or read-only disk must not keep the worker from working
        log.warning("could not prune old artifacts: %s", exc)
        return []
    if pruned:
        log.info("removed the artifacts of %d execution(s) older than %g days", len(pruned),
                 settings.artifact_retention_days)
    return pruned


def supervise(roles: tuple[str, ...], burst: bool) -> int:
    """Start one child per role and stop them all together (TERM/INT are passed on)."""
    argv = [sys.executable, "-m", "clarity.cli", "worker"]
    children = [subprocess.Popen([*argv, "--role", role, *(["--burst"] if burst else [])]) for role in roles]

    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while any(child.poll() is None for child in children):
        if not burst and not stopping and any(child.poll() is not None for child in children):
            # One role died on its own: stop the other too, so a process manager restarts the pair.
            log.error("a worker child exited (%s); stopping the others",
                      [child.returncode for child in children])
            forward(signal.SIGTERM, None)
            status = 1
        time.sleep(0.2)
    return status or max((child.returncode or 0) for child in children)
