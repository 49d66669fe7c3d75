"""The signed-in user's side of the app: ``GET /user`` and the installations and repos they can reach.

``/user/installations...`` answer only user access tokens made by the app's OAuth web flow (``ghu_``),
as on GitHub; a user can reach an installation when they own its account or are a collaborator on one
of its repositories, and see only those repositories, each with their ``permissions``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from forge.auth import Principal
from forge.context import forge_context
from forge.records import ROLE_RANK, Repo
from forge.rest.access import principal
from forge.rest.errors import forbidden, not_found, unauthorized
from forge.rest.paging import paginate
from forge.shapes import ts

blueprint = Blueprint("forge_rest_users", __name__)


def _user() -> Principal:
    who = principal()
    if who.kind == "none":
        raise unauthorized()
    if who.kind != "user":
        raise forbidden()
    return who


def _app_user() -> Principal:
    """A user acting through the current app (GitHub refuses personal tokens here)."""
    who = _user()
    if who.client_id != forge_context().app.client_id:
        raise forbidden("You must authenticate with an access token authorized to a GitHub App in order "
                        "to list installations")
    return who


def permissions_for(role: str) -> dict[str, bool]:
    """GitHub's repository `permissions` flags for a role."""
    rank = ROLE_RANK.get(role, 0)
    return {"admin": rank >= 5, "maintain": rank >= 4, "push": rank >= 3, "triage": rank >= 2, "pull": rank >= 1}


def _reachable(login: str) -> dict[int, list[tuple[Repo, str]]]:
    """Installation id → the repos of it the user has a role on (owner or collaborator), with that role."""
    state = forge_context().state
    found: dict[int, list[tuple[Repo, str]]] = {}
    for repo in state.repos():
        role = state.role(repo.full_name, login)
        if role is not None:
            found.setdefault(repo.installation_id, []).append((repo, role))
    return found


def _profile(login: str) -> dict[str, Any]:
    """The public profile of an account (a person, an organization or an app's bot)."""
    ctx = forge_context()
    profile = ctx.shapes.user(login)
    assert profile is not None
    record = ctx.state.user(login)
    created = ts(record.created_at) if record is not None else None
    return {**profile, "name": None, "company": None, "blog": "", "location": None, "email": None,
            "hireable": None, "bio": None, "twitter_username": None, "public_repos": 0, "public_gists": 0,
            "followers": 0, "following": 0, "created_at": created, "updated_at": created}


@blueprint.get("/user")
def get_authenticated_user() -> Response:
    """GET /user: the public profile of the token's user."""
    return jsonify(_profile(_user().login or ""))


@blueprint.get("/users/<username>")
def get_user(username: str) -> Response:
    """GET /users/{username}: any account's public profile, for any caller (an app's bot too: its user id
    is not the app's id, and makes its commit email `<id>+<slug>[bot]@users.noreply.github.com`)."""
    record = forge_context().state.user(username)
    if record is None:
        raise not_found()
    return jsonify(_profile(record.login))


@blueprint.get("/user/installations")
def list_installations_for_authenticated_user() -> Response:
    """GET /user/installations: the app's installations the user can reach."""
    who = _app_user()
    ctx = forge_context()
    reachable = _reachable(who.login or "")
    installations = [i for i in ctx.state.installations() if i.id in reachable]
    return paginate(installations, ctx.shapes.installation, wrap="installations")


@blueprint.get("/user/installations/<int:installation_id>/repositories")
def list_installation_repos_for_authenticated_user(installation_id: int) -> Response:
    """GET /user/installations/{id}/repositories: the repos of it the user can reach, with permissions."""
    who = _app_user()
    ctx = forge_context()
    repos = _reachable(who.login or "").get(installation_id)
    if not repos:
        raise not_found()

    def shape(item: tuple[Repo, str]) -> dict[str, Any]:
        repo, role = item
        return {**ctx.shapes.repo(repo), "permissions": permissions_for(role), "role_name": role}

    return paginate(repos, shape, wrap="repositories", extra={"repository_selection": "all"})
