"""Issues API: issues (PRs included, as on GitHub), issue comments and comment reactions."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from forge.context import forge_context
from forge.records import Comment, Issue, Repo, now
from forge.rest.access import actor, field, json_body, principal, require_repo, require_write_role
from forge.rest.errors import ApiError, not_found, validation_failed
from forge.rest.paging import paginate
from forge.shapes import REACTIONS

blueprint = Blueprint("forge_rest_issues", __name__)
MAX_BODY = 65536


def created(body: object) -> Response:
    """A 201 JSON response."""
    resp = jsonify(body)
    resp.status_code = 201
    return resp


def _issue_or_404(repo: Repo, number: int) -> Issue:
    issue = forge_context().state.issue(repo.full_name, number)
    if issue is None:
        raise not_found()
    return issue


def _comment_or_404(repo: Repo, comment_id: int) -> Comment:
    comment = forge_context().state.comment(comment_id)
    if comment is None or comment.repo.lower() != repo.full_name.lower():
        raise not_found()
    return comment


def _check_body_length(body: str, resource: str) -> None:
    if len(body) > MAX_BODY:
        raise validation_failed(
            {
                "resource": resource,
                "code": "unprocessable",
                "field": "data",
                "message": f"Body is too long (maximum is {MAX_BODY} characters)",
            }
        )


@blueprint.get("/repos/<owner>/<repo>/issues")
def list_issues(owner: str, repo: str) -> Response:
    """GET .../issues?state=open|closed|all (newest first, PRs included)."""
    record = require_repo(owner, repo, "issues", "read")
    state = request.args.get("state", "open")
    issues = [i for i in forge_context().state.issues(record.full_name) if state == "all" or i.state == state]
    return paginate(sorted(issues, key=lambda i: i.number, reverse=True), forge_context().shapes.issue)


@blueprint.post("/repos/<owner>/<repo>/issues")
def create_issue(owner: str, repo: str) -> Response:
    """POST .../issues {title, body, labels}."""
    record = require_repo(owner, repo, "issues", "write")
    body = json_body()
    title = field(body, "title", str, required=True)
    text = field(body, "body", str)
    labels = tuple(str(label) for label in field(body, "labels", list) or [])
    if text is not None:
        _check_body_length(text, "Issue")
    ctx = forge_context()
    issue = ctx.state.add_issue(record.full_name, title, text, actor())
    if labels:
        issue = ctx.state.update_issue(record.full_name, issue.number, labels=labels)
    return created(ctx.shapes.issue(issue))


@blueprint.get("/repos/<owner>/<repo>/issues/<int:number>")
def get_issue(owner: str, repo: str, number: int) -> Response:
    """GET .../issues/{number}: issues and PRs (a PR has `pull_request`)."""
    record = require_repo(owner, repo, "issues", "read")
    return jsonify(forge_context().shapes.issue(_issue_or_404(record, number)))


@blueprint.patch("/repos/<owner>/<repo>/issues/<int:number>")
def update_issue(owner: str, repo: str, number: int) -> Response:
    """PATCH .../issues/{number} {title, body, state, state_reason, labels}."""
    record = require_repo(owner, repo, "issues", "write")
    issue = _issue_or_404(record, number)
    require_write_role(record, issue.author)
    body = json_body()
    changes: dict[str, object] = {}
    for name in ("title", "body"):
        if (value := field(body, name, str)) is not None:
            changes[name] = value
    if (labels := field(body, "labels", list)) is not None:
        changes["labels"] = tuple(str(label) for label in labels)
    state = field(body, "state", str)
    if state is not None:
        if state not in ("open", "closed"):
            raise validation_failed({"resource": "Issue", "field": "state", "code": "invalid"})
        if state != issue.state:
            changes.update(
                state=state,
                closed_at=now() if state == "closed" else None,
                state_reason=field(body, "state_reason", str)
                or ("completed" if state == "closed" else "reopened"),
            )
    updated = forge_context().state.update_issue(record.full_name, number, **changes)
    return jsonify(forge_context().shapes.issue(updated))


@blueprint.get("/repos/<owner>/<repo>/issues/<int:number>/comments")
def list_comments(owner: str, repo: str, number: int) -> Response:
    """GET .../issues/{number}/comments?since= (oldest first; `since`: updated at or after, ISO 8601)."""
    record = require_repo(owner, repo, "issues", "read")
    issue = _issue_or_404(record, number)
    ctx = forge_context()
    comments = ctx.state.comments(record.full_name, issue.number)
    if (since := request.args.get("since")) is not None:
        try:
            after = datetime.fromisoformat(since)
        except ValueError as exc:
            raise validation_failed({"resource": "IssueComment", "field": "since", "code": "invalid"}) from exc
        after = after if after.tzinfo else after.replace(tzinfo=UTC)
        comments = [c for c in comments if c.updated_at >= after]
    return paginate(comments, ctx.shapes.comment)


@blueprint.post("/repos/<owner>/<repo>/issues/<int:number>/comments")
def create_comment(owner: str, repo: str, number: int) -> Response:
    """POST .../issues/{number}/comments {body}: made by the caller (the bot for installation tokens)."""
    record = require_repo(owner, repo, "issues", "write")
    issue = _issue_or_404(record, number)
    text = field(json_body(), "body", str, required=True)
    _check_body_length(text, "IssueComment")
    ctx = forge_context()
    comment = ctx.state.add_comment(
        record.full_name, issue.number, actor(), text, via_app=principal().kind == "installation"
    )
    ctx.state.update_issue(record.full_name, issue.number)
    return created(ctx.shapes.comment(comment))


@blueprint.get("/repos/<owner>/<repo>/issues/comments/<int:comment_id>")
def get_comment(owner: str, repo: str, comment_id: int) -> Response:
    """GET .../issues/comments/{comment_id}."""
    record = require_repo(owner, repo, "issues", "read")
    return jsonify(forge_context().shapes.comment(_comment_or_404(record, comment_id)))


@blueprint.patch("/repos/<owner>/<repo>/issues/comments/<int:comment_id>")
def update_comment(owner: str, repo: str, comment_id: int) -> Response:
    """PATCH .../issues/comments/{comment_id} {body}: only its author (or a writer) may edit."""
    record = require_repo(owner, repo, "issues", "write")
    comment = _comment_or_404(record, comment_id)
    who = principal()
    if who.kind == "installation" and comment.author.lower() != actor().lower():
        raise ApiError(403, "Resource not accessible by integration")
    require_write_role(record, comment.author)
    text = field(json_body(), "body", str, required=True)
    _check_body_length(text, "IssueComment")
    ctx = forge_context()
    return jsonify(ctx.shapes.comment(ctx.state.update_comment(comment.id, text)))


@blueprint.get("/repos/<owner>/<repo>/issues/comments/<int:comment_id>/reactions")
def list_reactions(owner: str, repo: str, comment_id: int) -> Response:
    """GET .../issues/comments/{comment_id}/reactions?content=."""
    record = require_repo(owner, repo, "issues", "read")
    comment = _comment_or_404(record, comment_id)
    ctx = forge_context()
    content = request.args.get("content")
    reactions = [r for r in ctx.state.reactions(comment.id) if content is None or r.content == content]
    return paginate(reactions, ctx.shapes.reaction)


@blueprint.post("/repos/<owner>/<repo>/issues/comments/<int:comment_id>/reactions")
def create_reaction(owner: str, repo: str, comment_id: int) -> Response:
    """POST .../reactions {content}: 201 when new, 200 when the caller already reacted so."""
    record = require_repo(owner, repo, "issues", "write")
    comment = _comment_or_404(record, comment_id)
    content = field(json_body(), "content", str, required=True)
    if content not in REACTIONS:
        raise invalid_content(content)
    ctx = forge_context()
    reaction, new = ctx.state.add_reaction(comment.id, actor(), content)
    resp = jsonify(ctx.shapes.reaction(reaction))
    resp.status_code = 201 if new else 200
    return resp


def invalid_content(content: str) -> ApiError:
    """GitHub's answer to a reaction outside its eight."""
    return validation_failed(
        {
            "resource": "Reaction",
            "code": "invalid",
            "field": "content",
            "value": content,
            "message": f"{content} is not a valid reaction content. "
            f"Valid values are: {', '.join(REACTIONS)}.",
        }
    )
