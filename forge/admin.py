"""The test/demo control API under ``/_forge/`` (no GitHub auth: the forge is a local test tool)."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from forge import api_versions, git_repos
from forge.context import forge_context
from forge.events import issue_comment_event
from forge.faults import AFTER_WRITE, GRAPHQL_MESSAGE, KINDS, Fault
from forge.hooks import Delivery
from forge.records import PLANS, ROLES

blueprint = Blueprint("forge_admin", __name__, url_prefix="/_forge")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_LOGIN = re.compile(r"^[A-Za-z0-9-]+(\[bot\])?$")


class AdminError(Exception):
    """A bad admin request: answered with JSON ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@blueprint.errorhandler(AdminError)
def _admin_error(exc: AdminError) -> Response:
    resp = jsonify({"message": exc.message})
    resp.status_code = exc.status
    return resp


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        raise AdminError(400, "the body must be a JSON object")
    return body


def _need(body: dict[str, Any], key: str) -> Any:
    if body.get(key) in (None, ""):
        raise AdminError(400, f"'{key}' is required")
    return body[key]


def _plan(value: Any) -> str:
    """An account plan, checked: it decides where drafts are refused."""
    if value not in PLANS:
        raise AdminError(400, f"plan must be one of {', '.join(PLANS)}")
    return str(value)


def _status(body: Any, code: int) -> Response:
    resp = jsonify(body)
    resp.status_code = code
    return resp


def _plain(value: Any) -> Any:
    """Records as JSON-ready data (datetimes in ISO 8601)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_plain(v) for v in value]
    return value


def _delivery_summary(delivery: Delivery) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "status_code": delivery.status_code,
        "ok": delivery.ok,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
    }


@blueprint.get("/health")
def health() -> Response:
    """Liveness plus the URLs a client needs."""
    ctx = forge_context()
    return jsonify(
        {
            "ok": True,
            "api_url": ctx.config.api_url,
            "public_url": ctx.config.public_url,
            "app_id": ctx.app.id,
            "app_slug": ctx.app.slug,
            "webhook_url": ctx.hooks.url,
        }
    )


@blueprint.get("/app")
def app_client() -> Response:
    """The current app's id, slug and OAuth client (id and secret), for configuring sign-in against the forge."""
    app = forge_context().app
    return jsonify({"app_id": app.id, "slug": app.slug, "client_id": app.client_id,
                    "client_secret": app.client_secret, "callback_urls": list(app.callback_urls)})


@blueprint.put("/app/permissions")
def set_app_permissions() -> Response:
    """Replace the app's permissions (`{"permissions": {"workflows": "none", ...}}`); new tokens get them."""
    permissions = _need(_body(), "permissions")
    if not isinstance(permissions, dict) or not all(
        isinstance(k, str) and v in ("none", "read", "write") for k, v in permissions.items()
    ):
        raise AdminError(400, "'permissions' must map scopes to none, read or write")
    ctx = forge_context()
    granted = {k: v for k, v in {**ctx.app.permissions, **permissions}.items() if v != "none"}
    ctx.apps.adopt(dataclasses.replace(ctx.app, permissions=granted))
    return jsonify({"permissions": granted})


@blueprint.put("/push-limits")
def set_push_limits() -> Response:
    """Lower (or raise) the largest file a push may carry, `{"max_file_bytes": N}` (GitHub: 100 MB)."""
    limit = _need(_body(), "max_file_bytes")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise AdminError(400, "'max_file_bytes' must be a positive integer")
    forge_context().state.max_file_bytes = limit
    return jsonify({"max_file_bytes": limit})


@blueprint.put("/push-visibility")
def set_push_visibility() -> Response:
    """For `{"seconds": N}` after each push the REST API does not see it yet, as on github.com (0: off)."""
    seconds = _body().get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise AdminError(400, "'seconds' must be a number of seconds, 0 or more")
    forge_context().state.visibility.set_delay(seconds)
    return jsonify({"seconds": seconds})


@blueprint.post("/repos")
def create_repo() -> Response:
    """Create a repo from `source_dir` (a git working copy or plain directory) or `files`; 201.

    `private` and `owner_plan` (free, pro, team, enterprise) decide, as on GitHub, whether it takes drafts.
    """
    body = _body()
    full_name = str(_need(body, "full_name"))
    owner, _, name = full_name.partition("/")
    if not _LOGIN.match(owner) or not _NAME.match(name) or name.endswith(".git"):
        raise AdminError(400, f"'{full_name}' is not a valid owner/repo name")
    ctx = forge_context()
    if ctx.state.repo(full_name) is not None:
        raise AdminError(422, f"{full_name}: name already exists on this account")
    source = Path(body["source_dir"]) if body.get("source_dir") else None
    if source is not None and not source.is_dir():
        raise AdminError(400, f"source_dir {source} is not a directory")
    files = body.get("files")
    if files is not None and not isinstance(files, dict):
        raise AdminError(400, "'files' must map paths to contents")
    plan = _plan(body["owner_plan"]) if body.get("owner_plan") else None  # with `private`: are drafts refused?
    bare = ctx.config.repos_dir / owner / f"{name}.git"
    try:
        branch = git_repos.create_bare(bare, source, files, body.get("default_branch") or "main")
    except (git_repos.GitError, OSError) as exc:
        raise AdminError(400, f"could not create {full_name}: {exc}") from exc
    if body.get("owner_type"):
        ctx.state.ensure_user(owner, str(body["owner_type"]))
    if plan:
        ctx.state.set_plan(owner, plan)
    repo = ctx.state.add_repo(owner, name, branch, bool(body.get("private")), body.get("description"))
    return _status(
        {
            "repository": ctx.shapes.repo(repo),
            "installation_id": repo.installation_id,
            "clone_url": ctx.shapes.clone_url(repo),
            "default_branch": branch,
        },
        201,
    )


