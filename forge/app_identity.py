"""The app the forge serves, and the one-time codes of the manifest flow that replace it.

The forge hosts one GitHub App at a time: the one from its config, until a manifest conversion
creates another, which then takes over (its id, key, webhook URL and secret; the installations stay,
as if the new app were installed on every account the old one was). That keeps every other part of
the forge single-app while `clarity setup` can be exercised end to end.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from forge.auth import INSTALLATION_PERMISSIONS, public_key_from_pem
from forge.config import ForgeConfig
from forge.records import now

APP_EVENTS = ("check_run", "check_suite", "issue_comment", "issues", "pull_request", "push")
CODE_LIFETIME = 3600.0  # GitHub's manifest codes work once, within an hour


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """Who the app is: what `GET /app` answers and what its JWTs are checked against."""

    id: int
    slug: str
    name: str
    owner: str  # login of the owning user or organization
    public_key: RSAPublicKey = field(repr=False)
    client_id: str
    created_at: datetime
    client_secret: str = field(default="", repr=False)  # the OAuth client's secret (web flow sign-in)
    callback_urls: tuple[str, ...] = ()  # allowed OAuth redirects; none registered: any http(s) URL
    description: str | None = "Works through tasks_list.md (served by the forge)."
    external_url: str = ""
    permissions: Mapping[str, str] = field(default_factory=lambda: dict(INSTALLATION_PERMISSIONS))
    events: tuple[str, ...] = APP_EVENTS

    @property
    def bot_login(self) -> str:
        """The app's bot account, e.g. ``clarity[bot]``."""
        return f"{self.slug}[bot]"


@dataclass(frozen=True, slots=True)
class PendingApp:
    """An app confirmed on the "new app" page, waiting for its code to be converted."""

    name: str
    owner: str
    owner_type: str  # "User" or "Organization"
    manifest: Mapping[str, Any]
    expires_at: float


def initial_identity(config: ForgeConfig) -> AppIdentity:
    """The app named by the forge's config."""
    return AppIdentity(
        id=config.app_id,
        slug=config.app_slug,
        name=config.app_name,
        owner=f"{config.app_slug}-developers",
        public_key=public_key_from_pem(config.app_public_key_pem),
        client_id=f"Iv1.forge{config.app_id:08d}",
        created_at=now(),
        client_secret=secrets.token_hex(20),
        external_url=config.public_url.rstrip("/"),
    )


class AppRegistry:
    """The current app, every app the forge has known, and the manifest codes (thread-safe)."""

    def __init__(self, first: AppIdentity) -> None:
        self._lock = threading.Lock()
        self._current = first
        self._known: dict[int, AppIdentity] = {first.id: first}
        self._codes: dict[str, PendingApp] = {}

    def current(self) -> AppIdentity:
        """The app the forge serves now."""
        with self._lock:
            return self._current

    def adopt(self, identity: AppIdentity) -> None:
        """Make `identity` the app the forge serves (the previous app's JWTs stop working)."""
        with self._lock:
            self._known[identity.id] = identity
            self._current = identity

    def next_id(self) -> int:
        """An app id no app has had."""
        with self._lock:
            return max(self._known) + 1

    def name_taken(self, name: str) -> bool:
        """Whether an app already has this name or its slug (names are unique on GitHub)."""
        wanted = slugify(name)
        with self._lock:
            return any(app.slug == wanted or app.name.lower() == name.lower() for app in self._known.values())

    def issue_code(self, pending: PendingApp) -> str:
        """A one-time code for the redirect back to the app's `redirect_url`."""
        code = secrets.token_hex(20)
        with self._lock:
            self._codes[code] = pending
        return code

    def take_code(self, code: str, at: float | None = None) -> PendingApp | None:
        """The pending app of a code, once; None when unknown, used or expired."""
        at = time.time() if at is None else at
        with self._lock:
            pending = self._codes.pop(code, None)
        if pending is None or pending.expires_at <= at:
            return None
        return pending


def slugify(name: str) -> str:
    """GitHub's slug for an app name: lower case, runs of other characters become one '-'."""
    out: list[str] = []
    for char in name.strip().lower():
        if char.isascii() and char.isalnum():
            out.append(char)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")
