"""The sliver of GraphQL the app needs: draft ↔ ready for review (GitHub has no REST call for it).

Served at ``/api/graphql``, where githubkit sends GraphQL when its base URL ends in ``/api/v3``.
Only `markPullRequestReadyForReview` and `convertPullRequestToDraft` are understood.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from flask import Blueprint, Response, jsonify

from forge.context import forge_context
from forge.records import Issue
from forge.rest.access import json_body, principal, require_repo
from forge.rest.errors import unauthorized
from forge.rest.pulls import DRAFTS_UNSUPPORTED, drafts_supported
from forge.shapes import node_id

blueprint = Blueprint("forge_graphql", __name__)
MUTATIONS = {"markPullRequestReadyForReview": False, "convertPullRequestToDraft": True}
_MUTATION = re.compile(r"\b(" + "|".join(MUTATIONS) + r")\s*\(")
_LITERAL_ID = re.compile(r'pullRequestId\s*:\s*"([^"]+)"')
_PULL_NODE = re.compile(r"^0\d+:PullRequest(\d+)$")


def _errors(message: str, type_: str = "FORGE_UNSUPPORTED") -> Response:
    return jsonify({"errors": [{"type": type_, "message": message}]})


def _pull_id(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        match = _PULL_NODE.match(base64.b64decode(value, validate=True).decode())
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(match[1]) if match else None


def _find_pull(pull_id: int) -> Issue | None:
    state = forge_context().state
    for repo in state.repos():
        for issue in state.issues(repo.full_name):
            if issue.pull is not None and issue.pull.id == pull_id:
                return issue
    return None


@blueprint.post("/api/graphql")
def graphql() -> Response:
    """Answer the draft mutations; anything else gets a GraphQL error naming the limitation."""
    if principal().kind == "none":
        raise unauthorized("This endpoint requires you to be authenticated.")
    body = json_body()
    query = str(body.get("query") or "")
    variables = body.get("variables") or {}
    mutation = _MUTATION.search(query)
    if mutation is None:
        return _errors(
            "The forge's GraphQL only supports markPullRequestReadyForReview and convertPullRequestToDraft."
        )
    literal = _LITERAL_ID.search(query)
    candidates = [literal[1]] if literal else []
    candidates += list(variables.values()) if isinstance(variables, dict) else []
    for value in list(candidates):
        if isinstance(value, dict):
            candidates.extend(value.values())
    pull_id = next((pid for pid in map(_pull_id, candidates) if pid is not None), None)
    issue = _find_pull(pull_id) if pull_id is not None else None
    if issue is None or issue.pull is None:
        return _errors("Could not resolve to a node with the global id given.", "NOT_FOUND")
    owner, name = issue.repo.split("/", 1)
    repo = require_repo(owner, name, scope="pull_requests", level="write")
    if MUTATIONS[mutation[1]] and not drafts_supported(repo):
        return _errors(DRAFTS_UNSUPPORTED, "UNPROCESSABLE")
    ctx = forge_context()
    updated = ctx.state.update_pull(repo.full_name, issue.number, draft=MUTATIONS[mutation[1]])
    assert updated.pull is not None
    return jsonify(
        {
            "data": {
                mutation[1]: {
                    "pullRequest": {
                        "id": node_id("PullRequest", updated.pull.id),
                        "number": updated.number,
                        "isDraft": updated.pull.draft,
                        "url": f"{ctx.shapes.web}/{repo.full_name}/pull/{updated.number}",
                    }
                }
            }
        }
    )
