"""Redis-backed state, one module per family of keys, each the one writer of its keys:

- `executions`: execution records and their indexes; every status change (`transition`)
- `tasks`: each execution's task table and scope, written with the numbers counted from them
- `events`: log lines, the audit stream and live events
- `scheduling`: repository leases and waiting lines, the ready set, recovery and deferral counts
- `flags`: stop, pause, stop point reached
- `checks`: the check run opened for each task
- `installations`, `comments` (dedupe), `repo_facts` (task durations, draft PRs refused)

`Store` composes them; callers import it, `NotFound` and `Brief` from here.
"""

from __future__ import annotations

import redis

from clarity.store.checks import Checks
from clarity.store.comments import CommentClaims
from clarity.store.events import Brief
from clarity.store.executions import NotFound
from clarity.store.flags import Flags
from clarity.store.installations import Installations
from clarity.store.keyspace import DEFAULT_NAMESPACE
from clarity.store.repo_facts import RepoFacts
from clarity.store.scheduling import Scheduling
from clarity.store.tasks import TaskTable

__all__ = ["DEFAULT_NAMESPACE", "Brief", "NotFound", "Store"]


class Store(TaskTable, Scheduling, Flags, Checks, Installations, CommentClaims, RepoFacts):
    """The one owner of execution state in Redis."""

    @classmethod
    def from_url(cls, url: str, namespace: str = DEFAULT_NAMESPACE) -> Store:
        """A store on a fresh connection pool (strings decoded)."""
        return cls(redis.Redis.from_url(url, decode_responses=True), namespace)

    def forget(self, execution_id: str) -> None:
        """Delete an execution and everything under it (its installation or repository went away).

        Each family deletes its own keys, in one transaction; the audit stream keeps a record of it.
        """
        try:
            execution = self.get(execution_id)
        except NotFound:
            return
        pipe = self.r.pipeline()
        for forget in (self._forget_record, self._forget_tasks, self._forget_log, self._forget_scheduling,
                       self._forget_checks, self._forget_flags):
            forget(pipe, execution)
        pipe.execute()
        self.ready.remove(execution_id)
        self._audit_forgotten(execution)
