"""Pulls API: list, get, create and update pull requests between branches of the same repo."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from forge import git_repos, state_events
from forge.context import forge_context
from forge.records import NO_PRIVATE_DRAFTS, Issue, Pull, Repo, now
from forge.rest.access import actor, field, json_body, require_repo, require_write_role
from forge.rest.errors import ApiError, not_found, validation_failed
from forge.rest.issues import created
from forge.rest.paging import paginate

blueprint = Blueprint("forge_rest_pulls", __name__)
DRAFTS_UNSUPPORTED = "Draft pull requests are not supported in this repository."
_CREATE_DOCS = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"


def drafts_supported(repo: Repo) -> bool:
    """GitHub's rule: drafts on public repositories, and on private ones only for Team and Enterprise owners."""
    owner = forge_context().state.user(repo.owner)
    return not repo.private or (owner.plan if owner else "free") not in NO_PRIVATE_DRAFTS


def require_drafts(repo: Repo) -> None:
    """Refuse a draft where GitHub does: 422 with a bare message (no `errors`), as github.com answers it."""
    if not drafts_supported(repo):
        raise ApiError(422, DRAFTS_UNSUPPORTED, documentation_url=_CREATE_DOCS)


def _branch_name(repo: Repo, head: str) -> str | None:
    """`owner:branch` or `branch` → branch; None when it names another owner (forks are not modelled)."""
    if ":" in head:
        owner, branch = head.split(":", 1)
        return branch if owner.lower() == repo.owner.lower() else None
    return head


def _open_pull_for(repo: Repo, head_ref: str, except_number: int | None = None) -> Issue | None:
    for issue in forge_context().state.issues(repo.full_name):
        if (
            issue.pull is not None
            and issue.state == "open"
            and issue.number != except_number
            and issue.pull.head_ref == head_ref
        ):
            return issue
    return None


def _pull_or_404(repo: Repo, number: int) -> Issue:
    issue = forge_context().state.issue(repo.full_name, number)
    if issue is None or issue.pull is None:
        raise not_found()
    return issue


@blueprint.get("/repos/<owner>/<repo>/pulls")
def list_pulls(owner: str, repo: str) -> Response:
    """GET .../pulls?state=&head=owner:branch&base=&sort=&direction=."""
    record = require_repo(owner, repo, "pull_requests", "read")
    ctx = forge_context()
    state = request.args.get("state", "open")
    head = request.args.get("head")
    head_ref = _branch_name(record, head) if head else None
    base = request.args.get("base")
    pulls = [ctx.code.live_pull(i) for i in ctx.state.issues(record.full_name) if i.pull is not None]
    pulls = [
        p
        for p in pulls
        if (state == "all" or p.state == state)
        and (head is None or (p.pull is not None and p.pull.head_ref == head_ref))
        and (base is None or (p.pull is not None and p.pull.base_ref == base))
    ]
    key = {"updated": lambda i: i.updated_at}.get(request.args.get("sort", "created"), lambda i: i.number)
    pulls.sort(key=key, reverse=request.args.get("direction", "desc") == "desc")
    return paginate(pulls, ctx.code.pull)


@blueprint.get("/repos/<owner>/<repo>/pulls/<int:number>")
def get_pull(owner: str, repo: str, number: int) -> Response:
    """GET .../pulls/{number}."""
    record = require_repo(owner, repo, "pull_requests", "read")
    return jsonify(forge_context().code.pull(_pull_or_404(record, number)))


@blueprint.post("/repos/<owner>/<repo>/pulls")
def create_pull(owner: str, repo: str) -> Response:
    """POST .../pulls {title, head, base, body, draft}: validated against the real branches."""
    record = require_repo(owner, repo, "pull_requests", "write")
    require_write_role(record)
    body = json_body()
    head = field(body, "head", str, required=True)
    base = field(body, "base", str, required=True)
    title = field(body, "title", str, required=True)
    text = field(body, "body", str)
    draft = bool(field(body, "draft", bool))
    ctx = forge_context()
    bare = ctx.code.bare(record)
    base_sha = git_repos.resolve(bare, f"refs/heads/{base}")
    if base_sha is None:
        raise validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
    head_ref = _branch_name(record, head)
    head_sha = git_repos.resolve(bare, f"refs/heads/{head_ref}") if head_ref else None
    if head_ref is not None and ctx.state.visibility.branch_hidden(record.full_name, head_ref):
        head_sha = None  # pushed a moment ago: GitHub's REST API does not see it yet (forge.visibility)
    if head_ref is None or head_sha is None:
        raise validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
    if draft:
        require_drafts(record)
    if _open_pull_for(record, head_ref) is not None:
        raise validation_failed(
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": f"A pull request already exists for {record.owner}:{head_ref}.",
            }
        )
    if head_ref == base or git_repos.count_commits(bare, base_sha, head_sha) == 0:
        raise validation_failed(
            {
                "resource": "PullRequest",
                "code": "custom",
                "message": f"No commits between {base} and {head_ref}",
            }
        )
    pull = Pull(ctx.state.next_id("pull"), head_ref, base, head_sha, base_sha, draft)
    issue = ctx.state.add_issue(record.full_name, title, text, actor(), pull=pull)
    state_events.pull_changed(ctx, record, issue, "opened", actor())
    return created(ctx.code.pull(issue))


@blueprint.patch("/repos/<owner>/<repo>/pulls/<int:number>")
def update_pull(owner: str, repo: str, number: int) -> Response:
    """PATCH .../pulls/{number} {title, body, state, base}; `draft` is forge-only (GitHub needs GraphQL)."""
    record = require_repo(owner, repo, "pull_requests", "write")
    issue = _pull_or_404(record, number)
    assert issue.pull is not None
    require_write_role(record, issue.author)
    body = json_body()
    ctx = forge_context()
    changes: dict[str, object] = {}
    pull_changes: dict[str, object] = {}
    for name in ("title", "body"):
        if (value := field(body, name, str)) is not None:
            changes[name] = value
    if (base := field(body, "base", str)) is not None and base != issue.pull.base_ref:
        base_sha = git_repos.resolve(ctx.code.bare(record), f"refs/heads/{base}")
        if base_sha is None:
            raise validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
        pull_changes.update(base_ref=base, base_sha=base_sha)
    if (draft := field(body, "draft", bool)) is not None:
        if draft:
            require_drafts(record)
        pull_changes["draft"] = draft
    state = field(body, "state", str)
    if state is not None and state != issue.state:
        if state not in ("open", "closed"):
            raise validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
        if issue.pull.merged_at is not None:
            raise ApiError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": "Cannot reopen a merged pull request.",
                    }
                ],
            )
        if state == "open" and _open_pull_for(record, issue.pull.head_ref, number) is not None:
            raise validation_failed(
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"A pull request already exists for {record.owner}:{issue.pull.head_ref}.",
                }
            )
        changes.update(state=state, closed_at=now() if state == "closed" else None)
    if pull_changes:
        ctx.state.update_pull(record.full_name, number, **pull_changes)
    updated = ctx.state.update_issue(record.full_name, number, **changes)
    if (action := state_events.pull_action(issue, updated)) is not None:
        state_events.pull_changed(ctx, record, updated, action, actor())
    return jsonify(ctx.code.pull(updated))
