"""Steering from the checks UI: the Stop / Retry / Resume buttons and "Re-run" on Clarity's check runs."""

from __future__ import annotations

from typing import Any

from clarity.models import Execution
from clarity.store import NotFound
from github_app import repos, roles
from github_app.payloads import Payload
from github_app.reporting import Reporter, check_owner
from jobs import control
from jobs.context import Engine
from jobs.router import Router

router = Router()


def _target(eng: Engine, repo: str | None, external_id: str) -> tuple[Execution, str] | None:
    """The execution and task behind one of our check runs (`<execution>:<task>#<create id>`), in this repository."""
    owner = check_owner(external_id)
    if ":" not in owner:
        return None
    execution_id, task_id = owner.split(":", 1)  # the summary run has no task: "<execution>:"
    try:
        execution = eng.store.get(execution_id)
    except NotFound:
        return None
    if execution.repo != repo:
        return None  # never act on another repository's execution, whatever the id says
    return execution, task_id


def _steer(eng: Engine, read: Payload, external_id: str, act: str) -> str:
    sender = read.login("sender.login")
    found = _target(eng, read.optional_repo(), external_id)
    if found is None:
        return "ignored: not a Clarity check run"
    execution, task_id = found
    gh = eng.github.client(execution.installation_id)
    reporter = Reporter(gh, execution.repo)
    role, permission = repos.authorize(gh, execution.repo, sender)
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
    read = Payload("check_run", payload)
    return _steer(eng, read, read.text("check_run.external_id", default=""),
                  read.text("requested_action.identifier", default=""))


@router.register("check_run", action="rerequested")
def on_rerun(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """"Re-run" on a task's check run: retry that task."""
    read = Payload("check_run", payload)
    return _steer(eng, read, read.text("check_run.external_id", default=""), "retry")


@router.register("check_suite", action="rerequested")
def on_suite_rerun(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """"Re-run all checks": resume the execution working on that branch."""
    read = Payload("check_suite", payload)
    branch, repo = read.text("check_suite.head_branch", default=""), read.optional_repo()
    if not branch or not repo:
        return "ignored: check suite without branch"
    for execution in eng.store.find(repo):
        if execution.branch == branch and not execution.status.is_terminal:
            return _steer(eng, read, f"{execution.id}:", "resume")
    return "ignored: no execution on that branch"
