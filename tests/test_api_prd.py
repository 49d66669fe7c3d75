"""The PRD's data contract on the REST API and the live feed (issue 15), beside Clarity's own fields.

The PRD-shaped initialize body against the real app with the forge as GitHub; the PRD's fields of an
execution, its progress, the dashboard state and the live update, read from records the real Store
wrote; `.github/clarity.yml`'s `enabled` and `maxParallelTasks`. The same contract through a real
worker (real values end to end, a comment refused by `enabled: false`) is tests/test_e2e_prd.py.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from simple_websocket import Client
from werkzeug.serving import make_server

from app import create_app
from clarity import repoconfig, resources
from clarity.apitokens import ApiTokens
from clarity.models import Execution, TaskProgress
from clarity.repoconfig import ConfigError
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard import prd
from dashboard.live import hub_of
from dashboard.updates import ProgressUpdates
from jobs import admission
from tests.api_fixtures import bearer
from tests.conftest_forge import ForgeHandle

A = 101
BASE = "/api/devteam/executions"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TASKS = "# Tasks\n- [ ] 1 Setup\n  - [ ] 1.1 Skeleton\n  - [ ] 1.2 CI\n    - depends: 1.1\n"


def stored(store: Store, status: ExecutionStatus = ExecutionStatus.AUTONOMOUS, repo: str = "acme/widgets",
           **fields: Any) -> Execution:
    return store.create(Execution(id="", installation_id=A, repo=repo, account=repo.split("/")[0], issue_number=1,
                                  is_pull_request=False, branch="clarity/issue-1", base_branch="main",
                                  requester="ada", status=status, **fields), actor="ada")


def near_now(text: str | None, seconds: float = 60.0) -> bool:
    """An ISO timestamp of the PRD's form within `seconds` of now."""
    assert text is not None and ISO.match(text), text
    stamp = time.mktime(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return abs(stamp - time.time()) < seconds


# -- initialize: the PRD's body -------------------------------------------------------------------
@pytest.fixture
def on_forge(settings: Settings, forge: ForgeHandle) -> FlaskClient:
    return create_app(dataclasses.replace(settings, app_id=forge.app_id, private_key=forge.private_key_pem,
                                          github_api_url=forge.api_url)).test_client()


def test_the_prds_initialize_body_starts_an_execution_answered_201_with_the_prds_fields(
        on_forge: FlaskClient, forge: ForgeHandle, tokens: ApiTokens) -> None:
    installation = forge.create_repo("acme/widgets", {"tasks_list.md": TASKS})["installation_id"]
    body = {"customerId": "acme", "projectId": "acme/widgets", "repositoryUrl": f"{forge.url}/acme/widgets",
            "stopPoint": "1.2"}
    answer = on_forge.post(f"{BASE}/initialize", json=body, headers=bearer(tokens, "team_member", installation))
    assert answer.status_code == 201, answer.get_data(as_text=True)
    ex = answer.get_json()
    assert (ex["customerId"], ex["projectId"], ex["repositoryUrl"], ex["stopPoint"]) == (
        "acme", "acme/widgets", f"{forge.url}/acme/widgets", "1.2")
    assert (ex["repo"], ex["account"]) == ("acme/widgets", "acme")  # Clarity's own names stay
    assert ex["status"] in ("initializing", "queued") and near_now(ex["lastProgressAt"])
    assert isinstance(ex["createdAt"], float)  # epoch seconds, as before
    assert ex["progress"] == 0.0
    assert ex["resourceUsage"] == {"timeUsedMs": 0, "attempts": 0, "costUsd": 0.0, "tokensUsed": 0,
                                   "cpuPercent": None, "memoryBytes": None, "processes": None, "sampledAt": None}
    assert ex["artifacts"]["url"].endswith(f"/api/devteam/executions/{ex['id']}/artifacts")
    [issue] = [i for i in forge.admin("GET", "/state")[1]["issues"] if i["number"] == ex["issueNumber"]]
    assert issue["title"] == "Clarity: run until task 1.2"  # the tracking issue, as for Clarity's own body


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"customerId": "globex", "repositoryUrl": "http://127.0.0.1:9/acme/widgets"}, "customerId",
     "customerId globex is not acme"),
    ({"projectId": "acme/gears", "repositoryUrl": "http://127.0.0.1:9/acme/widgets"}, "projectId",
     "projectId acme/gears is not acme/widgets"),
    ({"repositoryUrl": "https://github.example/acme/widgets"}, "repositoryUrl", "is not on http://127.0.0.1:9"),
    ({"repository": "acme/gears", "repositoryUrl": "http://127.0.0.1:9/acme/widgets"}, "repositoryUrl",
     "repositoryUrl names acme/widgets, repository names acme/gears"),
    ({"repositoryUrl": "ftp://127.0.0.1:9/acme/widgets"}, "repositoryUrl", "String should match pattern"),
])
def test_a_prd_body_whose_names_disagree_is_422_naming_the_field(client: FlaskClient, tokens: ApiTokens,
                                                                 body: dict[str, Any], field: str, says: str) -> None:
    answer = client.post(f"{BASE}/initialize", json=body, headers=bearer(tokens, "team_member", A))
    assert answer.status_code == 422
    problem = answer.get_json()
    assert problem["errors"][0]["field"] == field
    assert says in problem["message"], problem


