"""Prometheus metrics: every definition lives here; the rest of the code calls the one-line recorders.

Counters and histograms are recorded where things happen (the webhook view, the step, the sandbox);
queue depths and executions by status are read from Redis when /metrics is scraped.

Several processes (gunicorn workers, RQ workers and the work horse RQ forks for every job): set
PROMETHEUS_MULTIPROC_DIR to an empty directory, the same for the web and the worker processes of a
host, before they start (prometheus_client reads it at import). Each process then keeps its values
in files there and /metrics merges them. Without it, /metrics shows the process that answered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from rq import Queue, get_current_job

from clarity.status import ExecutionStatus

if TYPE_CHECKING:
    from clarity.store import Store

MULTIPROCESS = getattr(prometheus_values.ValueClass, "_multiprocess", False)


def _process_identity() -> str:
    """The file name part of this process's values in PROMETHEUS_MULTIPROC_DIR.

    RQ forks a new work horse for every job, so naming files by pid would leave a pair of files per
    job and make every scrape slower. A worker runs one horse at a time, so its horses share files
    named after the worker ("<worker pid>h"), distinct from any running process's; everything else
    (gunicorn workers, the worker parents) uses its pid. Decided once per process.
    """
    pid = os.getpid()
    known = _identity.get(pid)
    if known is None:
        known = f"{os.getppid()}h" if get_current_job() is not None else str(pid)
        _identity.clear()
        _identity[pid] = known
    return known


_identity: dict[int, str] = {}
if MULTIPROCESS:
    prometheus_values.ValueClass = prometheus_values.MultiProcessValue(process_identifier=_process_identity)

# -- definitions ------------------------------------------------------------------------------------
WEBHOOK_SECONDS = Histogram(
    "clarity_webhook_duration_seconds", "Time to answer POST /webhooks (verify, dedupe, queue).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
DELIVERIES = Counter(
    "clarity_webhook_deliveries", "Webhook deliveries by event and result "
    "(accepted, duplicate, bad_signature, too_large, malformed, ignored, ping, unavailable).",
    ["event", "result"])
TASK_SECONDS = Histogram(
    "clarity_task_duration_seconds", "Wall-clock time of a task over all its attempts, by tool and result.",
    ["tool", "result"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200))
TASK_ATTEMPTS = Counter("clarity_task_attempts", "Agent attempts made by finished tasks, by tool.", ["tool"])
TOOL_TASKS = Counter("clarity_tool_tasks", "Finished tasks by tool and result (success, failure).",
                     ["tool", "result"])
SANDBOX_KILLS = Counter("clarity_sandbox_kills", "Sandboxed runs killed, by reason "
                        "(timeout, cancelled, cpu, memory, pids, file_size, signal:NAME).", ["reason"])

_REASON = re.compile(r"[a-z_]{1,20}(?::[A-Z0-9]{1,12})?")


# -- recorders (one line at the call site) ----------------------------------------------------------
def webhook_delivery(event: str, result: str, seconds: float) -> None:
    """One answered delivery; `event` must come from a bounded set (the caller clamps it)."""
    DELIVERIES.labels(event, result).inc()
    WEBHOOK_SECONDS.observe(seconds)


def task_finished(tool: str, passed: bool, seconds: float, attempts: int) -> None:
    """A task ran to a result (passed its checks, or ran out of attempts)."""
    result = "success" if passed else "failure"
    TASK_SECONDS.labels(tool, result).observe(seconds)
    TASK_ATTEMPTS.labels(tool).inc(attempts)
    TOOL_TASKS.labels(tool, result).inc()


def sandbox_killed(reason: str) -> None:
    """The sandbox killed a run (or saw it killed by a limit); odd reasons count as "other"."""
    SANDBOX_KILLS.labels(reason if _REASON.fullmatch(reason) else "other").inc()


# -- read at scrape time ----------------------------------------------------------------------------
class QueueCollector:
    """Jobs waiting in every RQ queue of the deployment (`<namespace>:...`), with `:p<N>` as priority."""

    def __init__(self, connection: redis.Redis, namespace: str, always: Iterable[str] = ()) -> None:
        self.connection = connection
        self.prefix = f"{namespace}:"
        self.always = tuple(always)

    def queue_names(self) -> list[str]:
        """The deployment's queues: those RQ knows (it records every queue it enqueued on) and `always`."""
        known = {raw.decode() if isinstance(raw, bytes) else str(raw)
                 for raw in self.connection.smembers(Queue.redis_queues_keys)}
        names = {key.removeprefix(Queue.redis_queue_namespace_prefix) for key in known}
        return sorted({n for n in names if n.startswith(self.prefix)} | set(self.always))

    def collect(self) -> Iterator[Metric]:
        """`clarity_queue_jobs{queue, priority}`."""
        names = self.queue_names()
        pipe = self.connection.pipeline(transaction=False)
        for name in names:
            pipe.llen(Queue.redis_queue_namespace_prefix + name)
        family = GaugeMetricFamily("clarity_queue_jobs", "Jobs waiting in each RQ queue.",
                                   labels=["queue", "priority"])
        for name, count in zip(names, pipe.execute(), strict=True):
            match = re.search(r":p(\d+)$", name)
            family.add_metric([name, match.group(1) if match else ""], float(count))
        yield family


class ExecutionCollector:
    """Executions by status, counted from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """`clarity_executions{status}`, every status present (0 when none)."""
        counts = self.store.status_counts()
        family = GaugeMetricFamily("clarity_executions", "Executions by status.", labels=["status"])
        for status in ExecutionStatus:
            family.add_metric([str(status)], float(counts.get(str(status), 0)))
        yield family


class _Guarded:
    """Runs scrape-time collectors; if Redis does not answer they are left out and redis_up says 0."""

    def __init__(self, collectors: Iterable[Any]) -> None:
        self.collectors = tuple(collectors)

    def collect(self) -> Iterator[Metric]:
        families: list[Metric] = []
        up = 1.0
        try:
            for collector in self.collectors:
                families.extend(collector.collect())
        except redis.RedisError:
            families, up = [], 0.0
        yield from families
        yield GaugeMetricFamily("clarity_redis_up", "1 if Redis answered the scrape-time reads.", value=up)


class _Process:
    """This process's own metrics (the default registry), when each process is scraped alone."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(collectors: Iterable[Any] = ()) -> tuple[bytes, str]:
    """The /metrics body and its content type: recorded metrics (every process's when multi-process)
    plus the scrape-time collectors."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS:
        MultiProcessCollector(registry)
    else:
        registry.register(_Process())
    registry.register(_Guarded(collectors))
    return generate_latest(registry), CONTENT_TYPE_LATEST
