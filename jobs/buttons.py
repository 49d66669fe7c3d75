"""Steering from the checks UI: the Stop / Retry / Resume buttons and "Re-run" on Clarity's check runs."""

from __future__ import annotations

from typing import Any

from clarity.models import Execution
from clarity.store import NotFound
from github_app import roles
from github_app.reporting import Reporter
from jobs import control
from jobs.context import Engine
from jobs.intake import PayloadError, authorize
from jobs.router import Router

router = Router()


def _target(eng: Engine, payload: dict[str, Any], external_id: str | None) -> tuple[Execution, str] | None:
    """The execution and task behind one of our check runs (`<execution>:<task>`), in this repository."""
    if not external_id or ":" not in external_id:
        return None
    execution_id, task_id = external_id.split(":", 1)  # the summary run has no task: "<execution>:"
    try:
        execution = eng.store.get(execution_id)
    except NotFound:
        return None
    if execution.repo != payload.get("repository", {}).get("full_name"):
        return None  # never act on another repository's execution, whatever the id says
    return execution, task_id


def _steer(eng: Engine, payload: dict[str, Any], external_id: str | None, act: str) -> str:
    try:
        sender = str(payload["sender"]["login"])
    except (KeyError, TypeError):
        raise PayloadError("check_run payload has no sender") from None
    found = _target(eng, payload, external_id)
    if found is None:
        return "ignored: not a Clarity check run"
    execution, task_id = found
    gh = eng.github.client(execution.installation_id)
    reporter = Reporter(gh, execution.repo)
    role, permission = authorize(gh, execution.repo, sender)
    if role.rank < roles.Role.TEAM_MEMBER.rank:
        reporter.comment(execution.issue_number, roles.refusal(permission, sender))
        return f"refused: {sender} has {permission}"
    if act == "stop":
        return control.stop_execution(eng, reporter, execution, sender)
    if act == "retry":
        return control.retry_execution(eng, reporter, execution, sender, task_id or None)
    if act == "resume":
        return control.resume_execution(eng, reporter, execution, sender)
    return f"ignored: unknown action {act}"


@router.register("check_run", action="requested_action")
def on_button(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """A Stop / Retry / Resume button pressed on a task's check run."""
    identifier = (payload.get("requested_action") or {}).get("identifier", "")
    return _steer(eng, payload, (payload.get("check_run") or {}).get("external_id"), str(identifier))


@router.register("check_run", action="rerequested")
def on_rerun(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """"Re-run" on a task's check run: retry that task."""
    return _steer(eng, payload, (payload.get("check_run") or {}).get("external_id"), "retry")


@router.register("check_suite", action="rerequested")
def on_suite_rerun(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """"Re-run all checks": resume the execution working on that branch."""
    branch = (payload.get("check_suite") or {}).get("head_branch")
    repo = (payload.get("repository") or {}).get("full_name")
    if not branch or not repo:
        return "ignored: check suite without branch"
    for execution in eng.store.find(repo):
        if execution.branch == branch and not execution.status.is_terminal:
            return _steer(eng, payload, f"{execution.id}:", "resume")
    return "ignored: no execution on that branch"
