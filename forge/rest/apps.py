"""Apps API: the app itself, its installations, and installation access tokens (JWT-authenticated)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from forge.context import forge_context
from forge.rest.access import LEVEL_RANK, field, json_body, principal, require_jwt, require_repo
from forge.rest.errors import ApiError, not_found, unauthorized
from forge.rest.paging import paginate
from forge.shapes import ts

blueprint = Blueprint("forge_rest_apps", __name__)


@blueprint.get("/app")
def get_app() -> Response:
    """GET /app."""
    require_jwt()
    return jsonify(forge_context().shapes.app())


@blueprint.get("/app/installations")
def list_installations() -> Response:
    """GET /app/installations."""
    require_jwt()
    ctx = forge_context()
    return paginate(ctx.state.installations(), ctx.shapes.installation)


@blueprint.get("/app/installations/<int:installation_id>")
def get_installation(installation_id: int) -> Response:
    """GET /app/installations/{installation_id}."""
    require_jwt()
    ctx = forge_context()
    inst = ctx.state.installation(installation_id)
    if inst is None:
        raise not_found()
    return jsonify(ctx.shapes.installation(inst))


@blueprint.get("/repos/<owner>/<repo>/installation")
def get_repo_installation(owner: str, repo: str) -> Response:
    """GET /repos/{owner}/{repo}/installation."""
    require_jwt()
    ctx = forge_context()
    record = ctx.state.repo(f"{owner}/{repo}")
    inst = ctx.state.installation(record.installation_id) if record else None
    if inst is None:
        raise not_found()
    return jsonify(ctx.shapes.installation(inst))


@blueprint.post("/app/installations/<int:installation_id>/access_tokens")
def create_installation_access_token(installation_id: int) -> Response:
    """POST /app/installations/{installation_id}/access_tokens → a one-hour `ghs_` token."""
    require_jwt()
    ctx = forge_context()
    inst = ctx.state.installation(installation_id)
    if inst is None:
        raise not_found()
    body = json_body()
    owned = [r for r in ctx.state.repos() if r.installation_id == inst.id]
    names = field(body, "repositories", list)
    ids = field(body, "repository_ids", list)
    selected = None
    if names is not None or ids is not None:
        wanted_names = {str(n).lower() for n in names or []}
        wanted_ids = set(ids or [])
        chosen = [r for r in owned if r.name.lower() in wanted_names or r.id in wanted_ids]
        if len(chosen) != len(wanted_names) + len(wanted_ids):
            raise ApiError(
                422,
                "There is at least one repository that does not exist or is not accessible to "
                "the parent installation.",
            )
        selected = chosen
    permissions = field(body, "permissions", dict)
    if permissions is not None:
        for scope, level in permissions.items():
            if LEVEL_RANK.get(level, 99) > LEVEL_RANK.get(ctx.app.permissions.get(scope, "none"), 0):
                raise ApiError(422, "The permissions requested are not granted to this installation.")
    token, grant = ctx.tokens.issue_installation_token(
        inst.id,
        ctx.bot_login,
        frozenset(r.name.lower() for r in selected) if selected is not None else None,
        permissions if permissions is not None else ctx.app.permissions,
    )
    answer: dict[str, Any] = {
        "token": token,
        "expires_at": ts(grant.expires_at),
        "permissions": dict(grant.permissions or {}),
        "repository_selection": "selected" if selected is not None else "all",
    }
    if selected is not None:
        answer["repositories"] = [ctx.shapes.repo(r) for r in selected]
    resp = jsonify(answer)
    resp.status_code = 201
    return resp


@blueprint.get("/installation/repositories")
def list_installation_repositories() -> Response:
    """GET /installation/repositories: what an installation token can see."""
    who = principal()
    if who.kind != "installation":
        raise (
            unauthorized()
            if who.kind == "none"
            else ApiError(403, "This endpoint requires an installation token.")
        )
    ctx = forge_context()
    repos = [
        r
        for r in ctx.state.repos()
        if r.installation_id == who.installation_id
        and (who.repositories is None or r.name.lower() in who.repositories)
    ]
    visible = [require_repo(r.owner, r.name) for r in repos]
    return paginate(
        visible,
        ctx.shapes.repo,
        wrap="repositories",
        extra={"repository_selection": "all" if who.repositories is None else "selected"},
    )
