"""The history endpoints of the REST API: /api/devteam/history/executions[/<id>] and /history/trends.

Real app (`create_app`), real API tokens and a real Redis, as tests/test_api.py. Every endpoint reads, so
the viewer role is enough and no 403 applies; scoping answers 404 for others' ids and leaves them out of
lists and trends.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from clarity.apitokens import ApiTokens
from clarity.history import window_start
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from tests.api_fixtures import bearer

S, T = ExecutionStatus, TaskStatus
A, B = 101, 202
HISTORY = "/api/devteam/history/executions"
TRENDS = "/api/devteam/history/trends"
PATHS = {
    S.COMPLETED: (S.INITIALIZING, S.AUTONOMOUS, S.COMPLETED), S.FAILED: (S.INITIALIZING, S.FAILED),
    S.STOPPED: (S.STOPPED,), S.PAUSED: (S.INITIALIZING, S.AUTONOMOUS, S.PAUSED),
    S.TASK_EXECUTING: (S.INITIALIZING, S.AUTONOMOUS, S.TASK_EXECUTING), S.QUEUED: (),
}


def stored(store: Store, installation: int, repo: str, status: ExecutionStatus,
           tasks: tuple[TaskProgress, ...] = ()) -> Execution:
    ex = store.create(Execution(id="", installation_id=installation, repo=repo, account=repo.split("/")[0],
                                issue_number=1, is_pull_request=False, branch="clarity/issue-1",
                                base_branch="main", requester="ada"), actor="ada")
    for progress in tasks:
        store.put_task(ex.id, dataclasses.replace(progress, status=T.PENDING))
        if progress.status is T.FAILED:
            store.set_task_status(ex.id, progress.task_id, T.IN_PROGRESS)
        if progress.status is not T.PENDING:
            store.put_task(ex.id, progress)
    for step in PATHS[status]:
        ex = store.transition(ex.id, step, "engine")
    return ex


GOOD = TaskProgress("1", "Good", T.COMPLETED, attempts=1, tool="aider", duration=10.0, commit="abc")
SLOW = TaskProgress("2", "Slow", T.COMPLETED, attempts=2, tool="aider", duration=30.0, commit="def")
BAD = TaskProgress("3", "Bad", T.FAILED, attempts=4, tool="claude", duration=20.0, error_class="check_failed",
                   last_error="assert 1 == 2")
BY_HAND = TaskProgress("4", "By hand", T.COMPLETED, override_by="ada")


# -- GET /history/executions ---------------------------------------------------------------------
def test_history_lists_finished_executions_with_their_task_outcomes(client: FlaskClient, store: Store,
                                                                    tokens: ApiTokens) -> None:
    done = stored(store, A, "acme/widgets", S.COMPLETED, (GOOD, BAD))
    stored(store, A, "acme/widgets", S.PAUSED, (SLOW,))
    stored(store, A, "acme/widgets", S.TASK_EXECUTING)
    stopped = stored(store, A, "acme/other", S.STOPPED)
    page = client.get(HISTORY, headers=bearer(tokens, "viewer", A)).get_json()
    assert [e["id"] for e in page["executions"]] == [stopped.id, done.id] and page["nextCursor"] is None
    record = page["executions"][1]
    assert (record["status"], record["repo"], record["account"]) == ("completed", "acme/widgets", "acme")
    assert [(t["id"], t["status"], t["attempts"], t["tool"], t["duration"], t["errorClass"], t["lastError"])
            for t in record["tasks"]] == [("1", "completed", 1, "aider", 10.0, "", ""),
                                          ("3", "failed", 4, "claude", 20.0, "check_failed", "assert 1 == 2")]
    assert page["executions"][0]["tasks"] == []


def test_history_filters_by_status_repo_installation_and_since(client: FlaskClient, store: Store,
                                                               tokens: ApiTokens) -> None:
    failed = stored(store, A, "acme/widgets", S.FAILED)
    done = stored(store, A, "acme/other", S.COMPLETED)
    headers = bearer(tokens, "viewer", A, B)
    other = stored(store, B, "globex/gears", S.COMPLETED)

    def ids(**query: Any) -> list[str]:
        return [e["id"] for e in client.get(HISTORY, query_string=query, headers=headers).get_json()["executions"]]

    assert ids(status="failed") == [failed.id]
    assert ids(repo="acme/other") == [done.id]
    assert ids(installation=B) == [other.id]
    assert ids() == [other.id, done.id, failed.id]
    assert ids(since=store.get(done.id).finished_at) == [other.id, done.id]
    assert ids(since=time.time() + 60) == []


def test_history_pages_with_a_cursor(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    made = [stored(store, A, "acme/widgets", S.COMPLETED if i % 2 else S.PAUSED) for i in range(7)]
    headers = bearer(tokens, "viewer", A)
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get(HISTORY, query_string={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=headers).get_json()
        assert len(page["executions"]) <= 2
        seen += [e["id"] for e in page["executions"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [ex.id for ex in reversed(made) if ex.status is S.COMPLETED]


# -- GET /history/executions/<id> ----------------------------------------------------------------
def test_one_finished_execution_with_its_tasks(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    ex = stored(store, A, "acme/widgets", S.FAILED, (GOOD, BAD, BY_HAND))
    body = client.get(f"{HISTORY}/{ex.id}", headers=bearer(tokens, "viewer", A)).get_json()
    assert (body["id"], body["status"], body["finishedAt"]) == (ex.id, "failed", store.get(ex.id).finished_at)
    assert [(t["id"], t["status"], t["overrideBy"]) for t in body["tasks"]] == [
        ("1", "completed", ""), ("3", "failed", ""), ("4", "completed", "ada")]


def test_unknown_unseen_and_unfinished_executions_are_404(client: FlaskClient, store: Store,
                                                          tokens: ApiTokens) -> None:
    theirs = stored(store, B, "globex/gears", S.COMPLETED)
    live = stored(store, A, "acme/widgets", S.TASK_EXECUTING)
    headers = bearer(tokens, "admin", A)
    for execution_id in (theirs.id, "nosuchexec12"):
        response = client.get(f"{HISTORY}/{execution_id}", headers=headers)
        assert (response.status_code, response.get_json()) == (404, {"message": f"no execution {execution_id}"})
    response = client.get(f"{HISTORY}/{live.id}", headers=headers)
    assert response.status_code == 404
    assert response.get_json()["message"].startswith(f"execution {live.id} has not finished (status task-executing)")


# -- GET /history/trends ---------------------------------------------------------------------------
def test_trends_per_customer_from_the_finished_executions(client: FlaskClient, store: Store,
                                                          tokens: ApiTokens) -> None:
    stored(store, A, "acme/widgets", S.COMPLETED, (GOOD, SLOW, BY_HAND))
    stored(store, A, "acme/other", S.FAILED, (BAD,))
    stored(store, A, "acme/widgets", S.PAUSED, (GOOD,))  # not finished: not counted
    stored(store, B, "globex/gears", S.COMPLETED, (GOOD,))
    body = client.get(TRENDS, query_string={"days": 7}, headers=bearer(tokens, "viewer", A)).get_json()
    assert body["days"] == 7 and body["since"] == window_start(time.time(), 7)
    [acme] = body["customers"]
    assert (acme["installationId"], acme["account"], acme["executions"]) == (A, "acme", 2)
    assert (acme["tasksCompleted"], acme["tasksFailed"], acme["successRate"], acme["meanTaskSeconds"]) == \
        (2, 1, 0.667, 20.0)
    assert [d["tasksCompleted"] for d in acme["perDay"]] == [0, 0, 0, 0, 0, 0, 2]
    assert acme["perDay"][-1]["date"] == time.strftime("%Y-%m-%d", time.gmtime())
    assert acme["tools"] == [
        {"tool": "aider", "tasksCompleted": 2, "tasksFailed": 0, "successRate": 1.0, "meanTaskSeconds": 20.0},
        {"tool": "claude", "tasksCompleted": 0, "tasksFailed": 1, "successRate": 0.0, "meanTaskSeconds": 20.0}]
    assert acme["errorClasses"] == {"check_failed": 1}


def test_trends_cover_every_customer_an_operator_sees(client: FlaskClient, store: Store, tokens: ApiTokens) -> None:
    stored(store, B, "globex/gears", S.COMPLETED, (GOOD,))
    stored(store, A, "acme/widgets", S.STOPPED)
    body = client.get(TRENDS, headers=bearer(tokens, "viewer", everything=True)).get_json()
    assert body["days"] == 30 and len(body["customers"][0]["perDay"]) == 30
    assert [(c["account"], c["executions"], c["tasksCompleted"]) for c in body["customers"]] == [
        ("acme", 1, 0), ("globex", 1, 1)]
    assert client.get(TRENDS, headers=bearer(tokens, "viewer", 303)).get_json()["customers"] == []


# -- auth, validation, the document ---------------------------------------------------------------
def test_without_credentials_history_is_401(settings: Settings, client: FlaskClient, store: Store) -> None:
    ex = stored(store, A, "acme/widgets", S.COMPLETED)
    signed = create_app(dataclasses.replace(settings, dashboard_auth="github")).test_client()
    for path in (HISTORY, f"{HISTORY}/{ex.id}", TRENDS):
        response = signed.get(path)
        assert response.status_code == 401, path
        assert "sign in" in response.get_json()["message"]
        bad = client.get(path, headers={"Authorization": "Bearer clr_abcdefgh_" + "x" * 30})
        assert bad.status_code == 401 and "not valid" in bad.get_json()["message"]


@pytest.mark.parametrize(("path", "query"), [
    (TRENDS, {"days": 0}), (TRENDS, {"days": 366}), (TRENDS, {"days": "week"}), (TRENDS, {"since": 1}),
    (HISTORY, {"status": "paused"}), (HISTORY, {"status": "sleeping"}), (HISTORY, {"since": -1}),
    (HISTORY, {"limit": 201}), (HISTORY, {"cursor": "yesterday"}), (HISTORY, {"installation": "a"}),
    (HISTORY, {"repo": "acme"}),
])
def test_bad_queries_are_422_naming_the_field(client: FlaskClient, tokens: ApiTokens, path: str,
                                              query: dict[str, Any]) -> None:
    response = client.get(path, query_string=query, headers=bearer(tokens, "viewer", A))
    assert response.status_code == 422, query
    problem = response.get_json()
    assert problem["errors"][0]["field"] == next(iter(query))
    assert problem["message"].startswith(f"{next(iter(query))}: ")


def test_the_history_endpoints_are_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert set(paths[HISTORY]["get"]["responses"]) == {"200", "401", "422"}
    assert set(paths[f"{HISTORY}/{{execution_id}}"]["get"]["responses"]) == {"200", "401", "404", "422"}
    trends = paths[TRENDS]["get"]
    [days] = [p for p in trends["parameters"] if p["name"] == "days"]
    assert (days["schema"]["minimum"], days["schema"]["maximum"]) == (1, 365)
