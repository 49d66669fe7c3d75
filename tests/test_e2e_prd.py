"""The PRD's contract through the whole product (forge + web + a real `clarity worker`): a repository
whose `.github/clarity.yml` says `enabled: false` refuses a `/clarity run` comment and the REST API
alike, and a real run reports the PRD's fields with the values the engine measured, on the API and
on the live feed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from simple_websocket import Client

import devstack
from clarity.apitokens import ApiTokens
from clarity.models import Execution
from clarity.status import ExecutionStatus
from tests.e2e import REPO, check_for, store_of, wait_comment, wait_settled

BASE = "/api/devteam/executions"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def repo_with(stack: devstack.Stack, tmp_path: Path, config: str, tasks: str) -> int:
    """acme/widgets with this `.github/clarity.yml` and task list, ada a writer; its installation id."""
    source = tmp_path / "source"
    (source / ".github").mkdir(parents=True)
    (source / ".github" / "clarity.yml").write_text(config)
    (source / "tasks_list.md").write_text(tasks)
    made = stack.create_repo(REPO, source)
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
    return int(made["installation_id"])


def token(stack: devstack.Stack, role: str, installation: int) -> dict[str, str]:
    made, _ = ApiTokens(store_of(stack).r, stack.settings.namespace).create(role, [installation], name=f"ci-{role}")
    return {"Authorization": f"Bearer {made}"}


def api(stack: devstack.Stack, method: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{stack.web_url}{path}", json=body, headers=headers, timeout=30)


def test_enabled_false_refuses_a_comment_run_and_an_api_run_and_starts_nothing(stack: devstack.Stack,
                                                                               tmp_path: Path) -> None:
    installation = repo_with(stack, tmp_path, "enabled: false\n", "# Tasks\n- [ ] 1 Only\n  - " + check_for("1") + "\n")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    reply = wait_comment(stack, "turned off")
    assert "`.github/clarity.yml` says `enabled: false`" in reply["body"] and "Nothing was started" in reply["body"]

    member = token(stack, "team_member", installation)
    issues_before = len(stack.admin("GET", "/state")["issues"])
    for body in ({"repository": REPO}, {"repository": REPO, "issueNumber": 1},
                 {"customerId": "acme", "projectId": REPO, "repositoryUrl": f"{stack.settings.web_url}/{REPO}"}):
        refused = api(stack, "POST", f"{BASE}/initialize", member, body)
        assert refused.status_code == 409, refused.text
        message = refused.json()["message"]
        assert "turned off for this repository" in message and "](" not in message  # plain text, no Markdown link
    state = stack.admin("GET", "/state")
    assert len(state["issues"]) == issues_before  # no tracking issue opened for a run that cannot start
    assert [c for c in state["comments"] if c["author"] == stack.bot_login] == [reply]  # the API posted nothing
    assert store_of(stack).executions(repo=REPO) == [] and state["check_runs"] == []

    # One paused before Clarity was turned off here stays paused: resuming is running again.
    paused = store_of(stack).create(Execution(
        id="", installation_id=installation, repo=REPO, account="acme", issue_number=1, is_pull_request=False,
        branch="clarity/issue-1", base_branch="main", requester="ada", status=ExecutionStatus.PAUSED), actor="ada")
    resumed = api(stack, "POST", f"{BASE}/{paused.id}/resume", member)
    assert resumed.status_code == 409 and "turned off for this repository" in resumed.json()["message"]
    assert store_of(stack).get(paused.id).status is ExecutionStatus.PAUSED


def test_a_real_run_reports_the_prds_fields_on_the_api_and_the_live_feed(stack: devstack.Stack,
                                                                         tmp_path: Path) -> None:
    tasks = ("# Tasks\n"
             f"- [ ] 1 Setup\n  - {check_for('1')}\n"
             f"- [ ] 2 Flaky [flaky]\n  - depends: 1\n  - {check_for('2')}\n"
             f"- [ ] 3 Slow [slow:4]\n  - {check_for('3')}\n")
    installation = repo_with(stack, tmp_path, "maxParallelTasks: 3\n", tasks)
    feed = Client.connect(f"{stack.web_url.replace('http', 'ws')}/live")
    try:
        feed.send("{}")
        assert json.loads(feed.receive(timeout=5))["type"] == "hello"
        ex_id, updates = run_watched(stack, installation, feed)
    finally:
        feed.close()
    assert updates and all(u["executionId"] == ex_id and ISO.match(u["timestamp"]) for u in updates)
    assert [u["progress"] for u in updates] == sorted(u["progress"] for u in updates)  # it only grows
    assert any(u["estimatedCompletion"] and ISO.match(u["estimatedCompletion"]) for u in updates)
    last = updates[-1]
    assert (last["progress"], last["estimatedCompletion"], last["metrics"]["tasksCompleted"]) == (100.0, None, 3)
    moved = [u for u in updates if u["kind"] == "task.status" and u["task"] == "2"]
    assert moved and all(u["taskId"] == "2" for u in moved)


def run_watched(stack: devstack.Stack, installation: int, feed: Client) -> tuple[str, list[dict[str, Any]]]:
    """Run the list by comment, checking the API on the way and at the end; the feed's updates of the run."""
    viewer = token(stack, "viewer", installation)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    started = wait_comment(stack, "Starting execution")
    assert "`maxParallelTasks: 3` in `.github/clarity.yml` is read as 1" in started["body"]

    def busy() -> dict[str, Any] | None:  # while task 3's agent sleeps: its sandbox runs, its slot is taken
        state: dict[str, Any] = api(stack, "GET", f"{BASE}/dashboard", viewer).json()
        return state if state["systemResources"]["activeContainers"] >= 1 and state["active"] else None

    state = devstack.wait_for(busy, 60, what="a step running task 3's sandbox")
    res = state["systemResources"]
    assert res["totalSlots"] >= 1 and res["slotsInUse"] >= 1
    assert res["availableSlots"] == res["totalSlots"] - res["slotsInUse"]
    assert 0.0 <= res["cpuUsage"] <= 100.0 and 0.0 < res["memoryUsage"] <= 100.0 and ISO.match(state["lastUpdated"])
    [running] = state["active"]
    usage = running["resourceUsage"]  # the step's live sample of its processes
    assert usage["processes"] is not None and usage["memoryBytes"] is not None and ISO.match(usage["sampledAt"])

    ex = wait_settled(stack, timeout=90)
    assert str(ex.status) == "completed", ex.reason
    progress = api(stack, "GET", f"{BASE}/{ex.id}/progress", viewer).json()
    assert (progress["progress"], progress["estimatedCompletion"]) == (100.0, None)
    tasks_by_id = {t["taskId"]: t for t in progress["tasks"]}
    flaky = tasks_by_id["2"]
    assert (flaky["dependencies"], flaky["acceptanceCriteria"]) == (["1"], [check_for("2").removeprefix("check: ")])
    assert flaky["durationMs"] == round(flaky["duration"] * 1000) and flaky["durationMs"] > 0
    [failure] = flaky["errorResolutionLog"]
    assert (failure["attempt"], failure["resolution"]) == (1, "retried: attempt 2")
    assert "expected ok 2" in failure["error"] and ISO.match(failure["occurredAt"])
    assert any("attempt 2 started" in e["message"] for e in flaky["executionLog"])
    assert ISO.match(flaky["startedAt"]) and ISO.match(flaky["completedAt"]) and flaky["startedAt"] < flaky["completedAt"]
    assert tasks_by_id["1"]["errorResolutionLog"] == [] and tasks_by_id["1"]["dependencies"] == []

    def record_and_store() -> tuple[dict[str, Any], Execution] | None:  # the closing step's own time lands last
        [record] = [e for e in api(stack, "GET", BASE, viewer).json()["executions"] if e["id"] == ex.id]
        now = store_of(stack).get(ex.id)
        return (record, now) if record["resourceUsage"]["timeUsedMs"] == round(now.time_used * 1000) else None

    record, now = devstack.wait_for(record_and_store, 10, what="the API's time used to be the store's")
    assert now.time_used > 4.0  # task 3 slept 4 s
    assert record["resourceUsage"]["attempts"] == 4 and record["progress"] == 100.0

    updates: list[dict[str, Any]] = []
    while (raw := feed.receive(timeout=2)) is not None:
        message = json.loads(raw)
        if message.get("execution") == ex.id and "kind" in message:
            updates.append(message)
    return ex.id, updates
