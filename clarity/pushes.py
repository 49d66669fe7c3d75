"""The commits Clarity pushed, per repository, for a while: a push webhook carrying one is Clarity's own.

A push is recognised as Clarity's by its sender (the app's bot) first; this is the proof that holds
whatever the sender says (an app renamed, a login override gone stale, a push relayed by something
else). A commit is recorded as its push starts (runner.workspace calls back before `git push`): GitHub
may deliver the push webhook before `git push` has returned to the worker. A push that then fails
leaves a record of a commit only the worker has, which no one else can push.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis

log = logging.getLogger(__name__)
# As long as GitHub keeps a delivery (3 days), and so can redeliver an old push event, plus a day.
PUSHED_TTL = 4 * 24 * 3600
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class PushedShas:
    """`<namespace>:pushed:<owner/repo>:<sha>` keys, one per commit Clarity pushed, each expiring alone."""

    def __init__(self, client: redis.Redis, namespace: str, ttl: int = PUSHED_TTL) -> None:
        self.r: Any = client
        self.namespace = namespace
        self.ttl = ttl

    def _key(self, repo: str, sha: str) -> str:
        return f"{self.namespace}:pushed:{repo.lower()}:{sha.lower()}"

    def record(self, repo: str, sha: str) -> None:
        """Remember that Clarity pushes `sha` to `repo`; a Redis failure is logged (the sender still tells)."""
        if not _SHA.fullmatch(sha.lower()):
            return
        try:
            self.r.set(self._key(repo, sha), "1", ex=self.ttl)
        except redis.RedisError as exc:
            log.warning("%s: could not record pushed commit %s (%s): its push webhook is judged by its sender",
                        repo, sha[:10], exc)

    def pushed(self, repo: str, sha: str) -> bool:
        """Whether Clarity pushed `sha` to `repo` lately. Raises redis.RedisError."""
        return bool(_SHA.fullmatch(sha.lower())) and bool(self.r.exists(self._key(repo, sha)))
