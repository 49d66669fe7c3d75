"""What happens around executions: PRs closed, installations and repositories added or removed."""

from __future__ import annotations

import logging
from typing import Any

from github_app.reporting import Reporter
from jobs import control
from jobs.context import Engine
from jobs.intake import PayloadError
from jobs.router import Router

log = logging.getLogger(__name__)
router = Router()


def _repo_names(items: list[dict[str, Any]] | None) -> list[str]:
    return [str(r["full_name"]) for r in items or [] if isinstance(r, dict) and "full_name" in r]


def _account(payload: dict[str, Any]) -> tuple[int, str]:
    try:
        installation = payload["installation"]
        return int(installation["id"]), str((installation.get("account") or {}).get("login", ""))
    except (KeyError, TypeError, ValueError):
        raise PayloadError("payload has no installation id") from None


@router.register("pull_request", action="closed")
def on_pull_closed(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """A closed or merged PR ends the execution working on it, with a comment saying so."""
    try:
        pull, repo = payload["pull_request"], payload["repository"]["full_name"]
        number, head = int(pull["number"]), str(pull["head"]["ref"])
    except (KeyError, TypeError, ValueError):
        raise PayloadError("malformed pull_request payload") from None
    how = "merged" if pull.get("merged") else "closed"
    done = []
    for execution in eng.store.find(repo):
        on_it = execution.pr_number == number or execution.branch == head or (
            execution.is_pull_request and execution.issue_number == number)
        if on_it and not execution.status.is_terminal:
            installation, _ = _account(payload)
            reporter = Reporter(eng.github.client(installation), repo)
            actor = str((payload.get("sender") or {}).get("login", "github"))
            done.append(control.stop_execution(eng, reporter, execution, actor,
                                               why=f"pull request #{number} was {how}"))
    return "; ".join(done) or "ignored: no execution on that pull request"


def _stop_all(eng: Engine, executions: list[Any], why: str, forget: bool) -> list[str]:
    done = []
    for execution in executions:
        if not execution.status.is_terminal:
            done.append(control.stop_execution(eng, None, execution, "github", why=why))
        if forget:
            eng.store.forget(execution.id)
            done.append(f"forgot {execution.id}")
    return done


@router.register("installation")
def on_installation(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """The customer registry: created/unsuspend record; suspend stops; deleted stops and forgets."""
    action = payload.get("action")
    installation, account = _account(payload)
    executions = eng.store.executions(installation_id=installation, limit=10_000)
    if action in ("created", "unsuspend", "new_permissions_accepted"):
        repos = _repo_names(payload.get("repositories"))
        known = eng.store.installation(installation)
        eng.store.put_installation(installation, account, "active", repos or (known or {}).get("repos", []))
        return f"installation {installation} ({account}) active"
    if action == "suspend":
        eng.store.put_installation(installation, account, "suspended",
                                   (eng.store.installation(installation) or {}).get("repos", []))
        return "; ".join(_stop_all(eng, executions, "the app was suspended on this account", False)) or "suspended"
    if action == "deleted":
        eng.store.drop_installation(installation)
        return "; ".join(_stop_all(eng, executions, "the app was uninstalled", True)) or "deleted"
    return f"ignored: installation.{action}"


@router.register("installation_repositories")
def on_repositories(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """Repositories granted or withdrawn: withdrawn ones lose their executions."""
    installation, account = _account(payload)
    known = set((eng.store.installation(installation) or {}).get("repos", []))
    added, removed = _repo_names(payload.get("repositories_added")), _repo_names(payload.get("repositories_removed"))
    eng.store.put_installation(installation, account, "active", sorted((known | set(added)) - set(removed)))
    done = []
    for repo in removed:
        done += _stop_all(eng, eng.store.find(repo), "the repository was removed from the installation", True)
    return "; ".join(done) or f"installation {installation}: +{len(added)} -{len(removed)} repositories"


@router.register("push")
def on_push(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """Someone else pushed to a branch an execution works on: pause it after the current task.

    The next step (on resume) fetches and resets to the pushed branch, so their commits are kept and
    the task list is re-read from them; a push of ours racing theirs is rejected, never forced.
    """
    ref, repo = str(payload.get("ref", "")), (payload.get("repository") or {}).get("full_name")
    sender = str((payload.get("sender") or {}).get("login", ""))
    if not ref.startswith("refs/heads/") or not repo:
        return "ignored: not a branch push"
    if sender.lower() == eng.settings.bot_login.lower():
        return "ignored: our own push"
    branch = ref.removeprefix("refs/heads/")
    done = []
    for execution in eng.store.find(repo):
        if execution.branch == branch and (execution.status.is_active or execution.status.value == "queued"):
            eng.store.set_flag(execution.id, "pause", f"{sender} (pushed to `{branch}`)")
            installation, _ = _account(payload)
            Reporter(eng.github.client(installation), repo).comment(execution.issue_number, (
                f"@{sender} pushed to `{branch}` while execution `{execution.id}` works on it: it pauses after "
                "the current task so the two don't collide. `/clarity resume` continues from your commits."))
            done.append(f"pause {execution.id}")
    return "; ".join(done) or "ignored: no execution on that branch"
