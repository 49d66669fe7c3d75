"""`clarity worker`: RQ workers on Clarity's queues.

A step can hold a worker for as long as an agent runs (minutes), and a `/clarity stop` must not wait
behind it. So the default role `all` supervises two worker processes: one that only takes intake
jobs (webhook deliveries: fast), and one that takes steps and, when idle, intake too. Run more
`--role steps` processes (here or on other hosts sharing Redis) to run more executions at once.
Every steps worker also runs the reconciler (jobs.recovery): once at start, then in a thread; and
beside it the delivery reconciler (jobs.redelivery), which asks GitHub for the deliveries Clarity missed.

A Redis outage does not end a worker: RQ retries Redis only while it waits for a job and quits when
it loses it anywhere else (above all while it watches a work horse run a step, most of a steps
worker's life), leaving the horse, in a process group of its own, to run on unwatched. So the worker
keeps watching its horse through an outage (`SteadyWorker`), and when RQ's loop quits anyway a fresh
worker starts in the same process once Redis answers again. Nothing has to restart the process, and
nothing does here: compose.yaml sets no restart policy, and a Procfile runner may stop everything.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import httpx
import redis
from githubkit.exception import GitHubException
from rq import Queue, Worker
from rq.executions import Execution as RQExecution
from rq.job import Job

from clarity import artifacts
from clarity.app_credentials import load_settings
from clarity.settings import GITHUB_API_VERSION, Settings
from github_app.client import describe_error, preload_models
from jobs import chaining, recovery, redelivery, sandboxes
from jobs.context import Engine, engine

log = logging.getLogger(__name__)
ROLES = ("all", "intake", "steps")
WORKER_TTL = 60
REDIS_LOST = (redis.ConnectionError, redis.TimeoutError)
REDIS_WAIT_MAX = 2.0  # seconds between two looks at a Redis that does not answer


def work(role: str = "all", burst: bool = False) -> int:
    """Run workers for `role`; returns an exit status."""
    if role == "all":
        load_settings()  # fail here, once, with the message naming every bad variable
        return supervise(("intake", "steps"), burst)
    eng = engine()
    preload(eng.settings.github_api_version)
    chaining.install()  # before any fork: a work horse ends its chain of steps on the worker's word
    queues = [eng.intake_queue] if role == "intake" else [eng.intake_queue, *eng.steps_queues]
    stop = threading.Event()
    if role == "steps":
        # Sandboxes and executions of workers that died go before this one takes new work; the
        # reconciler then runs every lease_ttl / 2.
        if removed := sandboxes.sweep(eng.settings):
            log.warning("removed %d sandbox container(s) left by dead workers", len(removed))
        recovery.reconcile_logged(eng)
        prune_artifacts(eng.settings)
        learn_identity(eng)
        if not burst:
            recovery.run_periodically(eng.settings, stop)
            redelivery.run_periodically(eng.settings, stop)  # GitHub never redelivers a failed delivery itself
    try:
        work_through_outages(queues, role, burst, eng.settings.log_level)
    finally:
        stop.set()
    return 0


class SteadyWorker(Worker):
    """RQ's worker, watching its work horse through a Redis outage instead of quitting on it."""

    stopping = False  # asked to stop (SIGTERM, SIGINT), as opposed to quitting on a lost Redis
    max_connection_wait_time = REDIS_WAIT_MAX  # RQ's retries while idle back off up to 60 s otherwise

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown, as RQ does it, remembered."""
        self.stopping = True
        if self.horse_pid:  # a horse chaining steps (jobs.chaining) ends after the step in hand
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, chaining.WIND_DOWN)
        super().request_stop(signum, frame)

    def unsubscribe(self) -> None:
        """RQ's, without a minute's wait at every stop.

        RQ stops its pub/sub thread after unsubscribing, and redis-py's `stop()` now waits for the
        thread, which, once the unsubscription is read, waits up to RQ's `sleep_time` (60 s) for a new
        subscription before it looks at its flag again. Lowering the flag first (without waiting) makes
        the unsubscription's own reply the thread's last message.
        """
        if self.pubsub_thread:
            self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
            self.pubsub_thread.stop(timeout=0)
            self.pubsub.unsubscribe()
            self.pubsub_thread.join(timeout=2)
            self.pubsub.close()

    def maintain_heartbeats(self, job: Job, execution: RQExecution) -> None:
        """RQ's heartbeats while a horse runs; a Redis outage skips them (RQ would quit the worker)."""
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_LOST as exc:
            # The step goes on or abandons on its own (jobs.heartbeat); the next beat tries again.
            log.warning("worker %s: Redis unreachable while job %s runs: %s", self.name, job.id, exc)


def work_through_outages(queues: list[Queue], role: str, burst: bool, level: str) -> None:
    """RQ's work loop, and a fresh worker whenever it quits on its own (Redis was lost), until asked to stop."""
    connection = queues[0].connection
    while True:
        # A heartbeat every ~45 s even when idle, so /readyz and recovery see a live worker quickly.
        worker = SteadyWorker(queues, connection=connection, worker_ttl=WORKER_TTL)
        log.info("worker %s (%s) listening on %s", worker.name, role, ", ".join(q.name for q in queues))
        try:
            # The scheduler (one per queue across workers: RQ locks it) enqueues the steps put off for later
            # (jobs.scheduler.enqueue_step_later: GitHub asked us to slow down).
            worker.work(burst=burst, logging_level=level, with_scheduler=True)
        except REDIS_LOST as exc:  # RQ's teardown could not record the worker's end
            log.warning("worker %s: Redis lost as it stopped: %s", worker.name, exc)
        if burst or worker.stopping:
            return
        log.error("worker %s quit on its own (Redis lost?); a new worker takes over once Redis answers",
                  worker.name)
        if worker.horse_pid:  # quit while its horse ran: let the step end before taking more work
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.horse_pid, 0)
        if not wait_for_redis(connection):
            return
        with contextlib.suppress(redis.RedisError):
            worker.register_death()  # so readiness and estimates stop counting it


def wait_for_redis(connection: redis.Redis) -> bool:
    """Block until Redis answers (True) or the process is asked to stop (False)."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda _signum, _frame: stopping.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    pause = 0.5
    try:
        while not stopping.wait(pause):
            try:
                connection.ping()
                return True
            except REDIS_LOST as exc:
                log.warning("Redis unreachable: %s; next try in %.0f s", exc, min(pause * 2, REDIS_WAIT_MAX))
            pause = min(pause * 2, REDIS_WAIT_MAX)
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def preload(api_version: str = GITHUB_API_VERSION) -> None:
    """Import now what jobs would import in every work horse (RQ forks one per job; it dies with it).

    The job modules and githubkit's lazily loaded models cost a step ~0.3 s each time otherwise
    (bench/overhead_bench.py).
    """
    importlib.import_module("jobs.intake")
    importlib.import_module("jobs.step")
    preload_models(api_version)


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


def learn_identity(eng: Engine) -> str:
    """Ask GitHub who the app's bot is (kept an hour for every process: the webhook endpoint never asks)."""
    try:
        login = eng.identity.bot_login()
    except (GitHubException, httpx.HTTPError, ValueError, redis.RedisError) as exc:  # asked again when needed
        log.warning("could not learn the app's bot login from GitHub: %s", describe_error(exc))
        return ""
    log.info("acting on GitHub as %s", login)
    return login


def supervise(roles: tuple[str, ...], burst: bool) -> int:
    """Start one child per role and stop them all together (TERM/INT are passed on)."""
    argv = [sys.executable, "-m", "cli", "worker"]
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
