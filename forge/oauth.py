"""GitHub's OAuth web flow for the app: the "Authorize <app>" page, its one-time codes, and the token exchange.

GitHub's flow: the app sends the person to ``/login/oauth/authorize?client_id=…&redirect_uri=…&state=…``;
they click "Authorize"; GitHub redirects to ``redirect_uri?code=…&state=…``; the app POSTs the code with
its client id and secret to ``/login/oauth/access_token`` and gets a user access token (``ghu_``) that
acts as the person through the app (``GET /user``, ``GET /user/installations``). Codes work once and for
ten minutes. Failures of the exchange are 200 answers with an ``error`` field, as on GitHub.
The forge has no sign-in: the page lets you pick the user (``login=`` preselects one).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from forge.app_identity import AppIdentity
from forge.context import forge_context
from forge.manifests import WEB_USER, with_query

blueprint = Blueprint("forge_oauth", __name__, template_folder="templates")
_TROUBLESHOOTING = ("https://docs.github.com/apps/managing-oauth-apps/"
                    "troubleshooting-oauth-app-access-token-request-errors/")
ERRORS = {
    "bad_verification_code": ("The code passed is incorrect or expired.", "#bad-verification-code"),
    "incorrect_client_credentials": ("The client_id and/or client_secret passed are incorrect.",
                                     "#incorrect-client-credentials"),
    "redirect_uri_mismatch": ("The redirect_uri MUST match the registered callback URL for this application.",
                              "#redirect-uri-mismatch2"),
}


def redirect_allowed(app: AppIdentity, redirect_uri: str) -> bool:
    """GitHub's rule: same host and port as a registered callback URL, path equal to it or below it.

    An app without callback URLs (the forge's default app) accepts any http(s) URL.
    """
    wanted = urlsplit(redirect_uri)
    if wanted.scheme not in ("http", "https") or not wanted.netloc:
        return False
    if not app.callback_urls:
        return True
    for callback in app.callback_urls:
        allowed = urlsplit(callback)
        base = allowed.path.rstrip("/")
        if (allowed.scheme, allowed.netloc) == (wanted.scheme, wanted.netloc) and (
                wanted.path.rstrip("/") == base or wanted.path.startswith(base + "/")):
            return True
    return False


def _page(error: str, status: int) -> tuple[str, int]:
    return render_template("forge_authorize.html", error=error, app=None), status


def _check_request(values: Any) -> tuple[AppIdentity, str, ResponseReturnValue | None]:
    """The app and redirect of an authorize request, and the page or redirect GitHub answers instead, if any."""
    app = forge_context().app
    redirect_uri = values.get("redirect_uri") or (app.callback_urls[0] if app.callback_urls else "")
    if values.get("client_id", "") != app.client_id:
        return app, redirect_uri, _page("This page could not be found: no application has that client_id.", 404)
    if not redirect_uri:
        return app, redirect_uri, _page("redirect_uri is required: the app registers no callback URL.", 422)
    if not redirect_allowed(app, redirect_uri):
        if app.callback_urls:  # GitHub sends the error to the registered callback
            text, _ = ERRORS["redirect_uri_mismatch"]
            return app, redirect_uri, redirect(with_query(
                app.callback_urls[0], error="redirect_uri_mismatch", error_description=text,
                state=values.get("state", "")), code=302)
        return app, redirect_uri, _page(f"redirect_uri {redirect_uri!r} is not an http(s) URL.", 422)
    return app, redirect_uri, None


@blueprint.get("/login/oauth/authorize")
def authorize_page() -> ResponseReturnValue:
    """"Authorize <app>": pick the user (the forge has no sign-in) and confirm."""
    app, redirect_uri, refusal = _check_request(request.args)
    if refusal is not None:
        return refusal
    users = [u.login for u in forge_context().state.users() if u.type == "User"]
    chosen = request.args.get("login") or (users[0] if users else WEB_USER)
    return render_template("forge_authorize.html", error=None, app=app, users=users, chosen=chosen,
                           redirect_uri=redirect_uri, state=request.args.get("state", ""))


@blueprint.post("/login/oauth/authorize")
def authorize() -> ResponseReturnValue:
    """The "Authorize" button: 302 to ``redirect_uri?code=…&state=…`` (or ``error=access_denied``)."""
    app, redirect_uri, refusal = _check_request(request.form)
    if refusal is not None:
        return refusal
    state = request.form.get("state", "")
    if request.form.get("cancel"):
        return redirect(with_query(redirect_uri, error="access_denied",
                                   error_description="The user has denied your application access.",
                                   state=state), code=302)
    ctx = forge_context()
    login = (request.form.get("login") or "").strip()
    user = ctx.state.user(login) if login else None
    if user is None or user.type != "User":
        return _page(f"There is no user {login!r} to sign in as.", 422)
    code = ctx.tokens.issue_oauth_code(user.login, app.client_id, redirect_uri)
    return redirect(with_query(redirect_uri, code=code, state=state), code=302)


@blueprint.post("/login/oauth/access_token")
def access_token() -> Response:
    """Exchange a code for a user access token (form, query or JSON parameters; JSON answer on request)."""
    params: dict[str, Any] = {**request.values.to_dict()}
    body = request.get_json(silent=True, force=True) if request.get_data() and not request.form else None
    if isinstance(body, dict):
        params.update({k: str(v) for k, v in body.items() if v is not None})
    ctx = forge_context()
    app = ctx.app
    if params.get("client_id") != app.client_id or params.get("client_secret") != app.client_secret:
        return _answer(_error("incorrect_client_credentials"))
    grant = ctx.tokens.redeem_oauth_code(str(params.get("code") or ""))
    if grant is None or grant.client_id != app.client_id:
        return _answer(_error("bad_verification_code"))
    if params.get("redirect_uri") and params["redirect_uri"] != grant.redirect_uri:
        return _answer(_error("redirect_uri_mismatch"))
    token, _ = ctx.tokens.issue_user_access_token(grant.login, app.client_id)
    return _answer({"access_token": token, "token_type": "bearer", "scope": ""})


def _error(name: str) -> dict[str, str]:
    text, anchor = ERRORS[name]
    return {"error": name, "error_description": text, "error_uri": _TROUBLESHOOTING + anchor}


def _answer(data: dict[str, str]) -> Response:
    """JSON when asked for (``Accept: application/json``), else GitHub's default: a form-encoded body."""
    if "json" in request.headers.get("Accept", ""):
        return jsonify(data)
    return Response(urlencode(data), mimetype="application/x-www-form-urlencoded")
