"""What decides whose step runs, and when: each repository's lease and waiting line, the ready set,
and the counts of steps lost or put off.

Keys: `repo:<repo>:lease` (one execution per repository at a time; its value and scripts are
clarity.leases), `exec:<id>:step` (the token of the step working on the execution), `repo:<repo>:waiting`
(executions queued behind the lease holder, first in line first), `exec:<id>:recoveries` (task id →
workers lost running it), `exec:<id>:deferrals` (steps put off in a row because GitHub asked us to slow
down; kept a day). The ready set has its own keys (clarity.ready).
"""

from __future__ import annotations

import redis

from clarity import leases
from clarity.models import Execution
from clarity.ready import ReadySet
from clarity.store.keyspace import DEFAULT_NAMESPACE, Keyspace, Pipeline

DEFERRALS_TTL = 24 * 3600


class Scheduling(Keyspace):
    """Repository leases, waiting lines, the ready set, and recovery and deferral counts."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(client, namespace)
        self.ready = ReadySet(client, namespace)

    def _lease_key(self, repo: str) -> str:
        return self._k("repo", repo, "lease")

    def _step_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "step")

    def _lease_keys(self, repo: str, execution_id: str) -> tuple[str, str]:
        return self._lease_key(repo), self._step_key(execution_id)

    def _waiting_key(self, repo: str) -> str:
        return self._k("repo", repo, "waiting")

    def _recoveries_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "recoveries")

    def _deferrals_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "deferrals")

    # The lease's value names the execution and the step holding it (clarity.leases): a step can take
    # its execution's lease over, never another step's.
    def acquire_lease(self, repo: str, execution_id: str, ttl: float, token: str = "") -> bool:
        """Take the repo's single-run lease for an execution, or for its step `token`.

        Free, or the execution's between steps: taken. This very step's: renewed. A step's of the
        execution, and no token given: renewed as it is. Another step's or execution's: False.
        """
        return bool(self.r.eval(leases.ACQUIRE, 2, *self._lease_keys(repo, execution_id), execution_id, token,
                                int(ttl * 1000)))

    def keep_lease(self, repo: str, execution_id: str, token: str, ttl: float) -> str:
        """A step's heartbeat, one round trip: "renewed" while it holds the lease, "retaken" if it had
        lapsed and nobody recovered the execution meanwhile, "lost" if it is someone else's now."""
        return str(self.r.eval(leases.KEEP, 2, *self._lease_keys(repo, execution_id),
                               leases.value(execution_id, token), token, int(ttl * 1000)))

    def take_free_lease(self, repo: str, execution_id: str, ttl: float) -> bool:
        """Recovery: take the lease only if nobody holds it; the step that held it can never take it again."""
        return bool(self.r.eval(leases.TAKE_FREE, 2, *self._lease_keys(repo, execution_id), execution_id,
                                int(ttl * 1000)))

    def hand_back_lease(self, repo: str, execution_id: str, token: str) -> bool:
        """The step `token` ended: the lease (same expiry) is its execution's again, for the next step."""
        return bool(self.r.eval(leases.HAND_BACK, 2, *self._lease_keys(repo, execution_id),
                                leases.value(execution_id, token), token, execution_id))

    def release_lease(self, repo: str, execution_id: str, token: str = "") -> bool:
        """Give up the lease if the execution holds it (itself or any step of it; only step `token`'s if given)."""
        return bool(self.r.eval(leases.RELEASE, 1, self._lease_key(repo), execution_id, token))

    def lease_holder(self, repo: str) -> str | None:
        """The execution id holding the repo's lease, if any (whichever step of it holds it)."""
        return leases.holder(self.r.get(self._lease_key(repo)))

    def lease_step(self, repo: str) -> str | None:
        """The token of the step holding the repo's lease ("" between steps), None if nobody holds it."""
        return leases.step(self.r.get(self._lease_key(repo)))

    def enqueue_waiting(self, repo: str, execution_id: str) -> int:
        """Put an execution in the repo's waiting line; returns its 1-based position."""
        return int(self.r.rpush(self._waiting_key(repo), execution_id))

    def pop_waiting(self, repo: str) -> str | None:
        """Take the next waiting execution of a repo."""
        return self.r.lpop(self._waiting_key(repo))

    def remove_waiting(self, repo: str, execution_id: str) -> None:
        """Take an execution out of the waiting line (it was stopped)."""
        self.r.lrem(self._waiting_key(repo), 0, execution_id)

    def waiting(self, repo: str) -> list[str]:
        """The repo's waiting line, first in line first."""
        return list(self.r.lrange(self._waiting_key(repo), 0, -1))

    def count_recovery(self, execution_id: str, task_id: str) -> int:
        """Count one more loss of the worker running this task; returns how many so far."""
        return int(self.r.hincrby(self._recoveries_key(execution_id), task_id, 1))

    def reset_recoveries(self, execution_id: str, task_id: str) -> None:
        """Forget the losses counted for a task (a person retries it)."""
        self.r.hdel(self._recoveries_key(execution_id), task_id)

    def count_deferral(self, execution_id: str) -> int:
        """Count one more step put off because GitHub asked us to slow down; returns how many in a row."""
        key = self._deferrals_key(execution_id)
        pipe = self.r.pipeline()
        pipe.incr(key)
        pipe.expire(key, DEFERRALS_TTL)
        return int(pipe.execute()[0])

    def reset_deferrals(self, execution_id: str) -> None:
        """A step went through: the next deferral is the first in a row again."""
        self.r.delete(self._deferrals_key(execution_id))

    def _forget_scheduling(self, pipe: Pipeline, execution: Execution) -> None:
        """Queue the deletion of an execution's recovery counts, its step token and its place in line."""
        pipe.delete(self._recoveries_key(execution.id))
        pipe.delete(self._step_key(execution.id))
        pipe.lrem(self._waiting_key(execution.repo), 0, execution.id)
