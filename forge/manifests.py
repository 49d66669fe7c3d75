"""The GitHub App manifest flow: the "new app" page, the redirect with a one-time code, the conversion.

GitHub's flow: a page POSTs a form field `manifest` (JSON) to ``/settings/apps/new?state=X`` (or
``/organizations/ORG/settings/apps/new?state=X``); the user confirms with "Create GitHub App for
<owner>"; GitHub redirects to the manifest's `redirect_url` with ``?code=...&state=X``; the app then
calls ``POST /app-manifests/{code}/conversions`` (no authentication) within an hour, once, and gets
the new app's id, key, webhook secret and OAuth client. Here the new app then takes over the forge
(forge.app_identity): its JWTs are accepted and deliveries go to its webhook, signed with its secret.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from forge.app_identity import CODE_LIFETIME, AppIdentity, PendingApp, slugify
from forge.context import forge_context
from forge.records import now
from forge.rest.errors import not_found

WEB_USER = "forge-user"  # the forge's web pages act as this signed-in user
LEVELS = ("read", "write", "admin")

pages = Blueprint("forge_manifest_pages", __name__, template_folder="templates")
api = Blueprint("forge_rest_manifests", __name__)


class ManifestError(ValueError):
    """A manifest GitHub would refuse; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """The parts of a manifest the forge uses, checked."""

    name: str
    url: str
    redirect_url: str
    hook_url: str | None
    description: str | None
    permissions: Mapping[str, str]
    events: tuple[str, ...]
    raw: Mapping[str, Any]


def parse_manifest(text: str) -> Manifest:
    """Read and check a manifest the way GitHub's form does; ManifestError names the field."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"the manifest is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError("the manifest must be a JSON object")
    url, redirect_url = data.get("url"), data.get("redirect_url")
    if not _is_http_url(url):
        raise ManifestError("url (the app's homepage) must be an http(s) URL")
    if not _is_http_url(redirect_url):
        raise ManifestError("redirect_url must be an http(s) URL: the forge sends the code there")
    hook = data.get("hook_attributes") or {}
    if not isinstance(hook, dict) or (hook.get("active", True) and not _is_http_url(hook.get("url"))):
        raise ManifestError("hook_attributes.url must be an http(s) URL (or set hook_attributes.active false)")
    permissions = data.get("default_permissions") or {}
    if not isinstance(permissions, dict) or any(
        not isinstance(k, str) or v not in LEVELS for k, v in permissions.items()
    ):
        raise ManifestError(f"default_permissions must map permission names to one of {', '.join(LEVELS)}")
    events = data.get("default_events") or []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ManifestError("default_events must be a list of event names")
    name = data.get("name")
    return Manifest(
        name=name.strip() if isinstance(name, str) else "",
        url=str(url),
        redirect_url=str(redirect_url),
        hook_url=str(hook["url"]) if hook.get("active", True) else None,
        description=data.get("description") if isinstance(data.get("description"), str) else None,
        permissions={"metadata": "read", **permissions},
        events=tuple(events),
        raw=data,
    )


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).netloc)


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@pages.route("/settings/apps/new", methods=["GET", "POST"])
def new_user_app() -> ResponseReturnValue:
    """Register an app owned by the signed-in user."""
    return _new_app(WEB_USER, "User")


@pages.route("/organizations/<org>/settings/apps/new", methods=["GET", "POST"])
def new_org_app(org: str) -> ResponseReturnValue:
    """Register an app owned by an organization."""
    return _new_app(org, "Organization")


def _new_app(owner: str, owner_type: str) -> ResponseReturnValue:
    state = request.args.get("state", "")
    text = request.form.get("manifest") if request.method == "POST" else None
    if not text:
        return render_template("forge_new_app.html", owner=owner, manifest=None, error=None, state=state)
    try:
        manifest = parse_manifest(text)
    except ManifestError as exc:
        return render_template("forge_new_app.html", owner=owner, manifest=None, error=str(exc), state=state), 422
    name = (request.form.get("name") or manifest.name).strip()
    page = {"owner": owner, "manifest": manifest, "manifest_text": text, "name": name, "state": state}
    if not request.form.get("confirm"):  # GitHub shows the app first; the user clicks "Create"
        return render_template("forge_new_app.html", error=None, **page)
    ctx = forge_context()
    if not name:
        return render_template("forge_new_app.html", error="Name can't be blank", **page), 422
    if ctx.apps.name_taken(name) or not slugify(name):
        return render_template("forge_new_app.html", error="Name is already in use", **page), 422
    ctx.state.ensure_user(owner, owner_type)
    code = ctx.apps.issue_code(PendingApp(name, owner, owner_type, manifest.raw, time.time() + CODE_LIFETIME))
    return redirect(with_query(manifest.redirect_url, code=code, state=state), code=302)


@pages.get("/apps/<slug>")
@pages.get("/apps/<slug>/installations/new")
def app_page(slug: str) -> str:
    """The app's public page; installing is implicit in the forge (every account with repos has it)."""
    ctx = forge_context()
    app = ctx.app
    if app.slug != slug:
        abort(404)
    return render_template("forge_app.html", app=app, installations=ctx.state.installations(),
                           installing=request.path.endswith("/installations/new"))


@api.post("/app-manifests/<code>/conversions")
def convert(code: str) -> tuple[Response, int]:
    """POST /app-manifests/{code}/conversions: the new app with its secrets; the code is spent."""
    ctx = forge_context()
    pending = ctx.apps.take_code(code)
    if pending is None:
        raise not_found()
    manifest = parse_manifest(json.dumps(pending.manifest))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    identity = AppIdentity(
        id=ctx.apps.next_id(),
        slug=slugify(pending.name),
        name=pending.name,
        owner=pending.owner,
        public_key=key.public_key(),
        client_id="Iv23li" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(14)),
        created_at=now(),
        client_secret=secrets.token_hex(20),
        callback_urls=tuple(str(u) for u in manifest.raw.get("callback_urls") or () if _is_http_url(u)),
        description=manifest.description,
        external_url=manifest.url,
        permissions=dict(manifest.permissions),
        events=manifest.events,
    )
    webhook_secret = secrets.token_hex(20)
    ctx.apps.adopt(identity)
    ctx.hooks.set_app(manifest.hook_url, webhook_secret, identity.id)
    ctx.state.ensure_user(identity.bot_login, "Bot")
    body = {**ctx.shapes.app(), "client_secret": identity.client_secret, "webhook_secret": webhook_secret,
            "pem": pem}
    return jsonify(body), 201
