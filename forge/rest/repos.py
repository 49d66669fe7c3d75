"""Repos API: the repository, collaborator permissions, contents, refs and branches (read from git)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from forge import git_repos
from forge.context import forge_context
from forge.records import Repo
from forge.rest.access import require_repo, user_role
from forge.rest.errors import ApiError, not_found
from forge.rest.paging import paginate

blueprint = Blueprint("forge_rest_repos", __name__)


@blueprint.get("/repos/<owner>/<repo>")
def get_repo(owner: str, repo: str) -> Response:
    """GET /repos/{owner}/{repo}."""
    return jsonify(forge_context().shapes.repo(require_repo(owner, repo)))


@blueprint.get("/repos/<owner>/<repo>/collaborators/<username>/permission")
def get_collaborator_permission(owner: str, repo: str, username: str) -> Response:
    """GET .../collaborators/{username}/permission: `read` for non-collaborators of public repos."""
    record = require_repo(owner, repo)
    ctx = forge_context()
    user = ctx.state.user(username)
    if user is None:
        raise not_found()
    role = user_role(record, user.login)
    custom = ctx.state.custom_role(record.full_name, user.login) if role != "none" else None
    return jsonify(ctx.shapes.permission(record.full_name, user.login, role, custom))


def _resolve_or_404(owner: str, repo: str, ref: str | None) -> tuple[Repo, str, str]:
    record = require_repo(owner, repo, "contents", "read")
    ctx = forge_context()
    ref = ref or record.default_branch
    sha = git_repos.resolve_ref_name(ctx.code.bare(record), ref)
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}")
    return record, ref, sha


@blueprint.get("/repos/<owner>/<repo>/contents", strict_slashes=False)
def get_root_content(owner: str, repo: str) -> Response:
    """GET .../contents/?ref=: the root directory listing."""
    return get_content(owner, repo, "")


@blueprint.get("/repos/<owner>/<repo>/contents/<path:path>")
def get_content(owner: str, repo: str, path: str) -> Response:
    """GET .../contents/{path}?ref=: a file (base64) or a directory listing."""
    record, ref, sha = _resolve_or_404(owner, repo, request.args.get("ref"))
    code = forge_context().code
    found = git_repos.read_path(code.bare(record), sha, path)
    if found is None:
        raise not_found()
    if isinstance(found, git_repos.Blob):
        return jsonify(code.content_file(record, ref, found))
    return jsonify([code.content_entry(record, ref, entry) for entry in found])


@blueprint.get("/repos/<owner>/<repo>/git/ref/<path:ref>")
def get_ref(owner: str, repo: str, ref: str) -> Response:
    """GET .../git/ref/heads/{branch} (or tags/{tag})."""
    record = require_repo(owner, repo, "contents", "read")
    code = forge_context().code
    if not ref.startswith(("heads/", "tags/")):
        raise not_found()
    sha = git_repos.resolve(code.bare(record), f"refs/{ref}")
    if sha is None:
        raise not_found()
    return jsonify(code.git_ref(record, f"refs/{ref}", sha))


@blueprint.get("/repos/<owner>/<repo>/branches")
def list_branches(owner: str, repo: str) -> Response:
    """GET .../branches."""
    record = require_repo(owner, repo, "contents", "read")
    code = forge_context().code
    branches = sorted(git_repos.branches(code.bare(record)).items())
    return paginate(branches, lambda item: code.short_branch(record, item[0], item[1]))


@blueprint.get("/repos/<owner>/<repo>/branches/<path:branch>")
def get_branch(owner: str, repo: str, branch: str) -> Response:
    """GET .../branches/{branch}."""
    record = require_repo(owner, repo, "contents", "read")
    code = forge_context().code
    sha = git_repos.resolve(code.bare(record), f"refs/heads/{branch}")
    if sha is None:
        raise ApiError(404, "Branch not found")
    return jsonify(code.branch(record, branch, sha))


@blueprint.get("/repos/<owner>/<repo>/commits/<path:ref>")
def get_commit(owner: str, repo: str, ref: str) -> Response:
    """GET .../commits/{ref} (without the diff `files`)."""
    record, _, sha = _resolve_or_404(owner, repo, ref)
    return jsonify(forge_context().code.commit(record, sha))
