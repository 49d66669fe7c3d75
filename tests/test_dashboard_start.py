"""Starting and steering from the dashboard: the task-list endpoint behind the stop-point pickers
(`GET /api/devteam/repos/<owner>/<repo>/tasks`), the CSRF path of session-authenticated API calls, the
overview's start form (who sees it, which repositories it offers) and the execution page's tree and forms.

GitHub is the forge (the endpoint reads tasks_list.md through the app, as the engine does); Redis is real.
The browser journey (start, pause at the stop point, move it, resume, complete) is tests/test_browser_controls.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from clarity.apitokens import ApiTokens
from clarity.models import Execution, TaskProgress
from clarity.sessions import Sessions
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard import start, tasktree
from dashboard.auth import Viewer
from tests.conftest_forge import ForgeHandle

TASKS = ("# Tasks\n- [ ] 1 Setup\n  - [x] 1.1 Create skeleton\n  - [ ] 1.2 Add CI\n    - depends: 1.1\n"
         "### 2 Data layer\n- [ ] 2.1 Add models\n  - [ ] 2.1.1 User model\n")


def tasks_url(repo: str, **query: str) -> str:
    return f"/api/devteam/repos/{repo}/tasks" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


@pytest.fixture
def world(forge: ForgeHandle) -> dict[str, int]:
    """Two customers on the forge: acme (widgets, plan, broken, bare) and globex (gears)."""
    found = {"acme": forge.create_repo("acme/widgets", {"tasks_list.md": TASKS})["installation_id"]}
    forge.create_repo("acme/plan", {".github/clarity.yml": "tasks_file: docs/plan.md\n",
                                    "docs/plan.md": "- [ ] 7 Only task\n"})
    forge.create_repo("acme/broken", {"tasks_list.md": "- [ ] 1 a\n- [ ] 1 b\n"})
    forge.create_repo("acme/bare", {"README.md": "# nothing to do\n"})
    found["globex"] = forge.create_repo("globex/gears", {"tasks_list.md": "- [ ] 1 Gear\n"})["installation_id"]
    return found


@pytest.fixture
def forge_settings(settings: Settings, forge: ForgeHandle) -> Settings:
    return dataclasses.replace(settings, app_id=forge.app_id, private_key=forge.private_key_pem,
                               github_api_url=forge.api_url)


@pytest.fixture
def client(forge_settings: Settings) -> FlaskClient:
    return create_app(forge_settings).test_client()


def bearer(store: Store, namespace: str, role: str, *installations: int) -> dict[str, str]:
    token, _ = ApiTokens(store.r, namespace).create(role, installations)
    return {"Authorization": f"Bearer {token}"}


# -- GET /api/devteam/repos/<owner>/<repo>/tasks --------------------------------------------------
def test_tasks_of_the_default_branch_come_in_document_order_with_their_place_in_the_tree(
        client: FlaskClient, store: Store, namespace: str, world: dict[str, int], forge: ForgeHandle) -> None:
    answer = client.get(tasks_url("acme/widgets"), headers=bearer(store, namespace, "viewer", world["acme"]))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert (body["repository"], body["ref"], body["file"]) == ("acme/widgets", "main", "tasks_list.md")
    assert [(t["id"], t["title"], t["done"], t["parent"], t["level"], t["isLeaf"], t["isGroup"]) for t in body["tasks"]] == [
        ("1", "Setup", False, None, 1, False, False), ("1.1", "Create skeleton", True, "1", 2, True, False),
        ("1.2", "Add CI", False, "1", 2, True, False), ("2", "Data layer", False, None, 1, False, True),
        ("2.1", "Add models", False, "2", 2, False, False), ("2.1.1", "User model", False, "2.1", 3, True, False)]
    reads = [c for c in forge.calls(surface="rest") if "/contents/" in c["path"]]
    assert any("tasks_list.md" in c["path"] for c in reads)  # read from GitHub through the app, not a cache


def test_the_list_is_the_file_the_repository_config_names_on_the_branch_asked_for(
        client: FlaskClient, store: Store, namespace: str, world: dict[str, int]) -> None:
    headers = bearer(store, namespace, "viewer", world["acme"])
    body = client.get(tasks_url("acme/plan", ref="main"), headers=headers).get_json()
    assert (body["file"], [t["id"] for t in body["tasks"]]) == ("docs/plan.md", ["7"])
    missing = client.get(tasks_url("acme/widgets", ref="clarity/issue-9"), headers=headers)
    assert (missing.status_code, missing.get_json()["message"]) == (
        404, "acme/widgets has no tasks_list.md on `clarity/issue-9`")
    bare = client.get(tasks_url("acme/bare"), headers=headers)
    assert (bare.status_code, bare.get_json()["message"]) == (404, "acme/bare has no tasks_list.md on `main`")


def test_a_list_that_cannot_be_parsed_is_422_with_the_parsers_line(
        client: FlaskClient, store: Store, namespace: str, world: dict[str, int]) -> None:
    answer = client.get(tasks_url("acme/broken"), headers=bearer(store, namespace, "viewer", world["acme"]))
    assert answer.status_code == 422
    assert answer.get_json() == {"message": "tasks_list.md line 2: task 1 appears twice (lines 1 and 2)",
                                 "errors": [{"field": "tasks_list.md",
                                             "reason": "tasks_list.md line 2: task 1 appears twice (lines 1 and 2)"}]}


@pytest.mark.parametrize(("path", "field"), [
    (tasks_url("acme/widgets", ref="main/../../x"), "ref"),
    (tasks_url("acme/widgets", ref="-delete"), "ref"),
    (tasks_url("acme/widgets", branch="main"), "branch"),
    (tasks_url("acme/wid..gets"), "repository"),
])
def test_names_that_are_not_a_repository_or_a_branch_are_422(client: FlaskClient, store: Store, namespace: str,
                                                             world: dict[str, int], path: str, field: str) -> None:
    answer = client.get(path, headers=bearer(store, namespace, "viewer", world["acme"]))
    assert answer.status_code == 422, answer.get_data(as_text=True)
    assert answer.get_json()["errors"][0]["field"] == field


def test_another_customers_repository_is_404_like_one_clarity_is_not_installed_on(
        client: FlaskClient, store: Store, namespace: str, world: dict[str, int], forge: ForgeHandle) -> None:
    headers = bearer(store, namespace, "admin", world["acme"])
    before = len(forge.calls(surface="rest"))
    theirs = client.get(tasks_url("globex/gears"), headers=headers)
    nowhere = client.get(tasks_url("acme/nowhere"), headers=headers)
    assert (theirs.status_code, theirs.get_json()["message"]) == (
        404, "no repository globex/gears that Clarity works on for you")
    assert (nowhere.status_code, nowhere.get_json()["message"]) == (
        404, "no repository acme/nowhere that Clarity works on for you")
    assert not [c for c in forge.calls(surface="rest")[before:] if "/contents/" in c["path"]]  # nothing of theirs read
    ok = client.get(tasks_url("globex/gears"), headers=bearer(store, namespace, "viewer", world["globex"]))
    assert [t["id"] for t in ok.get_json()["tasks"]] == ["1"]


def test_without_credentials_a_signed_in_deployment_answers_401(forge_settings: Settings, world: dict[str, int]) -> None:
    client = create_app(dataclasses.replace(forge_settings, dashboard_auth="github")).test_client()
    answer = client.get(tasks_url("acme/widgets"))
    assert answer.status_code == 401 and "sign in" in answer.get_json()["message"]


def test_the_endpoint_is_in_the_openapi_document_with_its_models(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"]["/api/devteam/repos/{owner}/{repo}/tasks"]["get"]
    assert set(operation["responses"]) >= {"200", "401", "404", "422", "503"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("RepositoryTasksOut")
    assert [p["name"] for p in operation["parameters"] if p["in"] == "query"] == ["ref"]
    assert {"id", "title", "done", "parent", "level", "isLeaf", "isGroup"} <= set(
        document["components"]["schemas"]["ListedTaskOut"]["properties"])


# -- a signed-in browser session calls the API with the page's CSRF token --------------------------------
def session_client(settings: Settings, roles: dict[int, str]) -> tuple[FlaskClient, str]:
    app = create_app(dataclasses.replace(settings, dashboard_auth="github"))
    client = app.test_client()
    with client.session_transaction() as session:
        session["viewer"] = {"login": "ada", "roles": {str(i): r for i, r in roles.items()}}
        session["csrf"] = "the-session-token"
        session["sid"] = Sessions(app.extensions["clarity.store"].r, settings.namespace).start("ada", 3600)  # as at sign-in
    return client, "the-session-token"


def test_a_session_calls_the_api_with_the_csrf_token_of_its_page(forge_settings: Settings,
                                                                 world: dict[str, int]) -> None:
    client, token = session_client(forge_settings, {world["acme"]: "viewer"})
    body = {"repository": "acme/widgets", "stopPoint": "1.2"}
    missing = client.post("/api/devteam/executions/initialize", json=body)
    assert missing.status_code == 400 and "missing CSRF token" in missing.get_json()["message"]
    wrong = client.post("/api/devteam/executions/initialize", json=body, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403 and "does not match" in wrong.get_json()["message"]
    passed = client.post("/api/devteam/executions/initialize", json=body, headers={"X-CSRF-Token": token})
    assert (passed.status_code, passed.get_json()["message"]) == (  # the API itself answers: a viewer may not start
        403, "initialize needs the team_member role in acme; yours is viewer")
    listed = client.get(tasks_url("acme/widgets"))  # reading needs no token
    assert listed.status_code == 200 and len(listed.get_json()["tasks"]) == 6
    assert client.get(tasks_url("globex/gears")).status_code == 404  # the session's installations only


# -- the overview's start form ----------------------------------------------------------------------
def test_the_form_offers_active_installations_where_the_viewer_may_run_and_else_what_executions_show() -> None:
    registry = [{"id": 1, "account": "acme", "status": "active", "repos": ["acme/widgets", "acme/Apps"]},
                {"id": 2, "account": "globex", "status": "active", "repos": ["globex/gears"]},
                {"id": 3, "account": "initech", "status": "suspended", "repos": ["initech/tps"]},
                {"id": 4, "account": "hooli", "status": "active", "repos": ["hooli/nucleus"]}]
    seen = [(1, "acme", "acme/removed"), (5, "umbrella", "umbrella/hive"), (6, "wayne", "wayne/cave")]
    viewer = Viewer("ada", {1: "team_member", 2: "viewer", 3: "admin", 4: "manager", 5: "team_member", 6: "viewer"})
    assert start.choices(registry, seen, viewer) == (
        start.Customer(1, "acme", ("acme/Apps", "acme/widgets")), start.Customer(4, "hooli", ("hooli/nucleus",)),
        start.Customer(5, "umbrella", ("umbrella/hive",)))
    assert start.choices(registry, seen, Viewer("anonymous", everything=True)) == ()  # the open dashboard's viewer


def overview_app(settings: Settings, store: Store, who: Viewer) -> Flask:
    app = create_app(settings)
    app.extensions["clarity.viewer_provider"] = lambda: who
    store.put_installation(1, "acme", "active", ["acme/widgets"])
    store.put_installation(2, "globex", "active", ["globex/gears"])
    return app


def test_the_overview_shows_the_start_form_only_to_who_may_start(settings: Settings, store: Store) -> None:
    member = overview_app(settings, store, Viewer("ada", {1: "team_member", 2: "viewer"})).test_client()
    page = member.get("/").get_data(as_text=True)
    assert "Initialize customer execution" in page and 'data-api="/api/devteam/executions/initialize"' in page
    assert '<option value="acme/widgets">' in page and "globex/gears" not in page
    for tool in ("aider", "claude", "command", "ollama"):
        assert f'<option value="{tool}">' in page
    viewer = overview_app(settings, store, Viewer("bob", {1: "viewer", 2: "viewer"})).test_client()
    assert "Initialize customer execution" not in viewer.get("/").get_data(as_text=True)


# -- the execution page: tree, links, stop point and override ----------------------------------------------
def test_the_tree_puts_each_task_under_its_parents_and_counts_what_is_done_below() -> None:
    table = {"1.1": TaskProgress("1.1", status=TaskStatus.COMPLETED), "1.2": TaskProgress("1.2"),
             "2.3.1": TaskProgress("2.3.1", status=TaskStatus.FAILED), "3": TaskProgress("3")}
    rows = tasktree.rows(table)
    assert [(r.task_id, r.level, r.progress is None, r.done, r.total) for r in rows] == [
        ("1", 1, True, 1, 2), ("1.1", 2, False, 0, 0), ("1.2", 2, False, 0, 0),
        ("2", 1, True, 0, 1), ("2.3", 2, True, 0, 1), ("2.3.1", 3, False, 0, 0), ("3", 1, False, 0, 0)]
    assert tasktree.ancestors("2.3.1.4") == ["2", "2.3", "2.3.1"] and tasktree.ancestors("7") == []


def blocked_execution(store: Store) -> Execution:
    ex = store.create(Execution(id="", installation_id=1, repo="acme/widgets", account="acme", issue_number=4,
                                is_pull_request=False, branch="clarity/issue-4", base_branch="main", requester="ada",
                                status=ExecutionStatus.BLOCKED, stop_point="2.1",
                                pr_url="http://forge.test/acme/widgets/pull/5", summary_check_id=31), "test")
    for task_id, steps, fields in (("1.1", (TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.COMPLETED),
                                    {"check_run_id": 29}),
                                   ("2.1", (TaskStatus.IN_PROGRESS, TaskStatus.FAILED), {"check_run_id": 30})):
        store.put_task(ex.id, TaskProgress(task_id, f"task {task_id}"))
        for status in steps:
            store.set_task_status(ex.id, task_id, status, **fields)
    return ex


def page_of(settings: Settings, who: Viewer, ex: Execution) -> str:
    app = create_app(dataclasses.replace(settings, github_web_url="http://forge.test"))
    app.extensions["clarity.viewer_provider"] = lambda: who
    return str(app.test_client().get(f"/executions/{ex.id}").get_data(as_text=True))


def test_the_execution_page_shows_the_tree_the_links_and_for_team_members_the_forms(settings: Settings,
                                                                                  store: Store) -> None:
    ex = blocked_execution(store)
    page = page_of(settings, Viewer("ada", {1: "team_member"}), ex)
    assert 'role="treegrid"' in page
    assert '<tr data-task="1" data-group aria-level="1">' in page and '<tr data-task="1.1" aria-level="2">' in page
    assert '<tr data-task="2" data-group aria-level="1">' in page
    assert ('<a href="http://forge.test/acme/widgets/runs/30" class="check-run">check run'
            '<span class="visually-hidden"> of task 2.1</span></a>') in page
    assert '<a href="http://forge.test/acme/widgets/runs/31">Summary check run</a>' in page
    assert '<a href="http://forge.test/acme/widgets/pull/5/checks">Check runs of the pull request</a>' in page
    assert f'data-api="/api/devteam/executions/{ex.id}/set-stop-point"' in page
    assert '<option value="2.1" data-level="2" selected>' in page  # the current stop point is chosen
    assert f'data-api="/api/devteam/executions/{ex.id}/manual-override"' in page
    assert '<select id="override-task" name="taskId" required><option value="2.1">2.1</option></select>' in page
    assert 'id="steer-problem" class="problem" role="alert"' in page

    looker = page_of(settings, Viewer("bob", {1: "viewer"}), ex)
    assert '<tr data-task="2.1" aria-level="2">' in looker and "runs/31" in looker  # the tree and links for all
    assert "set-stop-point" not in looker and "manual-override" not in looker and 'id="steer"' not in looker
