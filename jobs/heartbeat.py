"""A step's heartbeat: renew the repository lease and watch for a stop while the step works."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import redis

from clarity.models import Execution
from jobs.context import Engine

log = logging.getLogger(__name__)
HEARTBEATS_PER_LEASE = 4  # the lease is renewed every lease_ttl / 4 seconds: three renewals may fail
STOP_POLL = 0.5


@contextlib.contextmanager
def beating(eng: Engine, ex: Execution, cancel: threading.Event) -> Iterator[None]:
    """Renew the repo lease and watch for a stop while the step works."""
    done = threading.Event()
    ttl = eng.settings.lease_ttl
    every = ttl / HEARTBEATS_PER_LEASE

    def beat() -> None:
        renewed = time.monotonic()
        while not done.wait(min(STOP_POLL, every)):
            try:
                if not cancel.is_set() and eng.store.flag(ex.id, "stop"):
                    cancel.set()
                if time.monotonic() - renewed >= every:
                    if not eng.store.renew_lease(ex.repo, ex.id, ttl):
                        log.warning("execution %s: the lease of %s is no longer ours", ex.id, ex.repo)
                    renewed = time.monotonic()
            except redis.RedisError as exc:
                # Keep beating: one failed renewal must not end the heartbeat (the lease would lapse).
                log.warning("execution %s: heartbeat failed: %s", ex.id, exc)

    watcher = threading.Thread(target=beat, name=f"heartbeat-{ex.id}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=5)
