"""The ready set: executions whose next step waits for a worker, and the fair choice among them.

Workers take anonymous "slot" jobs off the priority queues; a slot picks the execution to work on at
the moment it starts (not when it was queued), so the choice sees everyone who is waiting:
the highest priority first, then the customer (installation) served longest ago, then the execution
that has waited longest. After one task the execution goes back to the end of the set, so N customers
share M workers round-robin whatever the number of repositories each of them runs. Only when the set
is empty may a slot keep its execution for the next step (`keep`, jobs.chaining): nobody waits then.

Keys under the namespace: `ready` (zset: execution id → when it became ready), `ready:meta`
(hash: execution id → "priority installation"), `served` (hash: installation → turn last served),
`served:turn` (counter), `slot:<job id>` (the execution a running slot job picked).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

SLOT_TTL = 7 * 24 * 3600  # a slot record outlives any step; recovery reads it only while the job runs


@dataclass(frozen=True, slots=True)
class Ready:
    """One execution waiting for a worker."""

    execution_id: str
    priority: int
    installation_id: int
    since: float  # when it became ready


def order(entries: Iterable[Ready], served: Mapping[int, int]) -> list[Ready]:
    """Everyone waiting, in the order workers will take them (the first is the next pick).

    Higher priority first; within a priority the installation whose last turn is oldest (never
    served = first), then the longest wait. Ties in the order of `since` keep it stable.
    """
    return sorted(entries, key=lambda e: (-e.priority, served.get(e.installation_id, -1), e.since,
                                          e.execution_id))


def choose(entries: Iterable[Ready], served: Mapping[int, int]) -> Ready | None:
    """The next execution a free worker should take, or None when nobody waits."""
    ranked = order(entries, served)
    return ranked[0] if ranked else None


def schedule(entries: Iterable[Ready], served: Mapping[int, int]) -> list[Ready]:
    """The order in which workers would take everyone now waiting, if nobody new arrived.

    Each pick updates the picked installation's turn, which is what makes the order round-robin
    (`order` alone only knows the turns so far). Used for queue positions and estimated starts.
    """
    pending = list(entries)
    turns = dict(served)
    turn = max(turns.values(), default=0)
    out: list[Ready] = []
    while pending:
        nxt = choose(pending, turns)
        assert nxt is not None
        pending.remove(nxt)
        turn += 1
        turns[nxt.installation_id] = turn
        out.append(nxt)
    return out


class ReadySet:
    """The ready set in Redis; `take` is atomic, so two workers never pick the same execution."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.r: Any = client  # decodes replies to str
        self.key = f"{namespace}:ready"
        self.meta = f"{namespace}:ready:meta"
        self.served_key = f"{namespace}:served"
        self.turn_key = f"{namespace}:served:turn"
        self.slot_prefix = f"{namespace}:slot:"

    def add(self, execution_id: str, priority: int, installation_id: int) -> None:
        """Make an execution ready (again): it goes to the end of its customer's turn."""
        pipe = self.r.pipeline()
        pipe.zadd(self.key, {execution_id: time.time()})
        pipe.hset(self.meta, execution_id, f"{priority} {installation_id}")
        pipe.execute()

    def remove(self, execution_id: str) -> None:
        """Take an execution out (stopped or forgotten while it waited)."""
        pipe = self.r.pipeline()
        pipe.zrem(self.key, execution_id)
        pipe.hdel(self.meta, execution_id)
        pipe.execute()

    def reprioritise(self, execution_id: str, priority: int) -> bool:
        """Change the priority of a waiting execution; False if it is not waiting."""
        raw = self.r.hget(self.meta, execution_id)
        if raw is None:
            return False
        self.r.hset(self.meta, execution_id, f"{priority} {raw.split()[1]}")
        return True

    def entries(self) -> list[Ready]:
        """Everyone waiting, unordered."""
        return _entries(self.r.zrange(self.key, 0, -1, withscores=True), self.r.hgetall(self.meta))

    def served(self) -> dict[int, int]:
        """Each installation's last turn."""
        return {int(k): int(v) for k, v in self.r.hgetall(self.served_key).items()}

    def take(self, job_id: str) -> str | None:
        """Pick the next execution for the slot job `job_id` and record the pick (one transaction)."""
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key, self.meta, self.served_key)
                    picked = choose(_entries(pipe.zrange(self.key, 0, -1, withscores=True), pipe.hgetall(self.meta)),
                                    {int(k): int(v) for k, v in pipe.hgetall(self.served_key).items()})
                    if picked is None:
                        pipe.unwatch()
                        return None
                    turn = int(pipe.get(self.turn_key) or 0) + 1
                    pipe.multi()
                    pipe.zrem(self.key, picked.execution_id)
                    pipe.hdel(self.meta, picked.execution_id)
                    pipe.set(self.turn_key, turn)
                    pipe.hset(self.served_key, str(picked.installation_id), turn)
                    pipe.set(self.slot_prefix + job_id, picked.execution_id, ex=SLOT_TTL)
                    pipe.execute()
                    return picked.execution_id
                except redis.WatchError:
                    continue

    def keep(self, job_id: str, execution_id: str, installation_id: int) -> bool:
        """Let the slot job `job_id` step `execution_id` again at once, if nobody is waiting.

        True, with the turn recorded as a `take` would, only when the ready set is empty: an
        execution that waits for a worker is never passed over this way (one transaction).
        """
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key, self.turn_key)
                    if pipe.zcard(self.key):
                        pipe.unwatch()
                        return False
                    turn = int(pipe.get(self.turn_key) or 0) + 1
                    pipe.multi()
                    pipe.set(self.turn_key, turn)
                    pipe.hset(self.served_key, str(installation_id), turn)
                    pipe.set(self.slot_prefix + job_id, execution_id, ex=SLOT_TTL)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def slot(self, job_id: str) -> str | None:
        """The execution a slot job picked, while it runs."""
        return self.r.get(self.slot_prefix + job_id)

    def slots(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The picks of several slot jobs (job id → execution id), skipping jobs that picked nothing."""
        ids = list(job_ids)
        if not ids:
            return {}
        values = self.r.mget([self.slot_prefix + j for j in ids])
        return {j: v for j, v in zip(ids, values, strict=True) if v}

    def done(self, job_id: str) -> None:
        """The slot job finished: forget its pick."""
        self.r.delete(self.slot_prefix + job_id)


def _entries(members: list[tuple[str, float]], meta: Mapping[str, str]) -> list[Ready]:
    out = []
    for execution_id, since in members:
        priority, installation = (meta.get(execution_id) or "5 0").split()
        out.append(Ready(execution_id, int(priority), int(installation), float(since)))
    return out
