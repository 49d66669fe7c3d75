"""Who is looking: the viewer of a dashboard page, socket or API call, and what they may see and do.

The contract every view uses: `current_viewer()` → Viewer (or None when nobody is signed in and
sign-in is required), `Viewer.sees(installation_id)`, `Viewer.role_in(installation_id)`.

Three ways in: a browser session signed in with GitHub (dashboard.signin; `CLARITY_DASHBOARD_AUTH=github`,
the default when the app's OAuth client is known), a script's `Authorization: Bearer clr_…` token
(clarity.apitokens; every mode), or nobody when the operator opened the dashboard (`CLARITY_DASHBOARD_AUTH=open`,
never a default: everyone who reaches it sees everything with the viewer role). Without an OAuth client
and without `open` the dashboard is closed: pages answer 503 saying how to configure sign-in, JSON 401,
and only API tokens get in. `configure` installs the guard: pages redirect to /login and JSON answers 401
when nobody is signed in, and every state-changing request made with the session cookie must carry the
session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`); bearer-token calls are exempt.
A signed-in session is also held in Redis (clarity.sessions): logout or `clarity sessions revoke` ends it
for every copy of the cookie. An open dashboard answers only on its public URL's host and loopback names,
so a page of another site that rebinds its DNS name to the dashboard's address reads nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from clarity.apitokens import ApiToken, ApiTokens
from clarity.models import Execution
from clarity.sessions import Sessions
from clarity.settings import Settings
from clarity.store import Store

ROLES = ("viewer", "team_member", "manager", "admin")  # as github_app.roles.Role, least powerful first
EXTENSION = "clarity.auth"
SESSION_VIEWER = "viewer"
SESSION_CSRF = "csrf"
SESSION_ID = "sid"  # the id Redis knows the session by (clarity.sessions)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SESSION_LIFETIME = timedelta(hours=8)  # roles are read from GitHub at sign-in; sign in again to refresh them
# Reachable without signing in: probes, metrics, GitHub's webhooks and the sign-in itself.
# The API's description is public, like any published API reference: it holds no data.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/webhooks", "/login", "/auth/callback", "/logout",
                        "/api/openapi.json"})
CSRF_EXEMPT = frozenset({"/webhooks"})  # signed by GitHub (HMAC) instead
JSON_PREFIXES = ("/api/", "/live")  # answered with 401 JSON rather than a redirect to /login
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})  # a browser sends these only for pages on them
HOW_TO_SIGN_IN = ("set CLARITY_GITHUB_CLIENT_ID and CLARITY_GITHUB_CLIENT_SECRET (the GitHub App's OAuth client; "
                  "`clarity setup` stores them) so people sign in with GitHub, or CLARITY_DASHBOARD_AUTH=open "
                  "to show every installation's data to anyone who reaches the dashboard")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in person or a script's token: the installations they see, with their role in each."""

    login: str
    roles: Mapping[int, str] = field(default_factory=dict)  # installation id → one of ROLES
    everything: bool = False  # sees every installation (the open local dashboard, an operator)
    default_role: str = "viewer"  # the role where `everything` applies and `roles` says nothing

    def sees(self, installation_id: int) -> bool:
        """Whether this viewer may see the executions of an installation."""
        return self.everything or installation_id in self.roles

    def role_in(self, installation_id: int) -> str | None:
        """The viewer's role in an installation, or None if they cannot see it."""
        if installation_id in self.roles:
            return self.roles[installation_id]
        return self.default_role if self.everything else None

    def may(self, installation_id: int, role: str) -> bool:
        """Whether the viewer holds at least `role` in the installation."""
        held = self.role_in(installation_id)
        return held is not None and ROLES.index(held) >= ROLES.index(role)


