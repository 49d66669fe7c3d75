"""The customer registry: each installation of the app, its account, status and the repositories it
grants, as JSON in one hash (`installations`, keyed by installation id)."""

from __future__ import annotations

import json
import time
from typing import Any

from clarity.store.keyspace import Keyspace


class Installations(Keyspace):
    """The installations the app knows of."""

    def _installations_key(self) -> str:
        return self._k("installations")

    def put_installation(self, installation_id: int, account: str, status: str, repos: list[str]) -> None:
        """Record a customer installation and the repositories it grants."""
        self.r.hset(self._installations_key(), str(installation_id), json.dumps(
            {"id": installation_id, "account": account, "status": status, "repos": sorted(set(repos)),
             "updated_at": time.time()}))

    def installation(self, installation_id: int) -> dict[str, Any] | None:
        """One installation record, if known."""
        raw = self.r.hget(self._installations_key(), str(installation_id))
        return json.loads(raw) if raw else None

    def installations(self) -> list[dict[str, Any]]:
        """Every known installation."""
        return [json.loads(v) for v in self.r.hvals(self._installations_key())]

    def drop_installation(self, installation_id: int) -> None:
        """Forget an installation record."""
        self.r.hdel(self._installations_key(), str(installation_id))
