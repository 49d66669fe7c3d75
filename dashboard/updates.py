"""The PRD's ProgressUpdate on the live feed: each event the hub passes on (and each one a catch-up
replays) gains `executionId`, `taskId`, `message`, `timestamp`, and from its execution's record
`progress` (percent), `estimatedCompletion` (ISO) and `metrics` (dashboard.prd.progress_update).

The hub shapes an event once per web process, not once per socket. The record is read at most once a
second per execution for log lines (an agent's output can be many), and again for every event that
moves a task or the execution, so those carry the numbers that moved with them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

import redis

from clarity.models import Execution
from clarity.store import NotFound, Store
from dashboard import prd

log = logging.getLogger(__name__)

FRESH_FOR = 1.0  # seconds a record read for one log line serves the next ones of the same execution
REMEMBERED = 1000  # executions whose record is kept between events

Estimate = Callable[[Execution], "float | None"]  # seconds until the execution finishes (None: unknown)


class ProgressUpdates:
    """Shapes live events as the PRD's ProgressUpdate (one per hub; thread-safe)."""

    def __init__(self, store: Store, estimate: Estimate, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.estimate = estimate
        self.clock = clock
        self._known: dict[str, tuple[float, Execution | None, float | None]] = {}
        self._lock = threading.Lock()

    def shape(self, raw: str) -> str:
        """The event with the PRD's fields; anything that is not an event, or cannot be read, as it came."""
        try:
            event = json.loads(raw)
            if not isinstance(event, dict) or "kind" not in event or "execution" not in event:
                return raw
            execution, finishes = self._record(str(event["execution"]), fresh=event["kind"] != "log")
            return json.dumps(prd.progress_update(event, execution, finishes, self.clock()), default=str)
        except (ValueError, TypeError, redis.RedisError) as exc:  # the hub must go on with the next event
            log.warning("live event sent without its progress fields: %s", exc)
            return raw
        except Exception:  # anything else too: the hub's one thread must outlive an event it cannot shape
            log.exception("live event sent without its progress fields")
            return raw

    def _record(self, execution_id: str, fresh: bool) -> tuple[Execution | None, float | None]:
        now = self.clock()
        with self._lock:
            known = self._known.get(execution_id)
        if known is not None and not fresh and now - known[0] < FRESH_FOR:
            return known[1], known[2]
        try:
            execution: Execution | None = self.store.get(execution_id)
        except NotFound:
            execution = None
        finishes = self.estimate(execution) if execution is not None and not execution.status.is_settled else None
        with self._lock:
            if len(self._known) >= REMEMBERED:
                self._known.clear()
            self._known[execution_id] = (now, execution, finishes)
        return execution, finishes
