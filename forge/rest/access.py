"""Who may do what: repo visibility per principal, installation permissions, and request bodies."""

from __future__ import annotations

from typing import Any

from flask import g, request

from forge.auth import ANONYMOUS, Principal
from forge.context import forge_context
from forge.records import ROLE_RANK, Repo
from forge.rest.errors import ApiError, forbidden, invalid_request, not_found, unauthorized

LEVEL_RANK = {"none": 0, "read": 1, "write": 2, "admin": 3}
_JSON_TYPES = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "an array"}


def principal() -> Principal:
    """The caller of the current request (set by the server's authentication hook)."""
    return getattr(g, "principal", ANONYMOUS)


def require_jwt() -> Principal:
    """The app itself must be calling (``Authorization: Bearer <jwt>``)."""
    who = principal()
    if who.kind != "jwt":
        raise unauthorized("A JSON web token could not be decoded")
    return who


def user_role(repo: Repo, login: str) -> str:
    """A user's effective role: explicit, else `read` on public repos, else `none`."""
    role = forge_context().state.role(repo.full_name, login)
    return role or ("none" if repo.private else "read")


def require_repo(owner: str, name: str, scope: str = "metadata", level: str = "read") -> Repo:
    """The repo, if the caller may use it with `scope` at `level` (GitHub hides what you cannot see: 404)."""
    who = principal()
    if who.kind == "none":
        raise unauthorized()
    if who.kind == "jwt":
        raise forbidden("Resource not accessible by integration")
    repo = forge_context().state.repo(f"{owner}/{name}")
    if repo is None:
        raise not_found()
    if who.kind == "installation":
        if repo.installation_id != who.installation_id:
            raise not_found()
        if who.repositories is not None and repo.name.lower() not in who.repositories:
            raise not_found()
        granted = who.permissions.get(scope, "none") if who.permissions is not None else "write"
        if LEVEL_RANK.get(granted, 0) < LEVEL_RANK[level]:
            raise forbidden("Resource not accessible by integration")
        return repo
    role = user_role(repo, who.login or "")
    if role == "none":
        raise not_found()
    return repo


def require_write_role(repo: Repo, author: str | None = None) -> None:
    """Users need write access (or to be the author) to change things; installations already passed."""
    who = principal()
    if who.kind != "user" or (author is not None and (who.login or "").lower() == author.lower()):
        return
    if ROLE_RANK[user_role(repo, who.login or "")] < ROLE_RANK["write"]:
        raise forbidden("Must have push access to repository")


def actor() -> str:
    """The account that acts for the caller: the bot for installation tokens."""
    who = principal()
    assert who.login is not None
    return who.login


def json_body() -> dict[str, Any]:
    """The request's JSON object (400/422 like GitHub when it is not one)."""
    if not request.get_data():
        return {}
    try:
        body = request.get_json(force=True)
    except Exception as exc:  # werkzeug raises BadRequest subclasses for malformed JSON
        raise ApiError(400, "Problems parsing JSON") from exc
    if not isinstance(body, dict):
        raise invalid_request(f"For 'links/0/schema', {body!r} is not an object.")
    return body


def field(body: dict[str, Any], name: str, type_: type, required: bool = False) -> Any:
    """A typed field of the body, with GitHub's schema-validator messages."""
    if name not in body or body[name] is None:
        if required:
            raise invalid_request(f'"{name}" wasn\'t supplied.')
        return None
    value = body[name]
    if not isinstance(value, type_) or (type_ is int and isinstance(value, bool)):
        raise invalid_request(
            f"For 'properties/{name}', {value!r} is not {_JSON_TYPES.get(type_, type_.__name__)}."
        )
    return value
