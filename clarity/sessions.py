"""Dashboard sessions held server-side, so a session ends for good at logout or when an operator revokes it.

The signed cookie carries a random session id beside the viewer; Redis keeps only the id's SHA-256:
`{namespace}:session:<digest>` → the login, expiring with the session, and `{namespace}:sessions:<login>`,
the set of that person's live digests (so `clarity sessions revoke <login>` ends all of them). A cookie
whose id is not in Redis (logged out, revoked, expired, or Redis flushed) signs nobody in.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import redis


def digest(session_id: str) -> str:
    """The SHA-256 (hex) a session id is stored under: a copy of Redis holds no usable cookie."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


class Sessions:
    """The live dashboard sessions of one deployment (namespace) in Redis."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.r: Any = client  # decoded replies
        self.namespace = namespace

    @classmethod
    def from_url(cls, url: str, namespace: str) -> Sessions:
        """Sessions on a fresh connection pool (strings decoded)."""
        return cls(redis.Redis.from_url(url, decode_responses=True), namespace)

    def _key(self, session_digest: str) -> str:
        return f"{self.namespace}:session:{session_digest}"

    def _person(self, login: str) -> str:
        return f"{self.namespace}:sessions:{login.lower()}"

    def start(self, login: str, lifetime: int) -> str:
        """A new session id for `login`, alive for `lifetime` seconds unless ended sooner."""
        session_id = secrets.token_urlsafe(32)
        pipe = self.r.pipeline()
        pipe.set(self._key(digest(session_id)), login, ex=lifetime)
        pipe.sadd(self._person(login), digest(session_id))
        pipe.expire(self._person(login), lifetime)
        pipe.execute()
        return session_id

    def alive(self, session_id: str, login: str) -> bool:
        """Whether the session is live and belongs to `login`."""
        return bool(session_id) and self.r.get(self._key(digest(session_id))) == login

    def end(self, session_id: str) -> None:
        """End one session (logout)."""
        key = self._key(digest(session_id))
        login = self.r.get(key)
        pipe = self.r.pipeline()
        pipe.delete(key)
        if login is not None:
            pipe.srem(self._person(login), digest(session_id))
        pipe.execute()

    def end_all(self, login: str) -> int:
        """End every session of `login` (a lost laptop, a person who left); how many were live."""
        digests = self.r.smembers(self._person(login))
        ended = int(self.r.delete(*(self._key(d) for d in digests))) if digests else 0
        self.r.delete(self._person(login))
        return ended
