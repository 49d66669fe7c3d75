"""The connection and namespace every family of keys in the store builds on.

Each family of keys (executions, task tables, events, leases, flags, ...) is a mixin on `Keyspace`,
in its own module, and builds its keys with `_k`; `clarity.store.Store` composes them.
"""

from __future__ import annotations

from typing import Any

import redis

DEFAULT_NAMESPACE = "clarity"

Pipeline = Any  # a watching redis.client.Pipeline; like Store.r, typed Any as this client decodes replies to str


class Keyspace:
    """A Redis connection and the namespace this deployment's keys live under."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        # redis-py types every reply as bytes | str; this client decodes, so replies are str.
        self.r: Any = client
        self.namespace = namespace

    def _k(self, *parts: object) -> str:
        """A key in this deployment's namespace (several deployments may share one Redis)."""
        return ":".join((self.namespace, *map(str, parts)))
