"""The minimal dashboard: every execution with status and progress, and one execution's tasks and log."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, render_template
from flask.typing import ResponseReturnValue

from clarity.models import Execution
from clarity.store import NotFound, Store

bp = Blueprint("dashboard", __name__)


def _store() -> Store:
    return current_app.extensions["clarity.store"]


@bp.get("/")
def overview() -> ResponseReturnValue:
    """All executions, newest first."""
    return render_template("overview.html", executions=_store().executions(limit=200))


def _execution_or_404(execution_id: str) -> Execution:
    try:
        return _store().get(execution_id)
    except NotFound:
        abort(404, description=f"no execution {execution_id}")


@bp.get("/executions/<execution_id>")
def execution(execution_id: str) -> ResponseReturnValue:
    """One execution: its task table and recent log lines."""
    ex, store = _execution_or_404(execution_id), _store()
    return render_template("execution.html", ex=ex, tasks=store.tasks(execution_id),
                           log=store.log_lines(execution_id, 300))


@bp.get("/api/executions/<execution_id>")
def execution_json(execution_id: str) -> ResponseReturnValue:
    """The same as JSON, for scripts and the demo (404 as JSON)."""
    try:
        ex = _store().get(execution_id)
    except NotFound:
        return jsonify({"message": f"no execution {execution_id}"}), 404
    store = _store()
    return jsonify({**ex.to_json(), "tasks": [
        {"id": t.task_id, "title": t.title, "status": str(t.status), "attempts": t.attempts,
         "commit": t.commit, "duration": t.duration} for t in store.tasks(execution_id).values()]})
