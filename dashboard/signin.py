"""Sign-in with GitHub: `/login` → GitHub's authorize page → `/auth/callback` → a signed-in session; `/logout`.

The callback checks the `state` it sent, exchanges the one-time code for a user access token (a plain
POST through githubkit to `<GitHub web URL>/login/oauth/access_token`), then asks GitHub as that user
who they are (`GET /user`) and which of the app's installations they reach with which repository
permissions (`GET /user/installations`, `.../repositories`). The role in an installation is the best
over its repositories (DESIGN §5). Only login, roles and a session id go into the session (the id is
held in Redis, clarity.sessions, and ends at logout); the token is dropped.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from flask import Blueprint, current_app, redirect, render_template, request, session
from flask.typing import ResponseReturnValue
from githubkit import GitHub, TokenAuthStrategy, UnauthAuthStrategy
from githubkit.exception import GitHubException, RequestFailed

from clarity import github_api
from clarity.settings import Settings
from dashboard.auth import (
    EXTENSION,
    AuthConfig,
    Viewer,
    best_role,
    forget,
    not_configured,
    remember,
    role_for_permissions,
)

bp = Blueprint("signin", __name__)
log = logging.getLogger(__name__)
TIMEOUT = 15.0


class SignInError(Exception):
    """GitHub did not sign the person in; the message says what to do."""


def _config() -> AuthConfig:
    config: AuthConfig = current_app.extensions[EXTENSION]
    return config


def callback_url(settings: Settings) -> str:
    """Where GitHub sends people back (the app's registered callback URL)."""
    return f"{settings.public_url.rstrip('/')}/auth/callback"


def safe_next(target: str | None) -> str:
    """A local path to go to after signing in; anything else (another site, `//host`) becomes `/`."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def _page(status: int, message: str) -> ResponseReturnValue:
    return render_template("signin.html", message=message), status


@bp.get("/login")
def login() -> ResponseReturnValue:
    """Send the browser to GitHub's authorize page with a fresh `state` kept in the session.

    Right after signing out it shows a page instead: GitHub signs an app it knows back in without asking.
    """
    config = _config()
    if not config.sign_in:
        return redirect("/") if config.open else not_configured()
    if "signed_out" in request.args:
        return render_template("signin.html", message="You are signed out."), 200
    settings = config.settings
    state = secrets.token_urlsafe(32)
    session["oauth_state"] = state
    session["oauth_next"] = safe_next(request.args.get("next"))
    query = urlencode({"client_id": settings.github_client_id, "redirect_uri": callback_url(settings),
                       "state": state})
    return redirect(f"{settings.web_url.rstrip('/')}/login/oauth/authorize?{query}")


@bp.get("/auth/callback")
def callback() -> ResponseReturnValue:
    """GitHub's redirect back: check state, exchange the code, read the viewer, start the session."""
    config = _config()
    if not config.sign_in:
        return redirect("/") if config.open else not_configured()
    expected = session.pop("oauth_state", None)
    target = safe_next(session.pop("oauth_next", None))
    sent = request.args.get("state", "")
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _page(400, "This sign-in answer does not belong to a sign-in started from this browser "
                          "(its state does not match). Nothing was signed in; start again.")
    if request.args.get("error"):
        return _page(403, f"GitHub did not sign you in: {request.args.get('error_description') or request.args['error']}.")
    code = request.args.get("code", "")
    if not code:
        return _page(400, "GitHub's answer has no code. Start again.")
    try:
        viewer = read_viewer(config.settings, exchange_code(config.settings, code))
    except SignInError as err:
        return _page(400, str(err))
    remember(viewer)
    log.info("dashboard sign-in: %s sees %d installation(s)", viewer.login, len(viewer.roles))
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session here and in Redis, so no copy of its cookie works any more (the guard checked CSRF)."""
    forget()
    return redirect("/login?signed_out=1" if _config().sign_in else "/")


def _client(settings: Settings, auth: Any) -> GitHub[Any]:
    return github_api.client(auth, api_version=settings.github_api_version,
                             base_url=settings.github_api_url.rstrip("/") + "/", timeout=TIMEOUT, http_cache=False)


def exchange_code(settings: Settings, code: str) -> str:
    """The user access token for a web-flow code (GitHub answers failures with 200 and an `error`)."""
    body = {"client_id": settings.github_client_id, "client_secret": settings.github_client_secret,
            "code": code, "redirect_uri": callback_url(settings)}
    try:
        with _client(settings, UnauthAuthStrategy()) as gh:
            data = gh.request("POST", f"{settings.web_url.rstrip('/')}/login/oauth/access_token", json=body,
                              headers={"Accept": "application/json"}).json()
    except RequestFailed as err:
        raise SignInError(f"GitHub refused the sign-in (HTTP {err.response.status_code}). Start again.") from None
    except (GitHubException, httpx.HTTPError, ValueError) as err:
        raise SignInError(f"could not reach GitHub to finish the sign-in ({type(err).__name__}). Start again.") from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        error = data.get("error", "no token") if isinstance(data, dict) else "no token"
        why = data.get("error_description", "") if isinstance(data, dict) else ""
        raise SignInError(f"GitHub refused the sign-in code ({error}{': ' + why if why else ''}). "
                          "Codes work once and for ten minutes: start again.")
    return token


def read_viewer(settings: Settings, token: str) -> Viewer:
    """Who the token's user is, and their role in each of the app's installations they reach."""
    try:
        with _client(settings, TokenAuthStrategy(token)) as gh:
            login = gh.rest.users.get_authenticated().parsed_data.login
            roles: dict[int, str] = {}
            installations = gh.rest.paginate(gh.rest.apps.list_installations_for_authenticated_user,
                                             map_func=lambda r: r.parsed_data.installations)
            for installation in installations:
                repos = gh.rest.paginate(gh.rest.apps.list_installation_repos_for_authenticated_user,
                                         installation_id=installation.id,
                                         map_func=lambda r: r.parsed_data.repositories)
                roles[installation.id] = best_role([role_for_permissions(_flags(repo)) for repo in repos])
    except RequestFailed as err:
        raise SignInError(f"GitHub refused to say who you are (HTTP {err.response.status_code}). Start again.") from None
    except (GitHubException, httpx.HTTPError) as err:
        raise SignInError(f"could not reach GitHub to finish the sign-in ({type(err).__name__}). Start again.") from None
    return Viewer(login, roles)


def _flags(repo: Any) -> dict[str, Any]:
    permissions = getattr(repo, "permissions", None)
    if permissions is None:
        return {}
    return {name: getattr(permissions, name, False) for name in ("admin", "maintain", "push", "triage", "pull")}
