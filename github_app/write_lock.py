"""One mutating request at a time per installation, across every process of a deployment.

GitHub's REST guidance against secondary rate limits: "make requests for a single user or client ID
serially; do not make requests for a single user or client ID concurrently". Reads may overlap; every
POST, PATCH, PUT or DELETE of an installation client holds this lock for its round trip
(github_app.client). A step sends its reports from several threads (jobs.publish) and several
workers may write for one customer at once: they take turns.

The lock is a Redis key (`SET NX PX` with a token, compare-and-delete on release) taken under a lock
of the process (threads of one process queue on that, not on Redis). When Redis fails, the process
lock alone is held, said once in the logs, and Redis is asked again a little later: serial writes
are a courtesy to GitHub, never a reason to stop writing. A lock not had within `wait` seconds (its
holder is stuck) is given up on the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Iterator

import redis

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
REDIS_PAUSE = 30.0  # after a Redis failure, the process lock alone for this long
_POLL_FIRST, _POLL_MAX = 0.002, 0.05  # seconds between two tries for a lock another process holds


class InstallationWriteLock:
    """Serialises an installation's writes (see the module docstring).

    `ttl`: how long a lock outlives a holder that died holding it, or could not release it because Redis went
    away (longer than almost every request; a slower one only lets another writer in beside it: the lock is
    GitHub's courtesy, not a guard of our data); `wait`: how long a writer waits for it at most. Both short:
    with a minute, a step lost during a Redis outage froze its installation's every write, commands' 👀 and
    replies included, for a minute (tests/test_redis_restart.py).
    """

    def __init__(self, client: redis.Redis | None, namespace: str, ttl: float = 5.0, wait: float = 5.0) -> None:
        self.redis = client
        self.prefix = f"{namespace}:github:writes:"
        self.ttl, self.wait = ttl, wait
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self._redis_down_until = 0.0
        _instances.add(self)

    @contextlib.contextmanager
    def hold(self, installation_id: int) -> Iterator[None]:
        """Hold the installation's write lock for the body of the `with`."""
        with self._local(installation_id):
            token = self._acquire(installation_id)
            try:
                yield
            finally:
                if token is not None:
                    self._release(installation_id, token)

    def _local(self, installation_id: int) -> threading.Lock:
        """The process's lock for the installation."""
        with self._guard:
            return self._locks.setdefault(installation_id, threading.Lock())

    def _forget_locks(self) -> None:
        """In a forked child (an RQ work horse): new process locks, as one its parent's threads held at the
        fork would never be released in it."""
        self._guard, self._locks = threading.Lock(), {}

    def _acquire(self, installation_id: int) -> str | None:
        """The token of the Redis lock once taken; None when Redis fails or the wait runs out."""
        if self.redis is None or time.monotonic() < self._redis_down_until:
            return None
        token, key = uuid.uuid4().hex, f"{self.prefix}{installation_id}"
        deadline, pause = time.monotonic() + self.wait, _POLL_FIRST
        try:
            while not self.redis.set(key, token, nx=True, px=int(self.ttl * 1000)):
                if time.monotonic() > deadline:
                    log.warning("installation %s: write lock still held after %.0f s; writing anyway",
                                installation_id, self.wait)
                    return None
                time.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
        except redis.RedisError as exc:
            self._redis_down(exc)
            return None
        return token

    def _release(self, installation_id: int, token: str) -> None:
        assert self.redis is not None
        try:
            self.redis.eval(_RELEASE, 1, f"{self.prefix}{installation_id}", token)
        except redis.RedisError as exc:  # the key expires on its own
            self._redis_down(exc)

    def _redis_down(self, exc: redis.RedisError) -> None:
        if time.monotonic() >= self._redis_down_until:
            log.warning("write lock: Redis unavailable (%s); serialising writes within this process only for "
                        "%.0f s", type(exc).__name__, REDIS_PAUSE)
        self._redis_down_until = time.monotonic() + REDIS_PAUSE


_instances: weakref.WeakSet[InstallationWriteLock] = weakref.WeakSet()


def _after_fork() -> None:
    for lock in list(_instances):
        lock._forget_locks()


os.register_at_fork(after_in_child=_after_fork)
