"""Controls pressed on the dashboard: the web process enqueues `dashboard_action` by dotted name.

The dashboard may import only `clarity`, so its Stop / Pause / Resume / Retry buttons do not act
themselves: they put this job on the intake queue (as the webhook view does for deliveries) and the
intake worker runs it here, through the same functions as the comment commands and check-run buttons.
The view has already checked that the person holds at least team_member in the execution's installation.
"""

from __future__ import annotations

import logging

from clarity.store import NotFound
from github_app.reporting import Reporter
from jobs import control
from jobs.context import Engine, engine

log = logging.getLogger(__name__)

DASHBOARD_ACTION_JOB = "jobs.control_jobs.dashboard_action"
ACTIONS = ("stop", "pause", "resume", "retry")


def dashboard_action(execution_id: str, action: str, actor: str) -> str:
    """Run one dashboard control on an execution as `actor` (the RQ job; returns what happened)."""
    return act(engine(), execution_id, action, actor)


def act(eng: Engine, execution_id: str, action: str, actor: str) -> str:
    """Stop, pause, resume or retry an execution; the issue hears about it as it does for a comment."""
    if action not in ACTIONS:
        raise ValueError(f"unknown dashboard action {action!r}: expected one of {', '.join(ACTIONS)}")
    try:
        target = eng.store.get(execution_id)
    except NotFound:
        return f"ignored: no execution {execution_id}"
    reporter = Reporter(eng.github.client(target.installation_id), target.repo)
    log.info("dashboard %s by %s", action, actor, extra={"execution": execution_id, "repo": target.repo})
    if action == "stop":
        return control.stop_execution(eng, reporter, target, actor)
    if action == "resume":
        return control.resume_execution(eng, reporter, target, actor)
    if action == "retry":
        return control.retry_execution(eng, reporter, target, actor, None)
    if not (target.status.is_active or target.status is control.S.QUEUED):
        return f"nothing to pause: {target.status}"
    return control.pause_execution(eng, reporter, target, actor)
