"""Checks API: create, update, get and list check runs (only the app may write them)."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request

from forge import git_repos, state_events
from forge.check_rules import Rejected, check_run_changes
from forge.context import forge_context
from forge.records import CheckRun, Repo, now
from forge.rest.access import json_body, principal, require_repo
from forge.rest.errors import ApiError, forbidden, not_found
from forge.rest.issues import created
from forge.rest.paging import paginate

blueprint = Blueprint("forge_rest_checks", __name__)
_HEX = re.compile(r"^[0-9a-fA-F]{4,40}$")


def _changes(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    try:
        return check_run_changes(body, creating)
    except Rejected as exc:
        raise ApiError(422, exc.message, list(exc.errors) if exc.errors else None) from exc


def _writable_repo(owner: str, repo: str) -> Repo:
    record = require_repo(owner, repo, "checks", "write")
    if principal().kind != "installation":
        raise forbidden("You must authenticate via a GitHub App.")
    return record


def _latest_per_name(runs: list[CheckRun]) -> list[CheckRun]:
    """Runs are newest first; keep the first of each name."""
    latest: dict[str, CheckRun] = {}
    for run in runs:
        latest.setdefault(run.name, run)
    return list(latest.values())


def _run_or_404(record: Repo, run_id: int) -> CheckRun:
    run = forge_context().state.check_run(run_id)
    if run is None or run.repo.lower() != record.full_name.lower():
        raise not_found()
    return run


@blueprint.post("/repos/<owner>/<repo>/check-runs")
def create_check_run(owner: str, repo: str) -> Response:
    """POST .../check-runs: validated like GitHub (limits, required fields, a real commit)."""
    record = _writable_repo(owner, repo)
    changes = _changes(json_body(), creating=True)
    ctx = forge_context()
    given = changes.pop("head_sha")
    head_sha = git_repos.resolve(ctx.code.bare(record), given) if _HEX.match(given) else None
    if head_sha is not None and ctx.state.visibility.commit_hidden(record.full_name, head_sha):
        head_sha = None  # pushed a moment ago: GitHub's REST API does not know it yet (forge.visibility)
    if head_sha is None:
        raise ApiError(422, f"No commit found for SHA: {given}")
    annotations = changes.pop("new_annotations", ())
    completed = changes["status"] == "completed"
    run = CheckRun(
        id=ctx.state.next_id("check_run"),
        repo=record.full_name,
        head_sha=head_sha,
        name=changes["name"],
        status=changes["status"],
        conclusion=changes.get("conclusion"),
        started_at=changes.get("started_at") or now(),
        completed_at=changes.get("completed_at") or (now() if completed else None),
        details_url=changes.get("details_url"),
        external_id=changes.get("external_id"),
        title=changes.get("title"),
        summary=changes.get("summary"),
        text=changes.get("text"),
        annotations=tuple(annotations),
        actions=tuple(changes.get("actions", ())),
        check_suite_id=ctx.state.check_suite_id(record.full_name, head_sha),
        app_id=ctx.app.id,
    )
    stored = ctx.state.put_check_run(run)
    state_events.check_run_changed(ctx, record, stored, "created")
    if completed:
        state_events.check_run_changed(ctx, record, stored, "completed")
    return created(ctx.code.check_run(stored))


@blueprint.patch("/repos/<owner>/<repo>/check-runs/<int:run_id>")
def update_check_run(owner: str, repo: str, run_id: int) -> Response:
    """PATCH .../check-runs/{id}: fields replaced, annotations appended (as GitHub does)."""
    record = _writable_repo(owner, repo)
    run = _run_or_404(record, run_id)
    changes = _changes(json_body(), creating=False)
    annotations = changes.pop("new_annotations", ())
    if changes.get("status") == "completed" and "completed_at" not in changes:
        changes["completed_at"] = now()
    if changes.get("status") in ("queued", "in_progress"):
        changes.setdefault("conclusion", None)
        changes.setdefault("completed_at", None)
    fields = {k: v for k, v in changes.items() if k in CheckRun.__dataclass_fields__}
    ctx = forge_context()
    updated = CheckRun(
        **{
            **{name: getattr(run, name) for name in CheckRun.__dataclass_fields__},
            **fields,
            "annotations": run.annotations + tuple(annotations),
        }
    )
    stored = ctx.state.put_check_run(updated)
    if stored.status == "completed" and run.status != "completed":
        state_events.check_run_changed(ctx, record, stored, "completed")
    return jsonify(ctx.code.check_run(stored))


@blueprint.get("/repos/<owner>/<repo>/check-runs/<int:run_id>")
def get_check_run(owner: str, repo: str, run_id: int) -> Response:
    """GET .../check-runs/{id}."""
    record = require_repo(owner, repo, "checks", "read")
    return jsonify(forge_context().code.check_run(_run_or_404(record, run_id)))


@blueprint.get("/repos/<owner>/<repo>/check-runs/<int:run_id>/annotations")
def list_annotations(owner: str, repo: str, run_id: int) -> Response:
    """GET .../check-runs/{id}/annotations."""
    record = require_repo(owner, repo, "checks", "read")
    run = _run_or_404(record, run_id)
    code = forge_context().code
    return paginate(list(run.annotations), lambda a: code.annotation(run, dict(a)))


@blueprint.get("/repos/<owner>/<repo>/commits/<path:ref>/check-runs")
def list_check_runs_for_ref(owner: str, repo: str, ref: str) -> Response:
    """GET .../commits/{ref}/check-runs?check_name=&status=&filter=latest|all."""
    record = require_repo(owner, repo, "checks", "read")
    ctx = forge_context()
    sha = git_repos.resolve_ref_name(ctx.code.bare(record), ref)
    if sha is not None and ctx.state.visibility.commit_hidden(record.full_name, sha):
        sha = None
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}")
    runs = ctx.state.check_runs(record.full_name, sha)
    if (name := request.args.get("check_name")) is not None:
        runs = [r for r in runs if r.name == name]
    if (status := request.args.get("status")) is not None:
        runs = [r for r in runs if r.status == status]
    if request.args.get("filter", "latest") == "latest":
        runs = _latest_per_name(runs)
    return paginate(runs, ctx.code.check_run, wrap="check_runs")
