"""The execution page's controls: Stop / Pause / Resume / Retry buttons, the stop point and the override.

The dashboard imports only `clarity`, so a button does not act itself: it puts
`jobs.control_jobs.dashboard_action(execution_id, action, actor)` on the intake queue by dotted name (as
the webhook view does with deliveries) and the intake worker runs it through jobs.control, the same code
as the comment commands and the check-run buttons. The stop-point and override forms call the REST API
from the browser (static/controls.js: `set-stop-point`, `manual-override`), which acts through the same
engine. Only a viewer holding team_member or more in the execution's installation sees any of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Flask, abort, current_app, redirect
from flask.typing import ResponseReturnValue
from rq import Queue

from clarity.models import Execution
from clarity.status import ExecutionStatus as S
from clarity.status import TaskStatus
from clarity.store import NotFound
from dashboard.appctx import store as _store
from dashboard.auth import Viewer
from dashboard.live import viewer
from dashboard.tasktree import Row

bp = Blueprint("controls", __name__)

DASHBOARD_ACTION_JOB = "jobs.control_jobs.dashboard_action"
ROLE = "team_member"  # DESIGN §5: team_member may run, stop, pause, resume and retry
_LIVE = (S.QUEUED, S.INITIALIZING, S.AUTONOMOUS, S.TASK_EXECUTING, S.ERROR_SOLVING)
# (action, button label, statuses in which it applies): the page hides a button elsewhere, live.
CONTROLS: tuple[tuple[str, str, tuple[S, ...]], ...] = (
    ("stop", "Stop", (*_LIVE, S.PAUSED, S.BLOCKED)),
    ("pause", "Pause", _LIVE),
    ("resume", "Resume", (S.PAUSED, S.BLOCKED)),
    ("retry", "Retry", (S.BLOCKED,)),
)
# jobs.control moves the stop point of, and overrides tasks of, live, paused and blocked executions.
STEERABLE = (*_LIVE, S.PAUSED, S.BLOCKED)
OVERRIDABLE = (TaskStatus.FAILED, TaskStatus.SKIPPED)  # tasks a person may settle from the page


@dataclass(frozen=True, slots=True)
class Steering:
    """The stop-point and override forms of the execution page, for a viewer who may use them."""

    when: str  # space-separated statuses in which the forms apply (the page hides them elsewhere, live)
    stop_points: tuple[tuple[str, int], ...]  # (id, level) of the tree's rows; the page swaps in the whole list
    overridable: tuple[str, ...]  # ids of tasks that failed or were skipped


def init_app(app: Flask, queue: Queue) -> None:
    """Register the buttons' routes; `queue` is the intake queue the control jobs go on."""
    app.extensions["clarity.control_queue"] = queue
    app.register_blueprint(bp)


def for_page(who: Viewer | None, execution: Execution) -> list[tuple[str, str, str]]:
    """The buttons the execution page renders for this viewer: (action, label, space-separated statuses)."""
    if who is None or not who.may(execution.installation_id, ROLE):
        return []
    return [(action, label, " ".join(map(str, when))) for action, label, when in CONTROLS]


def steering(who: Viewer | None, execution: Execution, tree: list[Row]) -> Steering | None:
    """The stop-point and override forms for this viewer (None: they may not steer this execution)."""
    if who is None or not who.may(execution.installation_id, ROLE):
        return None
    return Steering(" ".join(map(str, STEERABLE)), tuple((row.task_id, row.level) for row in tree),
                    tuple(row.task_id for row in tree if row.progress and row.progress.status in OVERRIDABLE))


@bp.post("/executions/<execution_id>/actions/<action>")
def press(execution_id: str, action: str) -> ResponseReturnValue:
    """Queue one control on an execution, then show its page again (the live feed shows the effect)."""
    if action not in {a for a, _, _ in CONTROLS}:
        abort(404, description=f"no action {action!r}")
    store = _store()
    try:
        execution = store.get(execution_id)
    except NotFound:
        abort(404, description=f"no execution {execution_id}")
    who = viewer()
    if who is None or not who.sees(execution.installation_id):
        abort(404, description=f"no execution {execution_id}")
    if not who.may(execution.installation_id, ROLE):
        abort(403, description=f"{action} needs the {ROLE} role in {execution.account}")
    # Where the execution's stream stands before the job is queued: the page's notice ("Stop requested")
    # lasts until a status change after this point shows the engine acted on it (dashboard.execview).
    newest = store.log_lines(execution_id, 1)
    at = newest[-1]["id"] if newest else "0-0"
    queue: Queue = current_app.extensions["clarity.control_queue"]
    queue.enqueue(DASHBOARD_ACTION_JOB, execution_id, action, who.login,
                  description=f"dashboard {action} {execution_id} by {who.login}", result_ttl=3600)
    return redirect(f"/executions/{execution_id}?requested={action}&at={at}", code=303)
