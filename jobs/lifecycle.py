"""What happens around executions: PRs closed, installations and repositories added or removed."""

from __future__ import annotations

import logging
from typing import Any

from clarity.flags import Flag
from github_app import routes
from github_app.identity import OwnPushes
from github_app.payloads import Payload, PayloadError
from github_app.reporting import Reporter
from jobs import control
from jobs.context import Engine
from jobs.router import Router

log = logging.getLogger(__name__)
router = Router()


@router.register("pull_request", action="closed")
def on_pull_closed(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """A closed or merged PR ends the execution working on it, with a comment saying so."""
    read = Payload("pull_request", payload)
    repo, number, head = read.repo(), read.number("pull_request.number"), read.text("pull_request.head.ref")
    how = "merged" if read.flag("pull_request.merged") else "closed"
    actor = read.login("sender.login", default="github")
    installation = read.optional_installation()
    done = []
    for execution in eng.store.find(repo):
        on_it = execution.pr_number == number or execution.branch == head or (
            execution.is_pull_request and execution.issue_number == number)
        if on_it and not execution.status.is_terminal:
            if installation is None:
                raise PayloadError("the pull_request payload has no installation id (is the app installed?)")
            reporter = Reporter(eng.github.client(installation.id), repo)
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
    read = Payload("installation", payload)
    action = read.text("action", default="")
    found = read.installation()
    installation, account, repos = found.id, found.account, list(read.repos("repositories"))
    executions = eng.store.executions(installation_id=installation, limit=10_000)
    if action in ("created", "unsuspend", "new_permissions_accepted"):
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
    return f"ignored: installation.{action[:40]}"


@router.register("installation_repositories")
def on_repositories(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """Repositories granted or withdrawn: withdrawn ones lose their executions."""
    read = Payload("installation_repositories", payload)
    found = read.installation()
    installation, account = found.id, found.account
    known = set((eng.store.installation(installation) or {}).get("repos", []))
    added, removed = read.repos("repositories_added"), read.repos("repositories_removed")
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
    read = Payload("push", payload)
    ref, repo, sender = read.text("ref", default=""), read.optional_repo(), read.login("sender.login", default="")
    if not ref.startswith(routes.BRANCH_PREFIX) or not repo:
        return "ignored: not a branch push"
    # The webhook endpoint drops most of these already; it never asks GitHub who the app is, intake does.
    if OwnPushes(eng.identity, eng.pushed)(repo, sender, read.text("after", default="")):
        return "ignored: our own push"
    branch = ref.removeprefix(routes.BRANCH_PREFIX)
    done = []
    for execution in eng.store.find(repo):
        if execution.branch == branch and (execution.status.is_active or execution.status.value == "queued"):
            eng.store.set_flag(execution.id, Flag.PAUSE, f"{sender} (pushed to `{branch}`)")
            installation = read.installation().id
            Reporter(eng.github.client(installation), repo).comment(execution.issue_number, (
                f"@{sender} pushed to `{branch}` while execution `{execution.id}` works on it: it pauses after "
                "the current task so the two don't collide. `/clarity resume` continues from your commits."))
            done.append(f"pause {execution.id}")
    return "; ".join(done) or "ignored: no execution on that branch"