@blueprint.get("/repos")
def list_repos() -> Response:
    """Every repo with its installation and clone URL."""
    ctx = forge_context()
    return jsonify(
        [
            {
                "full_name": r.full_name,
                "installation_id": r.installation_id,
                "clone_url": ctx.shapes.clone_url(r),
                "default_branch": r.default_branch,
            }
            for r in ctx.state.repos()
        ]
    )


@blueprint.post("/users")
def create_user() -> Response:
    """Create (or fetch) a user, on `plan` if given, and hand out a personal token acting as them."""
    body = _body()
    login = str(_need(body, "login"))
    if not _LOGIN.match(login):
        raise AdminError(400, f"'{login}' is not a valid login")
    ctx = forge_context()
    existed = ctx.state.user(login) is not None
    user = ctx.state.ensure_user(login, str(body.get("type") or "User"))
    if body.get("plan"):
        user = ctx.state.set_plan(login, _plan(body["plan"]))
    return _status(
        {"user": ctx.shapes.user(user.login), "token": ctx.tokens.issue_user_token(user.login)},
        200 if existed else 201,
    )


@blueprint.post("/tokens")
def create_token() -> Response:
    """A token without the JWT dance: `{"login": ...}` → user token, `{"installation_id": ...}` → ghs_."""
    body = _body()
    ctx = forge_context()
    if body.get("installation_id") is not None:
        inst = ctx.state.installation(int(body["installation_id"]))
        if inst is None:
            raise AdminError(404, f"no installation {body['installation_id']}")
        token, grant = ctx.tokens.issue_installation_token(inst.id, ctx.bot_login, permissions=ctx.app.permissions)
        return _status({"token": token, "expires_at": grant.expires_at.isoformat()}, 201)
    user = ctx.state.user(str(_need(body, "login")))
    if user is None:
        raise AdminError(404, f"no user {body['login']}")
    return _status({"token": ctx.tokens.issue_user_token(user.login)}, 201)


@blueprint.post("/tokens/expire")
def expire_tokens() -> Response:
    """Expire every installation token now (the app must fetch new ones)."""
    return jsonify({"expired": forge_context().tokens.expire_all()})


@blueprint.put("/repos/<owner>/<repo>/collaborators/<login>")
def set_collaborator(owner: str, repo: str, login: str) -> Response:
    """Give a user a role on a repo: admin, maintain, write, triage or read (`role_name`: a custom role on it)."""
    body = _body()
    role = str(_need(body, "permission"))
    if role not in ROLES:
        raise AdminError(400, f"permission must be one of {', '.join(ROLES)}")
    custom = str(body.get("role_name") or "") or None
    if custom is not None and (custom in ROLES or not _NAME.match(custom)):
        raise AdminError(400, "role_name must name a custom role (letters, digits, '.', '_', '-'), not a built-in one")
    ctx = forge_context()
    record = ctx.state.repo(f"{owner}/{repo}")
    if record is None:
        raise AdminError(404, f"no repo {owner}/{repo}")
    user = ctx.state.ensure_user(login)
    ctx.state.set_role(record.full_name, user.login, role, custom)
    return jsonify({"repo": record.full_name, "login": user.login, "permission": role, "role_name": custom or role})


@blueprint.post("/repos/<owner>/<repo>/issues")
def create_issue(owner: str, repo: str) -> Response:
    """Open an issue as any user."""
    body = _body()
    ctx = forge_context()
    record = ctx.state.repo(f"{owner}/{repo}")
    if record is None:
        raise AdminError(404, f"no repo {owner}/{repo}")
    author = ctx.state.ensure_user(str(body.get("user") or record.owner))
    issue = ctx.state.add_issue(record.full_name, str(_need(body, "title")), body.get("body"), author.login)
    return _status(ctx.shapes.issue(issue), 201)


