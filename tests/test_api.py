"""The REST API (/api/devteam): auth, roles, scoping, validation, reads; the engine through its port.

Requests go to the real app (`create_app`) over Flask's test client with real API tokens
(clarity.apitokens) on a real Redis; the executions read here are stored through the real Store.
Acting end to end (a forge and a worker) is in tests/test_api_e2e.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from clarity.apitokens import ApiTokens
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard.api_models import ExecutionOut
from jobs.api_engine import parse_meminfo
from tests.api_fixtures import bearer

A, B = 101, 202  # two customers' installations
BASE = "/api/devteam/executions"


def stored(store: Store, installation: int, repo: str, status: ExecutionStatus = ExecutionStatus.QUEUED,
           **fields: Any) -> Execution:
    return store.create(Execution(id="", installation_id=installation, repo=repo, account=repo.split("/")[0],
                                  issue_number=1, is_pull_request=False, branch="clarity/issue-1",
                                  base_branch="main", requester="ada", status=status, **fields), actor="ada")


# -- auth: 401 ------------------------------------------------------------------------------------
def test_without_credentials_a_signed_in_deployment_answers_401(settings: Settings) -> None:
    client = create_app(dataclasses.replace(settings, dashboard_auth="github")).test_client()
    for method, path in (("GET", BASE), ("GET", f"{BASE}/dashboard"), ("POST", f"{BASE}/initialize"),
                         ("GET", "/api/devteam/resources/status"), ("POST", "/api/devteam/resources/prioritize")):
        response = client.open(path, method=method, json={})
        assert response.status_code == 401, path
        assert "sign in" in response.get_json()["message"]
    assert client.get("/api/openapi.json").get_json()["openapi"].startswith("3.")  # the reference is public


def test_a_token_that_was_never_made_is_401_even_on_an_open_dashboard(client: FlaskClient) -> None:
    response = client.get(BASE, headers={"Authorization": "Bearer clr_abcdefgh_" + "x" * 30})
    assert response.status_code == 401
    assert "not valid" in response.get_json()["message"]


def test_a_revoked_token_is_401(client: FlaskClient, tokens: ApiTokens) -> None:
    token, record = tokens.create("admin", (A,))
    assert client.get(BASE, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    tokens.revoke(record.id)
    assert client.get(BASE, headers={"Authorization": f"Bearer {token}"}).status_code == 401


# -- scoping: 404 and lists -----------------------------------------------------------------------
def test_a_token_of_installation_a_never_sees_b(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    mine = stored(store, A, "acme/widgets")
    theirs = stored(store, B, "globex/gears", ExecutionStatus.PAUSED)
    headers = bearer(tokens, "manager", A)
    listed = client.get(BASE, headers=headers).get_json()
    assert [e["id"] for e in listed["executions"]] == [mine.id]
    assert client.get(BASE, query_string={"installation": B}, headers=headers).get_json()["executions"] == []
    assert client.get(BASE, query_string={"repo": "globex/gears"}, headers=headers).get_json()["executions"] == []
    board = client.get(f"{BASE}/dashboard", headers=headers).get_json()
    assert theirs.id not in {e["id"] for key in ("active", "queued", "recent") for e in board[key]}
    assert board["metrics"]["executions"] == 1
    unknown = client.get(f"{BASE}/nope12345678/progress", headers=headers)
    for path in (f"{BASE}/{theirs.id}/progress", f"{BASE}/{theirs.id}/artifacts"):
        response = client.get(path, headers=headers)
        assert (response.status_code, response.get_json()["message"]) == (404, f"no execution {theirs.id}")
    assert unknown.status_code == 404
    for action, body in (("stop", None), ("resume", None), ("set-stop-point", {"stopPoint": "1"}),
                         ("manual-override", {"taskId": "1", "action": "done"}), ("replay", {})):
        response = client.post(f"{BASE}/{theirs.id}/{action}", json=body, headers=headers)
        assert response.status_code == 404, action
    response = client.post("/api/devteam/resources/prioritize", json={"executionId": theirs.id, "priority": 9},
                           headers=headers)
    assert response.status_code == 404
    assert store.get(theirs.id).status is ExecutionStatus.PAUSED and store.get(theirs.id).priority == 5


def test_queue_lists_only_the_callers_waiting_executions(client: FlaskClient, store: Store,
                                                         tokens: ApiTokens) -> None:
    mine = stored(store, A, "acme/widgets", ExecutionStatus.INITIALIZING, priority=7)
    theirs = stored(store, B, "globex/gears", ExecutionStatus.INITIALIZING, priority=9)
    line = stored(store, A, "acme/widgets")
    store.ready.add(theirs.id, 9, B)
    store.ready.add(mine.id, 7, A)
    store.enqueue_waiting("acme/widgets", line.id)
    entries = client.get("/api/devteam/resources/queue", headers=bearer(tokens, "viewer", A)).get_json()["entries"]
    assert [(e["executionId"], e["waitingFor"], e["position"], e["priority"]) for e in entries] == [
        (mine.id, "worker", 2, 7), (line.id, "repository", 1, 5)]
    assert entries[0]["estimatedStartSeconds"] is not None


# -- roles: 403 -----------------------------------------------------------------------------------
def test_a_viewer_may_read_but_not_act(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    ex = stored(store, A, "acme/widgets", ExecutionStatus.PAUSED)
    headers = bearer(tokens, "viewer", A)
    assert client.get(f"{BASE}/{ex.id}/progress", headers=headers).status_code == 200
    for action, body in (("stop", None), ("resume", None), ("set-stop-point", {"stopPoint": "1.2"}),
                         ("manual-override", {"taskId": "1", "action": "skipped"}), ("replay", {"fromTask": "2"})):
        response = client.post(f"{BASE}/{ex.id}/{action}", json=body, headers=headers)
        assert response.status_code == 403, action
        assert response.get_json()["message"] == f"{action} needs the team_member role in acme; yours is viewer"
    assert store.get(ex.id).status is ExecutionStatus.PAUSED


def test_when_github_cannot_be_reached_initialize_is_503(client: FlaskClient, tokens: ApiTokens) -> None:
    response = client.post(f"{BASE}/initialize", json={"repository": "acme/widgets"},
                           headers=bearer(tokens, "team_member", A))
    assert response.status_code == 503
    assert response.get_json()["message"].startswith("GitHub could not be reached")


def test_prioritize_needs_a_manager(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    ex = stored(store, A, "acme/widgets")
    response = client.post("/api/devteam/resources/prioritize", json={"executionId": ex.id, "priority": 9},
                           headers=bearer(tokens, "team_member", A))
    assert response.status_code == 403
    assert response.get_json()["message"] == "prioritize needs the manager role in acme; yours is team_member"
    assert store.get(ex.id).priority == 5


def test_the_open_dashboard_reads_everything_but_acts_on_nothing(client: FlaskClient, store: Store) -> None:
    ex = stored(store, B, "globex/gears", ExecutionStatus.PAUSED)
    assert [e["id"] for e in client.get(BASE).get_json()["executions"]] == [ex.id]
    # Without a token a POST is a browser's: the session's CSRF token comes first.
    assert client.post(f"{BASE}/{ex.id}/stop").status_code == 400


# -- validation: 422 ------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "field", "reason"), [
    ("initialize", {}, "repository", "Field required"),
    ("initialize", {"repository": "acme"}, "repository", "String should match pattern"),
    ("initialize", {"repository": "acme/widgets", "priority": 11}, "priority", "less than or equal to 10"),
    ("initialize", {"repository": "acme/widgets", "budget": "forever"}, "budget", "forever"),
    ("initialize", {"repository": "acme/widgets", "stop_point": "1.2"}, "stop_point", "Extra inputs"),
    ("{id}/set-stop-point", {"stopPoint": "two"}, "stopPoint", "String should match pattern"),
    ("{id}/manual-override", {"taskId": "1", "action": "maybe"}, "action", "'done' or 'skipped'"),
    ("{id}/replay", {"tool": "rm -rf"}, "tool", "String should match pattern"),
])
def test_bad_bodies_are_422_naming_the_field(client: FlaskClient, store: Store, tokens: ApiTokens, path: str,
                                            body: dict[str, Any], field: str, reason: str) -> None:
    ex = stored(store, A, "acme/widgets", ExecutionStatus.PAUSED)
    response = client.post(f"{BASE}/{path.format(id=ex.id)}", json=body, headers=bearer(tokens, "admin", A))
    assert response.status_code == 422
    problem = response.get_json()
    [error] = [e for e in problem["errors"] if e["field"] == field]
    assert reason in error["reason"]
    assert problem["message"].startswith(f"{problem['errors'][0]['field']}: ")


def test_prioritize_and_list_validate_too(client: FlaskClient, tokens: ApiTokens) -> None:
    headers = bearer(tokens, "manager", A)
    response = client.post("/api/devteam/resources/prioritize", json={"executionId": "x", "priority": 0},
                           headers=headers)
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "priority"
    for query in ({"limit": 0}, {"status": "sleeping"}, {"cursor": "yesterday"}, {"installation": "a"}):
        response = client.get(BASE, query_string=query, headers=headers)
        assert response.status_code == 422, query
        assert response.get_json()["errors"][0]["field"] == next(iter(query))


# -- reads ----------------------------------------------------------------------------------------
def test_list_filters_by_status_and_pages_with_a_cursor(client: FlaskClient, store: Store,
                                                        tokens: ApiTokens) -> None:
    made = [stored(store, A, "acme/widgets", ExecutionStatus.PAUSED if i % 2 else ExecutionStatus.QUEUED)
            for i in range(7)]
    stored(store, A, "acme/other", ExecutionStatus.PAUSED)
    headers = bearer(tokens, "viewer", A, B)
    seen: list[str] = []
    cursor = None
    while True:
        query = {"repo": "acme/widgets", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(BASE, query_string=query, headers=headers).get_json()
        seen += [e["id"] for e in page["executions"]]
        assert len(page["executions"]) <= 2
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [e.id for e in reversed(made)]
    paused = client.get(BASE, query_string={"status": "paused"}, headers=headers).get_json()["executions"]
    assert len(paused) == 4 and {e["status"] for e in paused} == {"paused"}


def test_every_field_of_the_record_is_declared_in_the_schema() -> None:
    record = Execution(id="x", installation_id=1, repo="a/b", account="a", issue_number=1, is_pull_request=False,
                       branch="b", base_branch="main", requester="ada").to_json()
    assert set(record) == set(ExecutionOut.model_fields)


def test_progress_lists_tasks_with_attempts_tool_duration_and_error_class(
        client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    ex = stored(store, A, "acme/widgets", ExecutionStatus.BLOCKED)
    store.set_scope(ex.id, ["1", "2"])  # the numbers are counted from the task table (clarity.numbers)
    store.put_task(ex.id, TaskProgress("1", "Good", TaskStatus.COMPLETED, attempts=1, tool="command", duration=2.5,
                                       commit="abc"))
    store.put_task(ex.id, TaskProgress("2", "Bad", TaskStatus.IN_PROGRESS, attempts=3, tool="aider"))
    store.put_task(ex.id, TaskProgress("2", "Bad", TaskStatus.FAILED, attempts=3, tool="aider", duration=9.0,
                                       last_error="assert 1 == 2", error_class="test_failure"))
    body = client.get(f"{BASE}/{ex.id}/progress", headers=bearer(tokens, "viewer", A)).get_json()
    assert (body["status"], body["tasksCompleted"], body["tasksTotal"]) == ("blocked", 1, 2)
    assert [(t["id"], t["status"], t["attempts"], t["tool"], t["duration"], t["errorClass"]) for t in body["tasks"]] \
        == [("1", "completed", 1, "command", 2.5, ""), ("2", "failed", 3, "aider", 9.0, "test_failure")]
    assert body["estimatedStartSeconds"] is None  # blocked: waits for a person


def test_artifacts_are_listed_with_the_urls_that_serve_them(client: FlaskClient, store: Store, tokens: ApiTokens,
                                                            settings: Settings) -> None:
    ex = stored(store, A, "acme/widgets", ExecutionStatus.PAUSED)
    headers = bearer(tokens, "viewer", A)
    assert client.get(f"{BASE}/{ex.id}/artifacts", headers=headers).get_json()["artifacts"] == []
    folder = settings.artifacts_dir / ex.id / "1.2" / "attempt-1"
    folder.mkdir(parents=True)
    (folder / "agent.log").write_text("hello\n")
    listed = client.get(f"{BASE}/{ex.id}/artifacts", headers=headers).get_json()["artifacts"]
    url = f"{settings.public_url}/executions/{ex.id}/artifacts/1.2/attempt-1/agent.log"
    assert {"path": "1.2/attempt-1/agent.log", "isDir": False, "size": 6, "url": url} in listed
    served = client.get(url.removeprefix(settings.public_url), headers=headers)
    assert served.status_code == 200 and served.get_data(as_text=True) == "hello\n"


def test_dashboard_groups_executions_and_counts_them(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    running = stored(store, A, "acme/widgets", ExecutionStatus.INITIALIZING, tasks_completed=2, tasks_passed=2,
                     attempts=3)
    waiting = stored(store, A, "acme/widgets")
    done = stored(store, A, "acme/other", ExecutionStatus.PAUSED, tasks_completed=1, tasks_passed=1, tasks_failed=1,
                  attempts=1, error_count=2)
    board = client.get(f"{BASE}/dashboard", headers=bearer(tokens, "viewer", A)).get_json()
    assert [e["id"] for e in board["active"]] == [running.id]
    assert [e["id"] for e in board["queued"]] == [waiting.id]
    assert [e["id"] for e in board["recent"]] == [done.id]
    metrics = board["metrics"]
    assert (metrics["executions"], metrics["tasksCompleted"], metrics["attempts"], metrics["errorCount"]) == (3, 3, 4, 2)
    assert metrics["successRate"] == 0.75  # 3 tasks passed, 1 failed (clarity.numbers)
    assert metrics["byStatus"] == {"initializing": 1, "queued": 1, "paused": 1}
    assert set(board["systemResources"]) >= {"workers", "slotsInUse", "queueDepths", "host"}


def test_resources_status_reports_queue_depths_and_the_host(client: FlaskClient, store: Store,
                                                            tokens: ApiTokens) -> None:
    ex = stored(store, A, "acme/widgets", ExecutionStatus.INITIALIZING)
    store.ready.add(ex.id, 5, A)
    body = client.get("/api/devteam/resources/status", headers=bearer(tokens, "viewer", A)).get_json()
    assert set(body["queueDepths"]) == {str(p) for p in range(1, 11)}
    assert body["readyExecutions"] == 1 and body["workers"] == [] and body["slotsInUse"] == 0
    host = body["host"]
    assert host["cpuCount"] >= 1 and len(host["loadAverage"]) == 3
    if Path("/proc/meminfo").exists():
        assert 0 < host["memoryAvailableBytes"] <= host["memoryTotalBytes"]


def test_meminfo_is_read_in_bytes() -> None:
    text = "MemTotal:       16314128 kB\nMemFree:          512000 kB\nMemAvailable:    8000000 kB\nHugePages_Total: 0\n"
    assert parse_meminfo(text) == (16314128 * 1024, 8000000 * 1024)
    assert parse_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n") == (2048 * 1024, 1024 * 1024)
    assert parse_meminfo("") == (0, 0)


def test_the_openapi_document_declares_every_endpoint(client: FlaskClient, tokens: ApiTokens) -> None:
    doc = client.get("/api/openapi.json", headers=bearer(tokens, "viewer", A)).get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        f"{BASE}/initialize", BASE, f"{BASE}/dashboard", *(f"{BASE}/{{execution_id}}/{a}" for a in (
            "stop", "resume", "set-stop-point", "manual-override", "progress", "artifacts", "replay")),
        "/api/devteam/resources/status", "/api/devteam/resources/queue", "/api/devteam/resources/prioritize",
        "/api/devteam/history/executions", "/api/devteam/history/executions/{execution_id}",
        "/api/devteam/history/trends", "/api/devteam/repos/{owner}/{repo}/tasks"}
    initialize = doc["paths"][f"{BASE}/initialize"]["post"]
    assert set(initialize["responses"]) == {"201", "401", "403", "404", "409", "422", "503"}
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
