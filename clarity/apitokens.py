"""API tokens for scripts: `Authorization: Bearer clr_…` acts with one role on some installations.

A token is shown once, when it is made; Redis keeps only its SHA-256. The hash `{namespace}:apitokens`
maps that digest to the token's record (id, name, role, installations, created), and
`{namespace}:apitokens:used` maps it to the last time it was used (written at most once a minute per
token, so a busy script does not write on every call). A token is named in listings and revoked by its
id: the 8 characters after `clr_`, which the token itself starts with, so a person holding a token can
tell which one it is without the secret part ever being stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from clarity.redaction import redact

PREFIX = "clr_"
ROLES = ("viewer", "team_member", "manager", "admin")  # least powerful first, as the dashboard's
TOUCH_EVERY = 60.0  # seconds between last-used writes for one token
_TOKEN = re.compile(r"clr_([a-z0-9]{8})_[A-Za-z0-9_-]{20,}")


class TokenError(ValueError):
    """A token that cannot be made or revoked; the message says why (and never holds a token)."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """What is stored about a token: never the token itself."""

    id: str
    name: str
    role: str
    installations: tuple[int, ...]  # empty with `everything`
    everything: bool  # every installation, present and future (an operator's token)
    created: float
    last_used: float | None = None

    def to_json(self) -> str:
        """The stored form (without last_used, which lives beside it)."""
        data = asdict(self)
        data.pop("last_used")
        data["installations"] = list(self.installations)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, last_used: str | None = None) -> ApiToken:
        """Read the stored form back."""
        data: dict[str, Any] = json.loads(text)
        return cls(str(data["id"]), str(data["name"]), str(data["role"]),
                   tuple(int(i) for i in data.get("installations") or ()), bool(data.get("everything")),
                   float(data["created"]), float(last_used) if last_used else None)


def digest(token: str) -> str:
    """The SHA-256 (hex) a token is stored under."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ApiTokens:
    """The API tokens of one deployment (namespace) in Redis."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.r: Any = client  # decoded replies
        self.key = f"{namespace}:apitokens"
        self.used_key = f"{namespace}:apitokens:used"

    @classmethod
    def from_url(cls, url: str, namespace: str) -> ApiTokens:
        """Tokens on a fresh connection pool (strings decoded)."""
        return cls(redis.Redis.from_url(url, decode_responses=True), namespace)

    def create(self, role: str, installations: Iterable[int] = (), name: str = "",
               everything: bool = False, now: float | None = None) -> tuple[str, ApiToken]:
        """A new token (returned once, never stored) and its record."""
        if role not in ROLES:
            raise TokenError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        wanted = tuple(sorted({int(i) for i in installations}))
        if everything == bool(wanted):
            raise TokenError("name the installations the token may see (--installation ID, repeatable), "
                             "or give it every installation (--all-installations), not both")
        if any(i < 1 for i in wanted):
            raise TokenError("installation ids are positive numbers")
        token_id = secrets.token_hex(4)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(30)}"
        redact.add(token)
        record = ApiToken(token_id, name or f"token-{token_id}", role, wanted, everything,
                          time.time() if now is None else now)
        self.r.hset(self.key, digest(token), record.to_json())
        return token, record

    def verify(self, token: str, now: float | None = None) -> ApiToken | None:
        """The record of a live token (its last-used time updated), or None for anything else."""
        if not _TOKEN.fullmatch(token):
            return None
        key = digest(token)
        raw = self.r.hget(self.key, key)
        if raw is None:
            return None
        now = time.time() if now is None else now
        last = self.r.hget(self.used_key, key)
        if last is None or now - float(last) >= TOUCH_EVERY:
            self.r.hset(self.used_key, key, repr(now))
            last = repr(now)
        return ApiToken.from_json(raw, last)

    def records(self) -> list[ApiToken]:
        """Every token's record, oldest first."""
        stored = self.r.hgetall(self.key)
        used = self.r.hmget(self.used_key, list(stored)) if stored else []
        records = [ApiToken.from_json(raw, last) for raw, last in zip(stored.values(), used)]
        return sorted(records, key=lambda t: (t.created, t.id))

    def revoke(self, id_or_prefix: str) -> ApiToken:
        """Forget the one token whose id starts with `id_or_prefix` (a whole token works too)."""
        wanted = id_or_prefix.strip()
        match = _TOKEN.fullmatch(wanted)
        wanted = match.group(1) if match else wanted.removeprefix(PREFIX)
        if not wanted:
            raise TokenError("name the token to revoke by its id (see `clarity tokens list`)")
        found = [(key, ApiToken.from_json(raw)) for key, raw in self.r.hgetall(self.key).items()
                 if ApiToken.from_json(raw).id.startswith(wanted)]
        if not found:
            raise TokenError(f"no token with id {wanted!r} (see `clarity tokens list`)")
        if len(found) > 1:
            raise TokenError(f"{len(found)} tokens have ids starting with {wanted!r}: "
                             f"{', '.join(t.id for _, t in found)}; give more of the id")
        key, record = found[0]
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.key, key)
        pipe.hdel(self.used_key, key)
        pipe.execute()
        return record
