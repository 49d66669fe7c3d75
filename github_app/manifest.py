"""The GitHub App manifest Clarity registers itself with: the one place its permissions and events live.

README's "Install on GitHub" section quotes PERMISSIONS and EVENTS (a test keeps them equal), so
people who register the app by hand ask for exactly what `clarity setup` asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from github_app.webhooks import HANDLED_EVENTS


@dataclass(frozen=True, slots=True)
class Permission:
    """One repository permission the app asks for, and why (the README says the same)."""

    name: str  # GitHub's key in `default_permissions`
    level: str  # "read" or "write"
    title: str  # as GitHub's settings page names it
    why: str


@dataclass(frozen=True, slots=True)
class Event:
    """One webhook event the app subscribes to."""

    name: str  # GitHub's key in `default_events`
    title: str  # as GitHub's settings page names it


PERMISSIONS: tuple[Permission, ...] = (
    Permission("checks", "write", "Checks", "task and summary check runs"),
    Permission("contents", "write", "Contents", "clone, read tasks_list.md, push task branches"),
    Permission("issues", "write", "Issues", "replies and reactions to commands"),
    Permission("pull_requests", "write", "Pull requests", "open, refresh, draft and ready the execution's PR"),
    Permission("workflows", "write", "Workflows", "push task branches whose tasks change `.github/workflows/`"),
    Permission("metadata", "read", "Metadata", "mandatory; commenters' repository permission"),
)

# Apps get `installation` and `installation_repositories` whether they subscribe or not, and GitHub's
# manifest does not accept them as events.
ALWAYS_DELIVERED = frozenset({"installation", "installation_repositories"})
_EVENT_TITLES = {"issue_comment": "Issue comment", "check_run": "Check run", "check_suite": "Check suite",
                 "pull_request": "Pull request", "push": "Push"}
EVENTS: tuple[Event, ...] = tuple(
    Event(name, _EVENT_TITLES.get(name, name.replace("_", " ").capitalize()))
    for name in sorted(HANDLED_EVENTS - ALWAYS_DELIVERED)
)


def build_manifest(name: str, public_url: str, redirect_url: str) -> dict[str, Any]:
    """The manifest for an app served at `public_url` whose creation comes back to `redirect_url`."""
    base = public_url.rstrip("/")
    return {
        "name": name,
        "url": base,
        "description": "Works through a repository's tasks_list.md, one task per commit, on /clarity commands.",
        "hook_attributes": {"url": f"{base}/webhooks", "active": True},
        "redirect_url": redirect_url,
        "callback_urls": [f"{base}/auth/callback"],
        "public": False,
        "request_oauth_on_install": False,
        "default_permissions": {p.name: p.level for p in PERMISSIONS},
        "default_events": [e.name for e in EVENTS],
    }


def new_app_url(web_url: str, state: str, org: str | None = None) -> str:
    """Where the manifest is POSTed: the user's or the organization's "new GitHub App" page."""
    base = web_url.rstrip("/")
    page = f"/organizations/{quote(org, safe='')}/settings/apps/new" if org else "/settings/apps/new"
    return f"{base}{page}?{urlencode({'state': state})}"
