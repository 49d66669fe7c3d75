"""Sign-in with GitHub: `/login` → GitHub's authorize page → `/auth/callback` → a session; `/logout`.

The callback checks the `state` it sent, then asks GitHub, through the sign-in port app.create_app
hands over (clarity.signin_port; github_app.oauth speaks to GitHub), for the user access token and who
that user is with their role in each of the app's installations (the best over its repositories,
DESIGN §5). Only login, roles and a session id go into the session (the id is held in Redis,
clarity.sessions, and ends at logout); the token is dropped.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from clarity.settings import Settings
from clarity.signin_port import SignInError, SignInPort
from dashboard.auth import EXTENSION, AuthConfig, Viewer, forget, not_configured, remember

bp = Blueprint("signin", __name__)
log = logging.getLogger(__name__)
PORT = "clarity.signin_port"


def init_app(app: Flask, port: SignInPort) -> None:
    """Register the sign-in views with the GitHub side they sign people in through."""
    app.extensions[PORT] = port
    app.register_blueprint(bp)


def _config() -> AuthConfig:
    config: AuthConfig = current_app.extensions[EXTENSION]
    return config


def _port() -> SignInPort:
    port: SignInPort = current_app.extensions[PORT]
    return port


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
    state = secrets.token_urlsafe(32)
    session["oauth_state"] = state
    session["oauth_next"] = safe_next(request.args.get("next"))
    return redirect(_port().authorize_url(state, callback_url(config.settings)))


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
    port = _port()
    try:
        signed = port.read_viewer(port.exchange_code(code, callback_url(config.settings)))
    except SignInError as err:
        return _page(400, str(err))
    viewer = Viewer(signed.login, signed.roles)
    remember(viewer)
    log.info("dashboard sign-in: %s sees %d installation(s)", viewer.login, len(viewer.roles))
    return redirect(target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End the session here and in Redis, so no copy of its cookie works any more (the guard checked CSRF)."""
    forget()
    return redirect("/login?signed_out=1" if _config().sign_in else "/")
