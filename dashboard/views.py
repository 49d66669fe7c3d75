"""The minimal dashboard: every execution with status and progress, and one execution's tasks and log."""

from __future__ import annotations

import time
from urllib.parse import quote

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from clarity import artifacts
from clarity.models import Execution
from clarity.redaction import redact
from clarity.settings import Settings
from clarity.store import NotFound
from dashboard import artifactlist, board, controls, execview, start
from dashboard.appctx import store as _store
from dashboard.live import viewer

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def overview() -> ResponseReturnValue:
    """The executions the viewer sees, by customer and repository, with counts per status (live-updated)."""
    who = viewer()
    if who is None:
        abort(401, description="sign in to see executions")
    now = time.time()  # before reading: the page's live feed asks for what changed after it
    built = board.build(_store(), who)
    return render_template("overview.html", board=built, now=now, start=start.form(_store(), who, built))


def _execution_or_404(execution_id: str) -> Execution:
    """The execution, if the viewer sees its installation; 404 alike for others' (never reveal they exist)."""
    try:
        ex = _store().get(execution_id)
    except NotFound:
        abort(404, description=f"no execution {execution_id}")
    who = viewer()
    if who is None or not who.sees(ex.installation_id):
        abort(404, description=f"no execution {execution_id}")
    return ex


@bp.get("/executions/<execution_id>")
def execution(execution_id: str) -> ResponseReturnValue:
    """One execution: its task tree, links, controls and recent log lines."""
    ex = _execution_or_404(execution_id)
    action = request.args.get("requested", "")
    page = execview.build(_store(), ex, action if action in {a for a, _, _ in controls.CONTROLS} else "",
                          request.args.get("at", ""))
    return render_template("execution.html", ex=ex, page=page, web_url=_settings().web_url,
                           unsandboxed=_settings().sandbox == "none", controls=controls.for_page(viewer(), ex),
                           steering=controls.steering(viewer(), ex, page.tree))


@bp.get("/api/executions/<execution_id>")
def execution_json(execution_id: str) -> ResponseReturnValue:
    """The same as JSON, for scripts and the demo (404 as JSON)."""
    try:
        ex = _store().get(execution_id)
    except NotFound:
        return jsonify({"message": f"no execution {execution_id}"}), 404
    who = viewer()
    if who is None or not who.sees(ex.installation_id):  # the same answer as for no execution at all
        return jsonify({"message": f"no execution {execution_id}"}), 404
    store = _store()
    return jsonify({**ex.to_json(), "tasks": [
        {"id": t.task_id, "title": t.title, "status": str(t.status), "attempts": t.attempts,
         "commit": t.commit, "duration": t.duration, "errorClass": t.error_class, "overrideBy": t.override_by}
        for t in store.tasks(execution_id).values()]})


def _settings() -> Settings:
    return current_app.extensions["clarity.settings"]


@bp.get("/executions/<execution_id>/artifacts")
@bp.get("/executions/<execution_id>/artifacts/<path:relpath>")
def execution_artifacts(execution_id: str, relpath: str = "") -> ResponseReturnValue:
    """An execution's artifacts: a folder is listed, a file is served as redacted, inert text/plain.

    Only regular files and folders inside that execution's folder are reachable (clarity.artifacts.lookup):
    `..`, absolute paths, links, FIFOs and devices are 404, however a check swaps them in.
    """
    _execution_or_404(execution_id)
    settings = _settings()
    found = artifacts.lookup(settings.artifacts_dir, execution_id, relpath, settings.artifact_max_bytes)
    if found is None and not relpath.strip("/"):
        found = []  # no attempt has left anything yet: an empty listing, not a missing page
    if found is None:
        abort(404, description=f"no artifact {relpath!r} in execution {execution_id}")
    if isinstance(found, list):
        return render_template("artifacts.html", execution_id=execution_id, here=relpath.strip("/"),
                               groups=artifactlist.group(found), size_text=artifactlist.size_text,
                               artifacts_shown=len(found), cut=len(found) >= artifacts.MAX_LISTED)
    text = artifacts.cap(redact(found.decode("utf-8", "replace")), settings.artifact_max_bytes)
    response = Response(text, mimetype="text/plain")
    # Text a check wrote: never sniffed as HTML, never run as a page even if a browser tried.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response.headers["Content-Disposition"] = disposition(relpath.rsplit("/", 1)[-1])
    return response


def disposition(name: str) -> str:
    """`Content-Disposition` for an artifact shown in the browser, its name kept for "Save as"."""
    quoted = quote(name, safe="")
    return f'inline; filename="{name}"' if quoted == name else f"inline; filename*=UTF-8''{quoted}"