OPEN_VIEWER = Viewer("anonymous", everything=True)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What the guard and the sign-in views need, on `app.extensions["clarity.auth"]`."""

    settings: Settings
    tokens: ApiTokens
    sessions: Sessions

    @property
    def sign_in(self) -> bool:
        """Whether people sign in with GitHub (else the dashboard is open, or closed to all but API tokens)."""
        return self.settings.dashboard_auth == "github"

    @property
    def open(self) -> bool:
        """Whether the operator opened the dashboard to everyone who reaches it."""
        return self.settings.dashboard_auth == "open"


def configure(app: Flask, settings: Settings, tokens: ApiTokens, sessions: Sessions) -> None:
    """Sessions (signed cookie, live in Redis), the guard and the template helpers; dashboard.signin signs in."""
    app.secret_key = session_key(settings)
    app.config.update(SESSION_COOKIE_NAME="clarity_session", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=settings.public_url.startswith("https:"),
                      PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME)
    app.extensions[EXTENSION] = AuthConfig(settings, tokens, sessions)
    if settings.dashboard_auth == "open":
        log.warning("CLARITY_DASHBOARD_AUTH=open: the dashboard shows every installation's executions, logs and "
                    "artifacts to anyone who reaches %s; configure sign-in with GitHub for anything but a "
                    "private machine", settings.public_url)
    elif settings.dashboard_auth == "closed":
        log.info("dashboard sign-in is not configured: pages and the API answer API tokens only (%s)", HOW_TO_SIGN_IN)
    app.before_request(guard)
    app.add_template_global(csrf_token, "csrf_token")
    app.context_processor(lambda: {"viewer": current_viewer(), "sign_in": settings.dashboard_auth == "github"})


def session_key(settings: Settings) -> bytes:
    """The key that signs session cookies: CLARITY_SESSION_SECRET, else derived from a secret every web process has.

    Derived one-way (HMAC) from the first CLARITY_SECRET_KEYS key, else the app's private key, so several
    processes agree without storing another secret; a fresh random key (sessions end at restart) when none.
    """
    if settings.session_secret:
        return hashlib.sha256(settings.session_secret.encode("utf-8")).digest()
    source = next((s for s in (*settings.secret_keys, settings.private_key, settings.webhook_secret) if s), "")
    if not source:
        log.warning("no CLARITY_SESSION_SECRET and no secret to derive one from: sessions end when this process does")
        return secrets.token_bytes(32)
    return hmac.new(source.encode("utf-8"), b"clarity dashboard session key v1", hashlib.sha256).digest()


def _config() -> AuthConfig | None:
    config: AuthConfig | None = current_app.extensions.get(EXTENSION)
    return config


def bearer_token() -> str | None:
    """The credential of an `Authorization: Bearer …` header, if the request has one."""
    scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


def token_viewer(record: ApiToken) -> Viewer:
    """The viewer a script's API token stands for."""
    return Viewer(f"token:{record.name}", {i: record.role for i in record.installations},
                  everything=record.everything, default_role=record.role)


def session_viewer(data: Any) -> Viewer | None:
    """The viewer stored in the session at sign-in (None when it is not one)."""
    if not isinstance(data, dict) or not isinstance(data.get("login"), str):
        return None
    roles = data.get("roles")
    if not isinstance(roles, dict):
        return None
    return Viewer(data["login"], {int(i): r for i, r in roles.items() if str(i).isdigit() and r in ROLES})


def remember(viewer: Viewer) -> None:
    """Start a fresh signed-in session for `viewer` (a new CSRF token and a new server-side id with it)."""
    config, previous = _config(), session.get(SESSION_ID)
    if config is not None and isinstance(previous, str):
        config.sessions.end(previous)  # signing in again replaces the session, it does not add one
    session.clear()
    session.permanent = True
    session[SESSION_VIEWER] = {"login": viewer.login, "roles": {str(i): r for i, r in viewer.roles.items()}}
    session[SESSION_CSRF] = secrets.token_urlsafe(32)
    if config is not None:
        session[SESSION_ID] = config.sessions.start(viewer.login, int(SESSION_LIFETIME.total_seconds()))


def forget() -> None:
    """End the session: in Redis (so no copy of the cookie works any more) and in this browser."""
    config, session_id = _config(), session.get(SESSION_ID)
    if config is not None and isinstance(session_id, str):
        config.sessions.end(session_id)
    session.clear()


def current_viewer() -> Viewer | None:
    """The viewer of the current request: token, signed-in session, or everyone when the dashboard is open.

    None when sign-in is required and nobody is signed in, or a bearer token is not a live API token.
    """
    if "clarity_viewer" not in g:
        g.clarity_viewer = _resolve()
    viewer: Viewer | None = g.clarity_viewer
    return viewer


def forget_viewer() -> None:
    """Drop the viewer read for this request, so the next `current_viewer()` reads it afresh (a long socket)."""
    g.pop("clarity_viewer", None)