def test_the_openapi_document_declares_the_prds_body_and_fields(client: FlaskClient) -> None:
    doc = client.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    body = schemas["InitializeBody"]
    assert {"customerId", "projectId", "repositoryUrl", "stopPoint"} <= set(body["properties"])
    assert "repository" not in body.get("required", [])
    assert [a["required"] for a in body["anyOf"]] == [["repository"], ["repositoryUrl"], ["projectId"]]
    assert {"customerId", "projectId", "repositoryUrl", "lastProgressAt", "resourceUsage", "artifacts",
            "progress"} <= set(schemas["AutonomousExecutionOut"]["properties"])
    assert {"dependencies", "acceptanceCriteria", "executionLog", "errorResolutionLog", "durationMs",
            "startedAt", "completedAt"} <= set(schemas["TaskProgressionOut"]["properties"])
    assert {"totalSlots", "availableSlots", "cpuUsage", "memoryUsage", "activeContainers"} <= set(
        schemas["ResourcesOut"]["properties"])
    assert "lastUpdated" in schemas["DashboardOut"]["properties"]
    created = doc["paths"][f"{BASE}/initialize"]["post"]["responses"]["201"]["content"]["application/json"]
    assert created["schema"]["$ref"].endswith("/AutonomousExecutionOut")


# -- reads: execution, progress, dashboard state ----------------------------------------------------
def test_executions_carry_the_prds_fields_with_their_steps_live_sample(client: FlaskClient, store: Store,
                                                                      tokens: ApiTokens, settings: Settings) -> None:
    running = stored(store, tasks_total=4, tasks_completed=1, time_used=12.3456, attempts=2, cost_usd=0.5,
                     tokens_used=900)
    resources.record(store.r, store.namespace, running.id,
                     resources.Usage(cpu_percent=37.5, memory_bytes=52_428_800, processes=3,
                                     sampled_at=time.time(), host="worker-1"))
    listed = client.get(BASE, headers=bearer(tokens, "viewer", A)).get_json()["executions"]
    [ex] = [e for e in listed if e["id"] == running.id]
    assert (ex["customerId"], ex["projectId"]) == ("acme", "acme/widgets")
    assert ex["repositoryUrl"] == f"{settings.web_url}/acme/widgets"
    assert ex["progress"] == 25.0
    usage = ex["resourceUsage"]
    assert (usage["timeUsedMs"], usage["attempts"], usage["costUsd"], usage["tokensUsed"]) == (12346, 2, 0.5, 900)
    assert (usage["cpuPercent"], usage["memoryBytes"], usage["processes"]) == (37.5, 52_428_800, 3)
    assert near_now(usage["sampledAt"]) and near_now(ex["lastProgressAt"])
    assert ex["artifacts"]["page"] == f"{settings.public_url}/executions/{running.id}/artifacts"


