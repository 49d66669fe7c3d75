"""End to end through the REST API only: forge + web + a real `clarity worker`, no comment typed.

The same journeys as the comment tests, driven by a script with an API token: initialize with a stop
point, move it, resume to the end; replay a blocked execution from its failed task; re-prioritise and
stop a running one. Assertions read the API's answers and what the forge recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

import devstack
from clarity.apitokens import ApiTokens
from tests.e2e import REPO, git, make_repo, store_of, tasks_md

BASE = "/api/devteam/executions"
SETTLED = {"paused", "completed", "blocked", "failed", "stopped"}


def installation_of(stack: devstack.Stack, account: str) -> int:
    found = [i for i in stack.admin("GET", "/state")["installations"] if i["account"] == account]
    return int(found[0]["id"])


def token(stack: devstack.Stack, role: str, account: str = "acme") -> dict[str, str]:
    made, _ = ApiTokens(store_of(stack).r, stack.settings.namespace).create(role, [installation_of(stack, account)],
                                                                              name=f"ci-{role}")
    return {"Authorization": f"Bearer {made}"}


def call(stack: devstack.Stack, method: str, path: str, headers: dict[str, str], body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{stack.web_url}{path}", json=body, headers=headers, timeout=30)


def settled(stack: devstack.Stack, execution_id: str, headers: dict[str, str], since: float = 0.0,
            timeout: float = 60) -> dict[str, Any]:
    """The progress of an execution once it has settled (finished after `since`)."""
    def progress() -> dict[str, Any] | None:
        listed = call(stack, "GET", BASE, headers).json()["executions"]
        record = next(e for e in listed if e["id"] == execution_id)
        if record["status"] in SETTLED and record["finishedAt"] > since:
            return {**call(stack, "GET", f"{BASE}/{execution_id}/progress", headers).json(), "record": record}
        return None

    found: dict[str, Any] = devstack.wait_for(progress, timeout, what=f"execution {execution_id} to settle")
    return found


def test_initialize_pause_move_the_stop_point_resume_to_completion(stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False),
                                        ("1.2", "Add CI", False), ("2", "Data", True), ("2.1", "Add models", False)))
    member = token(stack, "team_member")
    refused = call(stack, "POST", f"{BASE}/initialize", token(stack, "viewer"), {"repository": REPO})
    assert refused.status_code == 403 and "needs the team_member role in acme" in refused.json()["message"]
    unknown = call(stack, "POST", f"{BASE}/initialize", member, {"repository": REPO, "stopPoint": "9.9"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "stopPoint"
    assert "9.9" in unknown.json()["message"]
    elsewhere = call(stack, "POST", f"{BASE}/initialize", member, {"repository": "acme/nowhere"})
    assert elsewhere.status_code == 404

    started = call(stack, "POST", f"{BASE}/initialize", member, {"repository": REPO, "stopPoint": "1.1",
                                                                 "priority": 7, "budget": "30m"})
    assert started.status_code == 201, started.text
    ex = started.json()
    assert (ex["repo"], ex["stopPoint"], ex["priority"], ex["requester"]) == (REPO, "1.1", 7, "token:ci-team_member")
    assert ex["budget"] == "time=30m" and ex["status"] in ("initializing", "queued")
    issues = [i for i in stack.admin("GET", "/state")["issues"] if i["number"] == ex["issueNumber"]]
    assert issues and issues[0]["title"] == "Clarity: run until task 1.1"  # the tracking issue

    paused = settled(stack, ex["id"], member)
    assert paused["status"] == "paused", paused["record"]["reason"]
    assert [(t["id"], t["status"]) for t in paused["tasks"]] == [("1.1", "completed")]
    moved = call(stack, "POST", f"{BASE}/{ex['id']}/set-stop-point", member, {"stopPoint": "2.1"})
    assert moved.status_code == 200 and moved.json()["stopPoint"] == "2.1"
    resumed = call(stack, "POST", f"{BASE}/{ex['id']}/resume", member)
    assert resumed.status_code == 200 and resumed.json()["status"] in ("initializing", "queued")

    done = settled(stack, ex["id"], member, since=paused["record"]["finishedAt"])
    assert done["status"] == "completed", done["record"]["reason"]
    assert {t["id"]: t["status"] for t in done["tasks"]} == {"1.1": "completed", "1.2": "completed",
                                                             "2.1": "completed"}
    assert git(stack, "log", "--format=%s", f"clarity/issue-{ex['issueNumber']}").splitlines()[:3] == [
        "clarity: 2.1 Add models", "clarity: 1.2 Add CI", "clarity: 1.1 Create skeleton"]
    again = call(stack, "POST", f"{BASE}/{ex['id']}/resume", member)
    assert again.status_code == 409 and "completed" in again.json()["message"]
    artifacts = call(stack, "GET", f"{BASE}/{ex['id']}/artifacts", member).json()["artifacts"]
    assert any(a["path"].startswith("2.1/") for a in artifacts)
    comments = [c["body"] for c in stack.admin("GET", "/state")["comments"] if c["issue_number"] == ex["issueNumber"]]
    assert any("now stops after task 2.1" in body for body in comments)
    assert not any("nothing to resume" in body for body in comments)  # a refused call posts nothing


def test_replay_runs_a_blocked_execution_again_from_its_failed_task(stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Good", False), ("2", "Impossible [broken]", False),
                                        ("3", "After", False)))
    member = token(stack, "team_member")
    ex = call(stack, "POST", f"{BASE}/initialize", member, {"repository": REPO}).json()
    blocked = settled(stack, ex["id"], member)
    assert blocked["status"] == "blocked", blocked["record"]["reason"]
    failed = {t["id"]: t for t in blocked["tasks"]}["2"]
    assert failed["status"] == "failed" and failed["attempts"] >= 2 and failed["errorClass"]

    def runs_of_task_2() -> int:
        return sum(1 for r in stack.admin("GET", "/state")["check_runs"] if r["name"] == "Clarity: 2 Impossible [broken]")

    before = runs_of_task_2()
    replayed = call(stack, "POST", f"{BASE}/{ex['id']}/replay", member, {"fromTask": "2", "stopPoint": "2",
                                                                        "tool": "command"})
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["stopPoint"], replayed.json()["tool"]) == ("2", "command")
    again = settled(stack, ex["id"], member, since=blocked["record"]["finishedAt"])
    assert again["status"] == "blocked"  # `[broken]` fails whatever runs it; what matters is that it ran again
    assert runs_of_task_2() > before
    assert {t["id"]: t["status"] for t in again["tasks"]}["1"] == "completed"  # task 1 was not run again

    # A person settles it instead: done by hand, and the execution goes on to its stop point.
    settled_by_hand = call(stack, "POST", f"{BASE}/{ex['id']}/manual-override", member,
                           {"taskId": "2", "action": "done"})
    assert settled_by_hand.status_code == 200, settled_by_hand.text
    paused = settled(stack, ex["id"], member, since=again["record"]["finishedAt"])
    assert paused["status"] == "paused" and paused["record"]["reason"] == "stop point 2 reached"
    assert {t["id"]: t["overrideBy"] for t in paused["tasks"]}["2"] == "token:ci-team_member"


def test_a_manager_reprioritises_and_a_member_stops_a_running_execution(stack: devstack.Stack,
                                                                        tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Slow [slow:6]", False), ("2", "After", False)))
    member, manager = token(stack, "team_member"), token(stack, "manager")
    ex = call(stack, "POST", f"{BASE}/initialize", member, {"repository": REPO}).json()
    assert call(stack, "POST", "/api/devteam/resources/prioritize", member,
                {"executionId": ex["id"], "priority": 9}).status_code == 403
    raised = call(stack, "POST", "/api/devteam/resources/prioritize", manager, {"executionId": ex["id"], "priority": 9})
    assert raised.status_code == 200 and raised.json()["priority"] == 9

    def busy() -> dict[str, Any] | None:
        found: dict[str, Any] = call(stack, "GET", "/api/devteam/resources/status", member).json()
        return found if found["slotsInUse"] >= 1 else None

    resources = devstack.wait_for(busy, 30, what="a worker to take the slow task")
    assert any(w["currentJob"] for w in resources["workers"])
    stopping = call(stack, "POST", f"{BASE}/{ex['id']}/stop", member)
    assert stopping.status_code == 200
    stopped = settled(stack, ex["id"], member)
    assert stopped["status"] == "stopped"
    board = call(stack, "GET", f"{BASE}/dashboard", member).json()
    assert ex["id"] in {e["id"] for e in board["recent"]}
