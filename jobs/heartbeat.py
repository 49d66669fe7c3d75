"""A step's heartbeat: hold the repository lease, watch for a stop, sample the step's CPU and memory.

The step takes its execution's lease over with a token of its own (clarity.leases) and renews it on
every beat. A lease that lapsed (Redis restarted and the key expired meanwhile, or the step stalled)
is taken again when nobody recovered the execution in between; a lease someone else holds now (the
reconciler gave the execution to another step) means this step must go: the heartbeat cancels it and
the step abandons its work, discarding what it did not commit and leaving the execution, unchanged,
to the lease's holder. On this host a step also holds its repository's workspace (an advisory file
lock), so a step that lost its lease has let go of the workspace before the next one syncs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import IO

import redis

from clarity import resources
from clarity.flags import Flag
from clarity.models import Execution
from jobs.context import Engine

log = logging.getLogger(__name__)
HEARTBEATS_PER_LEASE = 4  # at least every lease_ttl / 4 seconds: three beats may fail before it lapses
STOP_POLL = 0.5  # the lease and the stop flag are looked at this often (one round trip each)
WORKSPACE_WAIT = 60.0  # longest wait for the previous step on this host to let go of the workspace
REDIS_LOST = (redis.ConnectionError, redis.TimeoutError)


class LeaseLost(Exception):
    """The step no longer holds its execution's lease: it abandons its work to the lease's holder."""


class Hold:
    """A step's hold on its repository: its lease token, and whether the lease was lost."""

    def __init__(self, eng: Engine, ex: Execution, cancel: threading.Event) -> None:
        self.eng = eng
        self.ex = ex
        self.cancel = cancel
        self.token = uuid.uuid4().hex[:12]
        self.lost = threading.Event()
        self.reason = ""

    def keep(self) -> None:
        """Renew the lease (or take it again if it lapsed); cancel the step if someone else has it."""
        ex, ttl = self.ex, self.eng.settings.lease_ttl
        state = self.eng.store.keep_lease(ex.repo, ex.id, self.token, ttl)
        if state == "retaken":
            log.warning("execution %s: the lease of %s had lapsed (Redis restarted, or the step stalled); "
                        "taken again", ex.id, ex.repo)
        elif state == "lost":
            holder = self.eng.store.lease_holder(ex.repo)
            self.lose(f"another step of this execution holds the lease of {ex.repo}" if holder == ex.id else
                      f"execution {holder} holds the lease of {ex.repo}" if holder else
                      f"the lease of {ex.repo} lapsed and the reconciler took the execution over")

    def confirm(self) -> None:
        """Raise LeaseLost unless the step still holds its lease (asked before a push: others see that)."""
        if not self.lost.is_set():
            try:
                self.keep()
            except REDIS_LOST as exc:
                self.lose(f"Redis could not confirm the lease: {exc}")
        if self.lost.is_set():
            raise LeaseLost(self.reason)

    def lose(self, reason: str, cause: BaseException | None = None) -> None:
        """Note the loss and cancel the step (its agent and checks are killed)."""
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()
            log.warning("execution %s: step abandoned: %s", self.ex.id, reason, exc_info=cause)
        self.cancel.set()


@contextlib.contextmanager
def beating(eng: Engine, ex: Execution, cancel: threading.Event) -> Iterator[Hold]:
    """Hold the repo lease and workspace, watch for a stop and record the step's CPU and memory while
    the step works. Raises LeaseLost (at entry, or instead of what the step raised) when the lease is
    not, or no longer, this step's; Redis lost under the step counts as that too."""
    hold = Hold(eng, ex, cancel)
    ttl = eng.settings.lease_ttl
    if not eng.store.acquire_lease(ex.repo, ex.id, ttl, hold.token):
        raise LeaseLost(f"another step holds the lease of {ex.repo}")
    done = threading.Event()
    meter = resources.StepMeter(eng.store.r, eng.store.namespace, ex.id)  # the Resources page reads it

    def beat() -> None:
        while not done.wait(min(STOP_POLL, ttl / HEARTBEATS_PER_LEASE)):
            try:
                if not cancel.is_set() and eng.store.flag(ex.id, Flag.STOP):
                    cancel.set()
                if not hold.lost.is_set():
                    hold.keep()
                meter.tick()
            except redis.RedisError as exc:
                # Keep beating: one failed renewal must not end the heartbeat (the lease would lapse).
                log.warning("execution %s: heartbeat failed: %s", ex.id, exc)

    watcher = threading.Thread(target=beat, name=f"heartbeat-{ex.id}", daemon=True)
    watcher.start()
    workspace: IO[str] | None = None
    try:
        workspace = _hold_workspace(eng, ex, hold)
        yield hold
        if hold.lost.is_set():
            raise LeaseLost(hold.reason)
    except LeaseLost:
        raise
    except REDIS_LOST as exc:
        # The step cannot go on without its store, nor vouch for its lease: the reconciler takes over.
        hold.lose(f"Redis was lost: {exc}", exc)  # with where the step was
        raise LeaseLost(hold.reason) from exc
    except Exception as exc:
        if hold.lost.is_set():  # the cancel it caused, or whatever the step tripped over on its way out
            raise LeaseLost(hold.reason) from exc
        raise
    finally:
        done.set()
        watcher.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            meter.clear()
        with contextlib.suppress(redis.RedisError):
            if hold.lost.is_set():  # still ours if Redis was lost: let recovery have it at once
                eng.store.release_lease(ex.repo, ex.id, hold.token)
            else:  # the execution's again, for its next step (or for the release that ends it)
                eng.store.hand_back_lease(ex.repo, ex.id, hold.token)
        if workspace is not None:
            workspace.close()  # and with it the lock


def _hold_workspace(eng: Engine, ex: Execution, hold: Hold) -> IO[str]:
    """Lock the repository's workspace on this host (flock, gone with the process if it dies).

    Only a step that lost its lease can still hold it: wait until it has let go (its agent killed,
    its work discarded), then go on regardless after WORKSPACE_WAIT.
    """
    path = eng.settings.workspaces_dir / f"{ex.repo}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    deadline = time.monotonic() + WORKSPACE_WAIT
    waited = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if not waited:
                log.warning("execution %s: waiting for an earlier step on this host to let go of %s's workspace",
                            ex.id, ex.repo)
                waited = True
            if time.monotonic() > deadline:
                log.warning("execution %s: the workspace of %s is still locked after %.0f s; going on",
                            ex.id, ex.repo, WORKSPACE_WAIT)
                return handle
            if hold.lost.wait(0.1):
                handle.close()
                raise LeaseLost(hold.reason) from None
