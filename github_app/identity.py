"""Who the app is on GitHub: its slug (`GET /app`), its bot's login and user id, the author of its commits.

A GitHub App acts as its bot account, `<slug>[bot]`, and the slug is whatever GitHub made of the app's
name when it was registered: names are unique on GitHub, so it is rarely just "clarity". The bot is a user
with an id of its own (not the app's id); GitHub shows a commit as the bot's when its author email is
`<bot user id>+<slug>[bot]@users.noreply.github.com`. Both facts are asked of GitHub once an hour per
deployment (the shared cache) and kept in the process meanwhile; CLARITY_BOT_LOGIN overrides the login.
The webhook endpoint asks at most once an hour too, and only for a push delivery no process could judge.

`OwnPushes` tells Clarity's own pushes apart: sent by its bot, or carrying a commit Clarity recorded
pushing (clarity.pushes), whatever the sender says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import redis
from githubkit.exception import GitHubException

from clarity.pushes import PushedShas
from github_app import routes
from github_app.client import GitHubApp, describe_error

log = logging.getLogger(__name__)
IDENTITY_TTL = 3600.0  # an app can be renamed (its slug changes with it): asked again this often
NOREPLY_DOMAIN = "users.noreply.github.com"
QUIET_AFTER_FAILURE = 300.0  # GitHub did not say who the app is: the webhook endpoint does not ask again sooner


@dataclass(frozen=True, slots=True)
class Author:
    """A git author (and committer): name and email."""

    name: str
    email: str


def author_for(login: str, user_id: int) -> Author:
    """The commit author GitHub links to the bot account `login` with this user id."""
    return Author(login, f"{user_id}+{login}@{NOREPLY_DOMAIN}")


class Identity:
    """The app's bot login and bot user id, asked of GitHub when not known (process, then shared cache)."""

    def __init__(self, github: GitHubApp, override: str = "") -> None:
        self.github = github
        self.override = override.strip()
        self._known: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def bot_login(self, ask: bool = True) -> str:
        """`<slug>[bot]` (CLARITY_BOT_LOGIN if set). Without `ask`, "" when no process of the deployment
        learnt it within the hour; with it, GitHub's errors are raised."""
        if self.override:
            return self.override
        slug = self._fact("app:slug", self._ask_slug if ask else None)
        return f"{slug}[bot]" if slug else ""

    def author(self, installation_id: int) -> Author:
        """The author of Clarity's commits: the bot, as GitHub links it (`GET /users/<login>` for its id)."""
        login = self.bot_login()
        user_id = self._fact(f"bot-user:{login}", lambda: self._ask_user_id(installation_id, login))
        return author_for(login, int(user_id))

    def _fact(self, name: str, ask: Callable[[], str] | None) -> str:
        now = time.monotonic()
        with self._lock:
            kept = self._known.get(name)
        if kept is not None and kept[0] > now:
            return kept[1]
        shared = self.github.shared
        entry = shared.get(f"identity:{name}") if shared is not None else None
        value = str(entry["value"]) if entry is not None and isinstance(entry.get("value"), str) else ""
        if not value and ask is not None:
            value = ask()
            if shared is not None:
                shared.put(f"identity:{name}", {"value": value}, IDENTITY_TTL)
        if value:
            with self._lock:
                self._known[name] = (now + IDENTITY_TTL, value)
        return value

    def _ask_slug(self) -> str:
        app = self.github.app.rest.apps.get_authenticated().parsed_data
        slug = getattr(app, "slug", None)
        if not isinstance(slug, str) or not slug:
            raise ValueError("GitHub's answer to GET /app has no slug")
        log.info("the app is %s on GitHub: its bot is %s[bot]", slug, slug)
        return slug

    def _ask_user_id(self, installation_id: int, login: str) -> str:
        gh = self.github.client(installation_id)  # held: its `rest` namespace keeps only a weak reference
        return str(int(gh.rest.users.get_by_username(login).parsed_data.id))


class OwnPushes:
    """`(repo, sender, after) -> bool`: whether a push webhook tells of a push Clarity made itself."""

    def __init__(self, identity: Identity, pushed: PushedShas) -> None:
        self.identity = identity
        self.pushed = pushed
        self._quiet_until = 0.0

    def __call__(self, repo: str, sender: str, after: str) -> bool:
        """Its bot pushed it, or it carries a commit Clarity recorded pushing; never raises."""
        if routes.own_push(sender, self._login()):
            return True
        if not repo or not after:
            return False
        try:
            return self.pushed.pushed(repo, after)
        except redis.RedisError as exc:
            log.warning("%s: could not tell whether Clarity pushed %s: %s", repo, after[:10], exc)
            return False

    def _login(self) -> str:
        """The bot's login; asked of GitHub only when no process knows it (once an hour per deployment),
        and not again for a while after GitHub failed to answer (a push is then judged by its commit)."""
        ask = time.monotonic() >= self._quiet_until
        try:
            return self.identity.bot_login(ask=ask)
        except (GitHubException, httpx.HTTPError, ValueError) as exc:
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE
            log.warning("could not learn the app's bot login from GitHub: %s", describe_error(exc))
            return ""