def _resolve() -> Viewer | None:
    config = _config()
    if config is None:  # a bare blueprint (tests, tools): no sign-in configured
        return OPEN_VIEWER
    token = bearer_token()
    if token is not None:
        record = config.tokens.verify(token)
        return token_viewer(record) if record is not None else None
    if config.open:
        return OPEN_VIEWER
    if not config.sign_in:
        return None
    viewer = session_viewer(session.get(SESSION_VIEWER))
    session_id = session.get(SESSION_ID)
    if viewer is None or not isinstance(session_id, str) or not config.sessions.alive(session_id, viewer.login):
        return None  # signed out, revoked or expired: the cookie's copy of the viewer counts for nothing
    return viewer


def csrf_token() -> str:
    """The session's CSRF token (made on first use), for forms (`csrf_token` field) and scripts' headers."""
    token = session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF] = token
    return token


def wants_json() -> bool:
    """Whether a refusal should be JSON (API, live feed, scripts) rather than a page or a redirect."""
    return (request.path.startswith(JSON_PREFIXES) or "Authorization" in request.headers or request.is_json
            or "json" in request.headers.get("Accept", ""))


def refuse(status: int, message: str) -> Response:
    """A refusal: JSON `{"message"}` for scripts, plain text for people."""
    if wants_json():
        resp = jsonify({"message": message})
    else:
        resp = Response(message + "\n", mimetype="text/plain")
    resp.status_code = status
    return resp


def guard() -> ResponseReturnValue | None:
    """Before every request: sign-in required outside OPEN_PATHS; CSRF token on state-changing requests."""
    endpoint = request.endpoint or ""
    unguarded = request.path in OPEN_PATHS or endpoint == "static" or endpoint.endswith(".static")
    config = _config()
    if not unguarded and config is not None and config.open and bearer_token() is None \
            and not host_allowed(request.host, config.settings.public_url):
        return refuse(421, f"this open dashboard answers only at {config.settings.public_url} (or on a loopback "
                           f"address), not at {request.host!r}: set CLARITY_PUBLIC_URL to the address you use")
    if not unguarded and current_viewer() is None:
        return _signed_out()
    if request.method in STATE_CHANGING and request.path not in CSRF_EXEMPT and bearer_token() is None:
        return _csrf_problem()
    return None


def host_allowed(host: str, public_url: str) -> bool:
    """Whether a request's Host is the public URL's host or a loopback name (never a name rebound to us)."""
    try:
        name = (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:
        return False
    return name in LOOPBACK_HOSTS or name == (urlsplit(public_url).hostname or "").lower()


def _signed_out() -> ResponseReturnValue:
    config = _config()
    if bearer_token() is not None:
        resp = refuse(401, "this API token is not valid (revoked, or never made here)")
    elif config is not None and not config.sign_in and not config.open:
        if not wants_json():
            return not_configured()
        resp = refuse(401, "sign-in is not configured on this Clarity: send Authorization: Bearer <API token> "
                           f"(`clarity tokens create`), or {HOW_TO_SIGN_IN}")
    elif wants_json():
        resp = refuse(401, "sign in first: open /login in a browser, or send Authorization: Bearer <API token>")
    else:
        return redirect(f"/login?next={_quote_path()}")
    resp.headers["WWW-Authenticate"] = 'Bearer realm="clarity"'
    return resp


def not_configured() -> ResponseReturnValue:
    """The page a closed dashboard answers: sign-in is not configured, and how to configure it."""
    return render_template("closed.html", how=HOW_TO_SIGN_IN), 503


def _quote_path() -> str:
    from urllib.parse import quote

    path = request.full_path.rstrip("?") if request.query_string else request.path
    return quote(path, safe="")


def _csrf_problem() -> Response | None:
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    expected = session.get(SESSION_CSRF)
    if not sent:
        return refuse(400, f"missing CSRF token: send the page's {CSRF_FIELD} form field or an {CSRF_HEADER} header")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        return refuse(403, "the CSRF token does not match this session: reload the page and try again")
    return None


def visible_executions(store: Store, viewer: Viewer, limit: int = 200) -> list[Execution]:
    """The newest executions the viewer sees (read per installation, so others' executions never crowd them out)."""
    if viewer.everything:
        return store.executions(limit=limit)
    found = [ex for inst in viewer.roles for ex in store.executions(installation_id=inst, limit=limit)]
    return sorted(found, key=lambda ex: ex.created_at, reverse=True)[:limit]