def test_progress_carries_dependencies_criteria_the_tasks_log_and_how_each_failure_was_resolved(
        client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    ex = stored(store, tasks_total=2, tasks_completed=0)
    store.put_task(ex.id, TaskProgress("1.1", "Skeleton", criteria=("file pkg/__init__.py",)))
    store.put_task(ex.id, TaskProgress("1.2", "CI", depends=("1.1",), criteria=("pytest -q", "file ci.yml")))
    store.set_task_status(ex.id, "1.2", TaskStatus.IN_PROGRESS, attempts=1)
    store.log(ex.id, "task 1.2: attempt 1 started", task="1.2")
    store.log(ex.id, "task 1.2: attempt 1 failed\nassert 1 == 2", "warning", task="1.2")
    store.set_task_status(ex.id, "1.2", TaskStatus.ERROR_SOLVING, attempts=1)
    store.set_task_status(ex.id, "1.2", TaskStatus.IN_PROGRESS, attempts=2)
    store.set_task_status(ex.id, "1.2", TaskStatus.VERIFYING)
    store.set_task_status(ex.id, "1.2", TaskStatus.COMPLETED, duration=2.5)
    body = client.get(f"{BASE}/{ex.id}/progress", headers=bearer(tokens, "viewer", A)).get_json()
    tasks = {t["taskId"]: t for t in body["tasks"]}
    assert (tasks["1.2"]["dependencies"], tasks["1.2"]["acceptanceCriteria"]) == (["1.1"], ["pytest -q", "file ci.yml"])
    assert (tasks["1.1"]["dependencies"], tasks["1.1"]["acceptanceCriteria"]) == ([], ["file pkg/__init__.py"])
    assert (tasks["1.2"]["duration"], tasks["1.2"]["durationMs"]) == (2.5, 2500)  # seconds as before, and ms
    [failure] = tasks["1.2"]["errorResolutionLog"]
    assert (failure["attempt"], failure["resolution"]) == (1, "retried: attempt 2")
    assert "assert 1 == 2" in failure["error"] and near_now(failure["occurredAt"]) and near_now(failure["resolvedAt"])
    log = tasks["1.2"]["executionLog"]
    assert [e["message"] for e in log if e["kind"] == "log"] == ["task 1.2: attempt 1 started",
                                                                 "task 1.2: attempt 1 failed\nassert 1 == 2"]
    assert [e["message"] for e in log if e["kind"] == "task.status"][-1] == "task 1.2: verifying → completed"
    assert all(near_now(e["timestamp"]) for e in log)
    assert [e["level"] for e in log if e["kind"] == "log"] == ["info", "warning"]
    assert near_now(tasks["1.2"]["startedAt"]) and near_now(tasks["1.2"]["completedAt"])
    assert tasks["1.1"]["executionLog"] == [] and tasks["1.1"]["startedAt"] is None
    assert near_now(body["estimatedCompletion"], 3600) and near_now(body["lastProgressAt"])
    assert body["estimatedFinishMs"] == round(body["estimatedFinishSeconds"] * 1000)
    assert body["estimatedStartMs"] == round(body["estimatedStartSeconds"] * 1000)


def test_the_dashboard_state_says_when_it_was_read_and_the_slots_cpu_memory_and_sandboxes(
        client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    stored(store)
    state = client.get(f"{BASE}/dashboard", headers=bearer(tokens, "viewer", A)).get_json()
    assert near_now(state["lastUpdated"], 5)
    res = state["systemResources"]
    # No steps worker is up in this test: no slot at all, none free, no sandbox running.
    assert (res["totalSlots"], res["availableSlots"], res["activeContainers"]) == (0, 0, 0)
    assert 0.0 <= res["cpuUsage"] <= 100.0
    host = res["host"]
    used = 100.0 * (host["memoryTotalBytes"] - host["memoryAvailableBytes"]) / host["memoryTotalBytes"]
    assert 0.0 < res["memoryUsage"] <= 100.0 and abs(res["memoryUsage"] - used) < 5.0
    assert [e["progress"] for e in state["active"]] == [0.0]


def test_waiting_times_come_in_milliseconds_too(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    ready = stored(store, ExecutionStatus.INITIALIZING)
    store.ready.add(ready.id, 5, A)
    [entry] = client.get("/api/devteam/resources/queue", headers=bearer(tokens, "viewer", A)).get_json()["entries"]
    assert entry["estimatedStartSeconds"] is not None
    assert entry["estimatedStartMs"] == round(entry["estimatedStartSeconds"] * 1000)


def test_a_refusal_written_for_a_comment_is_plain_text_with_its_links_apart(
        on_forge: FlaskClient, forge: ForgeHandle, tokens: ApiTokens, settings: Settings) -> None:
    installation = forge.create_repo("acme/widgets", {"tasks_list.md": TASKS})["installation_id"]
    headers = bearer(tokens, "team_member", installation)
    first = on_forge.post(f"{BASE}/initialize", json={"repository": "acme/widgets"}, headers=headers).get_json()
    again = on_forge.post(f"{BASE}/initialize", json={"repository": "acme/widgets", "issueNumber": first["issueNumber"]},
                          headers=headers)
    assert again.status_code == 409
    problem = again.get_json()
    assert problem["message"].startswith(f"An execution is already working here: {first['id']} (")
    assert "](" not in problem["message"] and "[`" not in problem["message"]  # the comment's Markdown link, undone
    assert "`/clarity stop`" in problem["message"]  # code keeps its backticks: it is what to type
    assert problem["links"] == [{"text": first["id"], "url": f"{settings.public_url}/executions/{first['id']}"}]
    missing = on_forge.get(f"{BASE}/nope12345678/progress", headers=headers)
    assert missing.get_json() == {"message": "no execution nope12345678"}  # no links when none is named


def test_bold_words_lose_their_stars_and_links_their_brackets() -> None:
    assert prd.plain_text("Task 1 of [`abc`](https://x.example/e/abc) marked **done** by @ada.") == (
        "Task 1 of abc marked done by @ada.", [{"text": "abc", "url": "https://x.example/e/abc"}])


# -- the live feed: the PRD's ProgressUpdate --------------------------------------------------------
@pytest.fixture
def web(settings: Settings) -> Iterator[str]:
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_port}"
    finally:
        hub_of(app).stop()
        server.shutdown()
        server.server_close()


def events(ws: Client, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < count and time.monotonic() < deadline:
        raw = ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        if raw is not None and "kind" in (message := json.loads(raw)):
            found.append(message)
    return found


def test_every_live_update_carries_progress_estimated_completion_and_metrics(web: str, store: Store) -> None:
    ws = Client.connect(f"{web}/live")
    try:
        ws.send("{}")
        assert json.loads(ws.receive(timeout=5))["type"] == "hello"
        time.sleep(0.3)  # the hub subscribes on the first socket
        ex = stored(store, tasks_total=4, tasks_completed=1, attempts=2, error_count=1, retry_count=1,
                    time_used=3.25, current_task="1.2")
        store.log(ex.id, "task 1.2: attempt 2 started", task="1.2")
        store.transition(ex.id, ExecutionStatus.TASK_EXECUTING, "engine", "task 1.2")
        created, line, moved = events(ws, 3)
    finally:
        ws.close()
    assert (line["kind"], line["message"], moved["kind"]) == ("log", "task 1.2: attempt 2 started", "execution.status")
    for update in (created, line, moved):
        assert (update["executionId"], update["taskId"], update["progress"]) == (ex.id, "1.2", 25.0)
        assert near_now(update["timestamp"], 10) and near_now(update["estimatedCompletion"], 3600)
        metrics = update["metrics"]
        assert (metrics["tasksCompleted"], metrics["tasksTotal"], metrics["attempts"]) == (1, 4, 2)
        assert (metrics["errorCount"], metrics["retryCount"], metrics["timeUsedMs"]) == (1, 1, 3250)
        assert update["execution"] == ex.id and "id" in update  # the feed's own fields stay


def test_an_event_that_cannot_be_shaped_goes_out_as_it_came(store: Store) -> None:
    ex = stored(store)
    broken = ProgressUpdates(store, lambda execution: 1 / 0)  # an estimate that fails must not stop the hub
    raw = json.dumps({"kind": "execution.status", "execution": ex.id, "installation": A, "time": time.time()})
    assert broken.shape(raw) == raw
    assert broken.shape('{"type": "ping"}') == '{"type": "ping"}'
    shaped = json.loads(ProgressUpdates(store, lambda execution: 60.0).shape(raw))
    assert (shaped["executionId"], shaped["progress"]) == (ex.id, 0.0) and near_now(shaped["estimatedCompletion"], 120)


def test_a_settled_execution_has_no_estimated_completion() -> None:
    ex = Execution(id="x", installation_id=1, repo="a/b", account="a", issue_number=1, is_pull_request=False,
                   branch="b", base_branch="main", requester="ada", status=ExecutionStatus.COMPLETED,
                   tasks_completed=2, tasks_total=2)
    update = prd.progress_update({"kind": "execution.status", "execution": "x", "time": 1.5e9}, ex, 30.0, 1.5e9)
    assert (update["progress"], update["estimatedCompletion"], update["timestamp"]) == (
        100.0, None, "2017-07-14T02:40:00.000Z")


# -- .github/clarity.yml: enabled, maxParallelTasks ---------------------------------------------------
def test_enabled_and_max_parallel_tasks_are_read_and_checked() -> None:
    assert (repoconfig.parse("").enabled, repoconfig.parse("").max_parallel_tasks) == (True, 1)
    config = repoconfig.parse("enabled: false\nmaxParallelTasks: 4\n")
    assert (config.enabled, config.max_parallel_tasks, config.parallel_executions) == (False, 4, 1)
    assert "maxParallelTasks" not in config.extra and "enabled" not in config.extra
    for text, says in (("enabled: maybe\n", "`enabled` must be true or false, got 'maybe'"),
                       ("maxParallelTasks: 0\n", "`maxParallelTasks` must be a whole number from 1 to 100, got 0"),
                       ("maxParallelTasks: two\n", "got 'two'"), ("maxParallelTasks: true\n", "got True")):
        with pytest.raises(ConfigError, match=re.escape(says)):
            repoconfig.parse(text)


def test_disabled_refuses_and_a_cap_above_one_is_said_to_be_one() -> None:
    assert admission.refusal(repoconfig.parse("enabled: true\n")) is None
    assert admission.refusal(None) is None  # unreadable: the step says why, as before
    refused = admission.refusal(repoconfig.parse("enabled: false\n"))
    assert refused is not None and "turned off" in refused and "`enabled: false`" in refused
    assert admission.parallel_note(repoconfig.parse("maxParallelTasks: 1\n")) == ""
    note = admission.parallel_note(repoconfig.parse("maxParallelTasks: 3\n"))
    assert "`maxParallelTasks: 3`" in note and "is read as 1" in note and "one execution per repository" in note
