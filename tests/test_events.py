"""Every GitHub event Clarity subscribes to, posted as a signed delivery shaped like the shared fixtures,
with its effect asserted against the forge and the store (whole stack, real worker)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

import devstack
from clarity.status import ExecutionStatus
from github_app.reporting import check_owner
from tests.conftest import WEBHOOK_FIXTURES
from tests.e2e import REPO, make_repo, store_of, tasks_md, wait_comment, wait_settled


def fixture(name: str) -> dict[str, Any]:
    return json.loads((WEBHOOK_FIXTURES / f"{name}.payload.json").read_text())


def shaped(stack: devstack.Stack, name: str, sender: str = "ada") -> dict[str, Any]:
    """A shared fixture payload re-pointed at our forge repository, installation and sender."""
    payload = copy.deepcopy(fixture(name))
    repo = stack.admin("GET", "/repos")
    installation = next(r["installation_id"] for r in repo if r["full_name"] == REPO)
    payload["repository"] = {**payload.get("repository", {}), "full_name": REPO, "name": "widgets",
                             "owner": {"login": "acme", "type": "Organization"}}
    payload["installation"] = {**payload.get("installation", {}), "id": installation,
                               "account": {"login": "acme", "type": "Organization"}}
    payload["sender"] = {**payload.get("sender", {}), "login": sender, "type": "User"}
    return payload


def deliver(stack: devstack.Stack, event: str, payload: dict[str, Any], status: int = 202) -> None:
    answer = stack.admin("POST", "/deliver", json={"event": event, "payload": payload})
    assert answer["status_code"] == status, answer


def blocked_execution(stack: devstack.Stack, tmp_path: Path) -> Any:
    make_repo(stack, tmp_path, tasks_md(("1", "Impossible [broken]", False)),
              collaborators={"ada": "write", "rita": "read"})
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.BLOCKED
    return ex


def press(stack: devstack.Stack, execution_id: str, identifier: str, sender: str = "ada", task: str = "1") -> None:
    """Press a button on the task's check run (task "" = the execution's summary check run)."""
    payload = shaped(stack, "check_run.requested_action", sender)
    run = next(r for r in stack.admin("GET", "/state")["check_runs"]
               if check_owner(r["external_id"]) == f"{execution_id}:{task}" and r["status"] == "completed")
    payload["check_run"] = {**payload["check_run"], "id": run["id"], "external_id": run["external_id"],
                            "name": run["name"], "head_sha": run["head_sha"]}
    payload["requested_action"] = {"identifier": identifier}
    deliver(stack, "check_run", payload)


def test_failed_task_check_run_offers_retry_and_stop_buttons(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    [run] = [r for r in stack.admin("GET", "/state")["check_runs"] if check_owner(r["external_id"]) == f"{ex.id}:1"]
    assert [a["identifier"] for a in run["actions"]] == ["retry", "stop"]


def test_stop_button_stops_a_blocked_execution(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    press(stack, ex.id, "stop")
    wait_comment(stack, "Stopped")
    assert store_of(stack).get(ex.id).status is ExecutionStatus.STOPPED


def test_retry_button_runs_the_failed_task_again(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    since = time.time()
    press(stack, ex.id, "retry")
    wait_comment(stack, "Retrying task 1")
    again = wait_settled(stack, since=since)
    assert again.id == ex.id and again.status is ExecutionStatus.BLOCKED
    assert again.attempts == 8  # 4 more attempts after the button


def test_retry_on_the_summary_check_retries_every_failed_task(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    press(stack, ex.id, "retry", task="")
    wait_comment(stack, "Retrying the failed task")


def test_buttons_from_a_reader_are_refused(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    press(stack, ex.id, "stop", sender="rita")
    wait_comment(stack, "only people with write access")
    assert store_of(stack).get(ex.id).status is ExecutionStatus.BLOCKED


def test_rerun_of_a_check_retries_its_task(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    payload = shaped(stack, "check_run.rerequested")
    run = next(r for r in stack.admin("GET", "/state")["check_runs"] if check_owner(r["external_id"]) == f"{ex.id}:1")
    payload["check_run"] = {**payload["check_run"], "id": run["id"], "external_id": run["external_id"]}
    deliver(stack, "check_run", payload)
    wait_comment(stack, "Retrying task 1")


def test_check_suite_rerun_resumes_the_execution_on_that_branch(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    payload = shaped(stack, "check_suite.rerequested")
    payload["check_suite"] = {**payload["check_suite"], "head_branch": ex.branch}
    deliver(stack, "check_suite", payload)
    wait_comment(stack, "Resuming")


def test_closing_the_pull_request_stops_its_execution(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "One", False), ("2", "Two", False)))
    stack.comment(REPO, 1, "/clarity run until 1", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.PAUSED and ex.pr_number
    payload = shaped(stack, "pull_request.closed")
    payload["number"] = ex.pr_number
    payload["pull_request"] = {**payload["pull_request"], "number": ex.pr_number, "merged": False,
                               "head": {**payload["pull_request"]["head"], "ref": ex.branch}}
    deliver(stack, "pull_request", payload)
    wait_comment(stack, f"pull request #{ex.pr_number} was closed")
    assert store_of(stack).get(ex.id).status is ExecutionStatus.STOPPED


@pytest.mark.parametrize(("action", "forgotten"), [("deleted", True), ("suspend", False)])
def test_uninstall_or_suspend_stops_executions(stack, tmp_path: Path, action: str, forgotten: bool) -> None:
    ex = blocked_execution(stack, tmp_path)
    payload = shaped(stack, f"installation.{action}")
    deliver(stack, "installation", payload)
    store = store_of(stack)

    def settled() -> bool:
        return not store.executions(repo=REPO) if forgotten else store.get(ex.id).status is ExecutionStatus.STOPPED
    devstack.wait_for(settled, 20, what=f"installation.{action} to take effect")
    record = store.installation(payload["installation"]["id"])
    assert (record is None) if forgotten else (record["status"] == "suspended")


def test_repositories_added_and_removed_update_the_registry(stack, tmp_path: Path) -> None:
    ex = blocked_execution(stack, tmp_path)
    installation = shaped(stack, "installation.created")
    installation["repositories"] = [{"full_name": REPO}, {"full_name": "acme/other"}]
    deliver(stack, "installation", installation)
    store = store_of(stack)
    iid = installation["installation"]["id"]
    devstack.wait_for(lambda: store.installation(iid), 20, what="the installation record")
    assert store.installation(iid)["repos"] == ["acme/other", REPO]
    removed = shaped(stack, "installation_repositories.removed")
    removed["repositories_removed"] = [{"full_name": REPO}]
    removed["repositories_added"] = []
    deliver(stack, "installation_repositories", removed)
    devstack.wait_for(lambda: not store.executions(repo=REPO), 20, what="the removed repo's executions to go")
    assert store.installation(iid)["repos"] == ["acme/other"]
    del ex


def test_someone_elses_push_pauses_the_execution_on_that_branch(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Slow [slow:3]", False), ("2", "Next", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: any(e.current_task == "1" for e in store.executions(repo=REPO)), 20,
                      what="task 1 to start")
    payload = shaped(stack, "push", sender="grace")
    payload["ref"] = "refs/heads/clarity/issue-1"
    deliver(stack, "push", payload)
    wait_comment(stack, "@grace pushed to `clarity/issue-1`")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.PAUSED
    assert ex.reason == "paused by @grace (pushed to `clarity/issue-1`)"
    assert str(store.task(ex.id, "1").status) == "completed"  # the running task finished first
    assert str(store.task(ex.id, "2").status) == "pending"


def test_our_own_push_and_tag_pushes_are_ignored(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only", False)))
    tag = shaped(stack, "push")  # the fixture pushes a tag
    deliver(stack, "push", tag, status=204)  # dropped at the endpoint: no handler acts on them (github_app.routes)
    own = shaped(stack, "push", sender=stack.bot_login)
    own["ref"] = "refs/heads/clarity/issue-1"
    deliver(stack, "push", own, status=204)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    assert wait_settled(stack).status is ExecutionStatus.COMPLETED
