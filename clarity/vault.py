"""Secrets at rest: Fernet-encrypted values in Redis; the first key encrypts, every configured key decrypts.

Values live in the hash `{namespace}:secrets` (name → Fernet token) and what may be shown about them
in `{namespace}:secrets:meta` (name → JSON scope, updated_at, key_id). `key_id` is a short SHA-256
fingerprint of the key that encrypted the token, so `clarity secrets list` can say which configured
key that was without decrypting anything. Every value that passes through here is taught to the
redactor, so it never reaches a log line, a comment or a check run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from clarity.redaction import redact
from clarity.settings import Settings

KEYS_VARIABLE = "CLARITY_SECRET_KEYS"
NO_KEYS = (f"no secret keys configured: set {KEYS_VARIABLE} to a key made with "
           "`clarity secrets generate-key` (comma-separate several keys to rotate; the first encrypts)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SCOPE = re.compile(r"global|installation:[1-9][0-9]*|repo:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

# Replace a token only if it is still the one that was read, so a rotation never overwrites a value
# set meanwhile. KEYS: secrets hash, meta hash; ARGV: name, old token, new token, new meta.
_SWAP = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return 1
"""


class VaultError(Exception):
    """A secret that cannot be stored or read; the message says what to do and never holds a value."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    name: str
    scope: str
    updated_at: float
    key_id: str
    key_position: int | None
    """1-based position in CLARITY_SECRET_KEYS of the key that encrypted it (1 = current); None: not there."""


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What `Vault.rotate` did: re-encrypted, already under the first key, and unreadable with any key."""

    rotated: int
    already_current: int
    total: int
    unreadable: tuple[str, ...] = ()


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text) for CLARITY_SECRET_KEYS."""
    return Fernet.generate_key().decode("ascii")


def key_id(key: str) -> str:
    """A fingerprint that names a key in metadata without revealing it."""
    return hashlib.sha256(key.strip().encode("ascii")).hexdigest()[:16]


class Vault:
    """Encrypted secrets in Redis under one namespace."""

    def __init__(self, client: redis.Redis, namespace: str, keys: Sequence[str]) -> None:
        if not keys:
            raise VaultError(NO_KEYS)
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip()))
            except (ValueError, TypeError):
                raise VaultError(f"{KEYS_VARIABLE}: key {position} of {len(keys)} is not a valid Fernet key; "
                                 "make one with `clarity secrets generate-key`") from None
            redact.add(key)
        # redis-py types replies as bytes | str; this client decodes, so replies are str.
        self.r: Any = client
        self.secrets_key = f"{namespace}:secrets"
        self.meta_key = f"{namespace}:secrets:meta"
        self._current = fernets[0]
        self._all = MultiFernet(fernets)
        self._ids = [key_id(k) for k in keys]
        self._swap = self.r.register_script(_SWAP)

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """A vault on the settings' Redis, namespace and keys."""
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        return cls(client, settings.namespace, settings.secret_keys)

    def set(self, name: str, value: str, scope: str = "global") -> None:
        """Store `value` under `name`, encrypted with the first key; replaces any earlier value."""
        if not _NAME.fullmatch(name):
            raise VaultError(f"secret name {name!r} must be letters, digits, '.', '_' or '-' (at most 128)")
        if not _SCOPE.fullmatch(scope):
            raise VaultError(f"scope {scope!r} must be global, installation:<id> or repo:<owner>/<name>")
        if not value:
            raise VaultError(f"secret {name} is empty; nothing was stored")
        redact.add(value)
        token = self._current.encrypt(value.encode("utf-8")).decode("ascii")
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.secrets_key, name, token)
        pipe.hset(self.meta_key, name, self._meta(scope, time.time()))
        pipe.execute()

    def get(self, name: str) -> str:
        """The value of secret `name`; VaultError when there is none or no configured key opens it."""
        token = self.r.hget(self.secrets_key, name)
        if token is None:
            raise VaultError(f"no secret named {name}")
        try:
            value = self._all.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise VaultError(f"secret {name} was encrypted with a key that is not in {KEYS_VARIABLE}") from None
        redact.add(value)
        return value

    def names(self) -> list[SecretInfo]:
        """Every secret's name, scope, date and key, sorted by name; values are never read."""
        names = self.r.hkeys(self.secrets_key)
        metas = self.r.hmget(self.meta_key, names) if names else []
        return sorted((self._info(name, raw) for name, raw in zip(names, metas)), key=lambda i: i.name)

    def delete(self, name: str) -> None:
        """Forget secret `name`; VaultError if there is none."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.secrets_key, name)
        pipe.hdel(self.meta_key, name)
        removed, _ = pipe.execute()
        if not removed:
            raise VaultError(f"no secret named {name}")

    def rotate(self) -> RotationReport:
        """Re-encrypt every secret under the first key, so older keys can then be removed."""
        rotated = current = 0
        unreadable: list[str] = []
        names = self.r.hkeys(self.secrets_key)
        for name in names:
            outcome = self._rotate_one(name)
            if outcome == "rotated":
                rotated += 1
            elif outcome == "current":
                current += 1
            elif outcome == "unreadable":
                unreadable.append(name)
        return RotationReport(rotated, current, rotated + current + len(unreadable), tuple(sorted(unreadable)))

    def _rotate_one(self, name: str) -> str:
        """Rotate one secret: 'rotated', 'current', 'unreadable' or 'gone' (deleted meanwhile)."""
        for _ in range(5):  # another writer may replace the token between our read and our swap
            token = self.r.hget(self.secrets_key, name)
            if token is None:
                return "gone"
            try:
                self._current.decrypt(token.encode("ascii"))
                return "current"
            except InvalidToken:
                pass
            try:
                fresh = self._all.rotate(token.encode("ascii")).decode("ascii")
            except InvalidToken:
                return "unreadable"
            old = self._info(name, self.r.hget(self.meta_key, name))
            meta = self._meta(old.scope, old.updated_at)
            if self._swap(keys=[self.secrets_key, self.meta_key], args=[name, token, fresh, meta]):
                return "rotated"
        return "current"  # rewritten over and over by writers, each with the first key

    def _meta(self, scope: str, updated_at: float) -> str:
        return json.dumps({"scope": scope, "updated_at": updated_at, "key_id": self._ids[0]})

    def _info(self, name: str, raw: str | None) -> SecretInfo:
        try:
            meta = json.loads(raw) if raw else {}
        except ValueError:
            meta = {}
        kid = str(meta.get("key_id", ""))
        position = self._ids.index(kid) + 1 if kid in self._ids else None
        return SecretInfo(name, str(meta.get("scope", "global")), float(meta.get("updated_at", 0.0)), kid, position)
