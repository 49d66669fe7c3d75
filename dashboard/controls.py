"""The execution page's Stop / Pause / Resume / Retry buttons: POST forms that enqueue a control job.

The dashboard imports only `clarity`, so a button does not act itself: it puts
`jobs.control_jobs.dashboard_action(execution_id, action, actor)` on the intake queue by dotted name (as
the webhook view does with deliveries) and the intake worker runs it through jobs.control, the same code
as the comment commands and the check-run buttons. Only a viewer holding team_member or more in the
execution's installation sees the buttons or may press them.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, redirect
from flask.typing import ResponseReturnValue
from rq import Queue

from clarity.models import Execution
from clarity.status import ExecutionStatus as S
from clarity.store import NotFound, Store
from dashboard.auth import Viewer
from dashboard.live import viewer

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


def init_app(app: Flask, queue: Queue) -> None:
    """Register the buttons' routes; `queue` is the intake queue the control jobs go on."""
    app.extensions["clarity.control_queue"] = queue
    app.register_blueprint(bp)


def for_page(who: Viewer | None, execution: Execution) -> list[tuple[str, str, str]]:
    """The buttons the execution page renders for this viewer: (action, label, space-separated statuses)."""
    if who is None or not who.may(execution.installation_id, ROLE):
        return []
    return [(action, label, " ".join(map(str, when))) for action, label, when in CONTROLS]


@bp.post("/executions/<execution_id>/actions/<action>")
def press(execution_id: str, action: str) -> ResponseReturnValue:
    """Queue one control on an execution, then show its page again (the live feed shows the effect)."""
    if action not in {a for a, _, _ in CONTROLS}:
        abort(404, description=f"no action {action!r}")
    store: Store = current_app.extensions["clarity.store"]
    try:
        execution = store.get(execution_id)
    except NotFound:
        abort(404, description=f"no execution {execution_id}")
    who = viewer()
    if who is None or not who.sees(execution.installation_id):
        abort(404, description=f"no execution {execution_id}")
    if not who.may(execution.installation_id, ROLE):
        abort(403, description=f"{action} needs the {ROLE} role in {execution.account}")
    queue: Queue = current_app.extensions["clarity.control_queue"]
    queue.enqueue(DASHBOARD_ACTION_JOB, execution_id, action, who.login,
                  description=f"dashboard {action} {execution_id} by {who.login}", result_ttl=3600)
    return redirect(f"/executions/{execution_id}?requested={action}", code=303)
