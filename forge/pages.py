"""Read-only HTML pages at GitHub's web paths, so `html_url` links in comments and checks resolve."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from forge import git_repos
from forge.context import forge_context
from forge.records import Repo

blueprint = Blueprint("forge_pages", __name__, template_folder="templates")


def _repo_or_404(owner: str, repo: str) -> Repo:
    record = forge_context().state.repo(f"{owner}/{repo}")
    if record is None:
        abort(404)
    return record


@blueprint.get("/")
def index() -> str:
    """Every repository."""
    return render_template("forge_index.html", repos=forge_context().state.repos())


@blueprint.get("/<owner>/<repo>")
def repository(owner: str, repo: str) -> str:
    """A repository: clone URL, branches, issues and pulls."""
    record = _repo_or_404(owner, repo)
    ctx = forge_context()
    return render_template(
        "forge_repo.html",
        repo=record,
        clone_url=ctx.shapes.clone_url(record),
        branches=sorted(git_repos.branches(ctx.code.bare(record)).items()),
        issues=list(reversed(ctx.state.issues(record.full_name))),
    )


@blueprint.get("/<owner>/<repo>/issues/<int:number>")
@blueprint.get("/<owner>/<repo>/pull/<int:number>")
def conversation(owner: str, repo: str, number: int) -> str:
    """An issue or PR with its comments, reactions and (for PRs) the head commit's check runs."""
    record = _repo_or_404(owner, repo)
    ctx = forge_context()
    issue = ctx.state.issue(record.full_name, number)
    if issue is None:
        abort(404)
    issue = ctx.code.live_pull(issue)
    comments = [
        {"comment": c, "reactions": ctx.state.reactions(c.id)}
        for c in ctx.state.comments(record.full_name, number)
    ]
    runs = ctx.state.check_runs(record.full_name, issue.pull.head_sha) if issue.pull else []
    return render_template("forge_issue.html", repo=record, issue=issue, comments=comments, runs=runs)


@blueprint.get("/<owner>/<repo>/runs/<int:run_id>")
def check_run(owner: str, repo: str, run_id: int) -> str:
    """A check run's output and annotations."""
    record = _repo_or_404(owner, repo)
    run = forge_context().state.check_run(run_id)
    if run is None or run.repo.lower() != record.full_name.lower():
        abort(404)
    return render_template("forge_run.html", repo=record, run=run)
