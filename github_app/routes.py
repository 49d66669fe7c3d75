"""The (event, action) pairs Clarity acts on: one table, read by the webhook endpoint and by the routers in jobs/.

On GitHub every Actions job of every installed repository sends `check_run.created` and `.completed`,
every push a `push` and a `check_suite`, every PR change a `pull_request`; Clarity acts on a handful of
them. The endpoint answers the rest 204 without queueing (github_app.webhooks). github_app may not import
jobs, so the table cannot be read off the routers: `jobs.router.Router` refuses a handler for a pair
missing here, and tests/test_webhook_volume.py holds the routers jobs.routes composes equal to it.

Pre-filtered at the endpoint beyond (event, action), because the handler ignores them whatever the store
holds: pushes that are not to a branch, and Clarity's own pushes (its bot sent them, or they carry a commit
Clarity pushed: github_app.identity.OwnPushes). Not filtered by
`app.id`: GitHub sends `check_run.requested_action`, `check_run.rerequested` and
`check_suite.rerequested` only to the app that owns the run or suite, so other apps' ones never arrive,
and the handlers refuse runs that are not Clarity's (the external id must name an execution of that
repository).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

ANY: None = None
"""A route without an action takes every action of its event."""

OwnPush = Callable[[str, str, str], bool]
"""`(repo full name, sender login, after sha) -> bool`: whether a push was Clarity's own (github_app.identity)."""

HANDLED: frozenset[tuple[str, str | None]] = frozenset({
    ("issue_comment", "created"),  # commands (jobs.intake)
    ("check_run", "requested_action"),  # the Stop / Retry / Resume buttons (jobs.buttons)
    ("check_run", "rerequested"),  # "Re-run" on a task's check run
    ("check_suite", "rerequested"),  # "Re-run all checks"
    ("pull_request", "closed"),  # a closed or merged PR ends its execution (jobs.lifecycle)
    ("push", ANY),  # someone else's push pauses the execution on that branch
    ("installation", ANY),
    ("installation_repositories", ANY),
})

HANDLED_EVENTS: frozenset[str] = frozenset(event for event, _ in HANDLED)
"""The events the app subscribes to (the manifest lists the same)."""

BRANCH_PREFIX = "refs/heads/"
# GitHub puts `action` first, indented (fixtures) or compact (hookshot): read it without parsing the body.
_LEADING_ACTION = re.compile(rb'\A\s*\{\s*"action"\s*:\s*"([A-Za-z0-9_]{1,64})"')
_ACTION_KEY = b'"action"'


def handles(event: str, action: str | None) -> bool:
    """Whether some handler takes `event.action`, the way `Router.handler_for` looks it up."""
    return (event, action) in HANDLED or (event, ANY) in HANDLED


def own_push(sender: str, bot_login: str) -> bool:
    """Whether a push was sent by Clarity's bot (`<slug>[bot]`, any case): such a push never pauses an execution."""
    return bool(bot_login) and sender.lower() == bot_login.lower()


def wanted(event: str, body: bytes, own: OwnPush | None = None) -> bool:
    """Whether a verified delivery of a subscribed event can make any handler act; False only when certain.

    A body whose action cannot be read is wanted: intake decides, and says why it ignores it.
    """
    if event == "push":
        return _push_wanted(body, own)
    if (event, ANY) in HANDLED:
        return True
    readable, action = _action(body)
    return handles(event, action) if readable else True


def _action(body: bytes) -> tuple[bool, str | None]:
    """(readable, the top-level `action`): cheaply when it comes first and only once, as GitHub sends it."""
    found = _LEADING_ACTION.match(body)
    if found is not None and body.count(_ACTION_KEY) == 1:
        return True, found.group(1).decode()
    payload = _loaded(body)
    if payload is None:
        return False, None
    action = payload.get("action")
    return True, action if isinstance(action, str) else None


def _push_wanted(body: bytes, own: OwnPush | None) -> bool:
    payload = _loaded(body)
    if payload is None:
        return True
    ref, sender, repo, after = (payload.get(key) for key in ("ref", "sender", "repository", "after"))
    if isinstance(ref, str) and not ref.startswith(BRANCH_PREFIX):
        return False
    login = sender.get("login") if isinstance(sender, dict) else None
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return own is None or not own(name if isinstance(name, str) else "", login if isinstance(login, str) else "",
                                  after if isinstance(after, str) else "")


def _loaded(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # intake says why it ignores it
        return None
    return payload if isinstance(payload, dict) else None