@blueprint.post("/comment")
def comment() -> Response:
    """Comment as a user (creating the issue if needed) and deliver the signed `issue_comment` webhook."""
    body = _body()
    ctx = forge_context()
    record = ctx.state.repo(str(_need(body, "repo")))
    if record is None:
        raise AdminError(404, f"no repo {body['repo']}")
    number = int(_need(body, "issue"))
    author = ctx.state.ensure_user(str(body.get("user") or record.owner))
    issue = ctx.state.issue(record.full_name, number)
    if issue is None:
        issue = ctx.state.add_issue(record.full_name, f"Issue #{number}", None, author.login, number=number)
    text = str(_need(body, "body"))
    made = ctx.state.add_comment(record.full_name, issue.number, author.login, text, via_app=False)
    issue = ctx.state.update_issue(record.full_name, issue.number)
    payload = issue_comment_event(ctx, record, issue, made)
    delivery = ctx.hooks.deliver("issue_comment", payload, body.get("delivery_id"))
    return jsonify(
        {**_delivery_summary(delivery), "issue_number": issue.number, "comment": ctx.shapes.comment(made)}
    )


@blueprint.post("/deliver")
def deliver() -> Response:
    """Sign and send any payload: `payload` (object) or `payload_raw` (exact text, e.g. a fixture file)."""
    body = _body()
    payload: Any = body.get("payload_raw") if body.get("payload_raw") is not None else _need(body, "payload")
    delivery = forge_context().hooks.deliver(str(_need(body, "event")), payload, body.get("delivery_id"))
    return jsonify(_delivery_summary(delivery))


@blueprint.post("/redeliver/<delivery_id>")
def redeliver(delivery_id: str) -> Response:
    """Send an earlier delivery again with the same id (GitHub's "Redeliver" button)."""
    delivery = forge_context().hooks.redeliver(delivery_id)
    if delivery is None:
        raise AdminError(404, f"no delivery {delivery_id}")
    return jsonify(_delivery_summary(delivery))


@blueprint.get("/deliveries")
def deliveries() -> Response:
    """Every delivery attempt with headers, payload and outcome."""
    return jsonify([d.as_json() for d in forge_context().hooks.deliveries()])


@blueprint.put("/webhook")
def set_webhook() -> Response:
    """Point webhooks at another URL (or none)."""
    url = _body().get("url")
    forge_context().hooks.set_url(str(url) if url else None)
    return jsonify({"webhook_url": forge_context().hooks.url})


@blueprint.get("/calls")
def calls() -> Response:
    """Recorded calls; filters: `surface` (rest|git), `method`, `path` (substring)."""
    surface, method, path = (request.args.get(k) for k in ("surface", "method", "path"))
    return jsonify(
        [
            c
            for c in forge_context().calls.all()
            if (surface is None or c["surface"] == surface)
            and (method is None or c["method"] == method.upper())
            and (path is None or path in c["path"])
        ]
    )


@blueprint.delete("/calls")
def clear_calls() -> Response:
    """Forget recorded calls."""
    forge_context().calls.clear()
    return _status({}, 200)


@blueprint.post("/faults")
def add_fault() -> Response:
    """Fail the next `count` REST calls matching `path_regex` (kind: one of faults.KINDS).

    `server_error_after_write` performs the call first, then answers `status` (502) all the same.
    """
    body = _body()
    kind = str(body.get("kind") or "server_error")
    if kind not in KINDS:
        raise AdminError(400, f"kind must be one of {', '.join(KINDS)}")
    # A secondary limit with `"retry_after": null` comes without the header, as GitHub may send it.
    retry_after = None if "retry_after" in body and body["retry_after"] is None else int(body.get("retry_after") or 1)
    fault = Fault(
        str(_need(body, "path_regex")),
        str(body.get("method") or "*").upper(),
        kind,
        int(body.get("status") or {"server_error": 500, AFTER_WRITE: 502}.get(kind, 403)),
        int(body.get("count") or 1),
        retry_after,
        str(body.get("message") or GRAPHQL_MESSAGE),
    )
    forge_context().faults.add(fault)
    return _status(_plain(fault), 201)


@blueprint.delete("/faults")
def clear_faults() -> Response:
    """Drop pending faults."""
    forge_context().faults.clear()
    return _status({}, 200)


@blueprint.get("/state")
def state() -> Response:
    """Everything the forge holds besides git: users, repos, issues/pulls, comments, reactions, check runs."""
    return jsonify(_plain(forge_context().state.tables()))


@blueprint.get("/api-versions")
def get_api_versions() -> Response:
    """The REST API versions the forge accepts now."""
    return jsonify({"versions": list(forge_context().api_versions.known())})


@blueprint.put("/api-versions")
def set_api_versions() -> Response:
    """Accept `versions`, or the versions of a `mode`: `github.com` (both) or `ghes` (only 2022-11-28)."""
    body = _body()
    if "mode" in body:
        if body["mode"] not in api_versions.MODES:
            raise AdminError(400, f"mode must be one of {', '.join(api_versions.MODES)}")
        known = api_versions.MODES[body["mode"]]
    else:
        versions = _need(body, "versions")
        if not isinstance(versions, list) or not all(isinstance(v, str) and v for v in versions):
            raise AdminError(400, "'versions' must be a non-empty list of version strings")
        known = tuple(versions)
    forge_context().api_versions.set(known)
    return jsonify({"versions": list(known)})
