"""Starting and steering an execution from the dashboard in a real browser (Debian's chromium, Playwright),
on the whole stack: the overview's start form (repository and stop-point pickers, the REST API called
with fetch()), the pause at that stop point followed live, then on the execution page a further stop point
from the task list and the Resume button, to the end.

Skipped where chromium or playwright is missing (as tests/test_browser.py). Screenshots in test-artifacts/:
start.png (the form, filled in) and start-completed.png (the execution page at the end).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

import devstack
from app import create_app
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard.auth import Viewer
from tests.conftest import WEBHOOK_FIXTURES
from tests.e2e import REPO, make_repo, store_of, tasks_md
from tests.test_browser import ARTIFACTS, TABLET, browser, sign_in, sync_api, watch  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

expect = sync_api.expect
BARE = "acme/bare"


def install(stack: devstack.Stack, account: str, *repos: str) -> int:
    """GitHub's `installation created` webhook for an account's installation, through the forge, as when the
    app is installed: the worker records the customer and its repositories (the start form lists those)."""
    installation = next(i for i in stack.admin("GET", "/state")["installations"] if i["account"] == account)
    payload = json.loads((WEBHOOK_FIXTURES / "installation.created.payload.json").read_text())
    payload["installation"]["id"] = installation["id"]
    payload["installation"]["account"]["login"] = account
    payload["repositories"] = [{"id": n, "node_id": f"R_{n}", "name": r.split("/")[1], "full_name": r, "private": False}
                               for n, r in enumerate(repos, 1)]
    stack.admin("POST", "/deliver", json={"event": "installation", "payload": payload})
    store = store_of(stack)
    devstack.wait_for(lambda: store.installation(installation["id"]), 20, what=f"the installation of {account}")
    return int(installation["id"])


def test_start_from_the_overview_pause_at_the_stop_point_then_move_it_and_resume_to_the_end(
        stack: devstack.Stack, tmp_path: Path, browser: Any) -> None:  # noqa: F811 (the fixture)
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "[slow:2] first", False),
                                        ("1.2", "second", False), ("1.3", "third", False)))
    stack.create_repo(BARE, _folder(tmp_path / "bare", {"README.md": "# no task list here\n"}))
    install(stack, "acme", REPO, BARE)
    page = browser.new_page(viewport=TABLET)
    sign_in(stack, page)

    repository, stop = page.get_by_label("Repository"), page.get_by_label("Stop after task")
    repository.select_option(BARE)  # the API's refusal is said in the form's alert region
    expect(page.get_by_role("alert")).to_have_text(f"{BARE} has no tasks_list.md on `main`")
    expect(stop).to_be_disabled()
    repository.select_option(REPO)
    expect(stop).to_be_enabled()
    expect(page.get_by_role("alert")).to_be_hidden()
    assert stop.locator("option").all_inner_texts() == [
        "End of the list", "1 Setup", "\u00a0\u00a01.1 [slow:2] first", "\u00a0\u00a01.2 second", "\u00a0\u00a01.3 third"]
    stop.select_option("1.1")
    page.get_by_label("Priority").fill("7")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "start.png"), full_page=True)  # the form, filled in
    page.get_by_role("button", name="Start execution").click()

    page.wait_for_url(re.compile(rf"{re.escape(stack.web_url)}/executions/[A-Za-z0-9_-]+$"))
    watch(page)
    root = page.locator("[data-live-page=execution]")
    expect(root).to_have_attribute("data-status", "paused", timeout=30_000)
    expect(root.locator('[data-field="reason"]')).to_have_text("stop point 1.1 reached")
    expect(page.locator('tr[data-task="1.1"] [data-field="task-status"]')).to_have_text("completed")
    assert page.evaluate("window.__notReloaded") is True and "paused" in page.evaluate("window.__statuses")
    execution_id = root.get_attribute("data-execution")
    assert execution_id
    record = store_of(stack).get(execution_id)
    assert (record.stop_point, record.priority, record.requester, record.tasks_completed) == ("1.1", 7, "ada", 1)
    parent = page.locator('tr[data-task="1"][data-group]')  # the tree: 1.1 under its parent, whose title the list gives
    expect(parent.locator('[data-field="title"]')).to_have_text("Setup")
    expect(page.locator('tr[data-task="1.1"]')).to_have_attribute("aria-level", "2")

    picker = page.get_by_label("Stop after task")
    expect(picker.locator('option[value="1.3"]')).to_have_count(1)  # the whole list of the branch, not only the table
    picker.select_option("1.3")
    page.get_by_role("button", name="Set stop point").click()
    expect(page.get_by_role("status").filter(has_text="now stops after task 1.3")).to_be_visible()
    expect(root.locator('[data-field="stop-point"]')).to_have_text("1.3")
    assert store_of(stack).get(execution_id).stop_point == "1.3"

    page.get_by_role("button", name="Resume", exact=True).click()  # a form: the page comes back with a notice
    page.wait_for_url(re.compile(r"\?requested=resume&at=\d+-\d+$"))
    watch(page)
    expect(root).to_have_attribute("data-status", "completed", timeout=30_000)
    expect(root.locator('[data-field="progress"]')).to_have_text("3/3")
    for task_id in ("1.2", "1.3"):  # rows the live feed added, in the tree under 1
        row = page.locator(f'tr[data-task="{task_id}"]')
        expect(row.locator('[data-field="task-status"]')).to_have_text("completed")
        expect(row).to_have_attribute("aria-level", "2")
    expect(parent.locator('[data-field="task-status"]')).to_have_text("3/3 done")
    assert "completed" in page.evaluate("window.__statuses")
    expect(page.get_by_role("link", name="Pull request", exact=True)).to_be_visible()
    expect(page.locator("#stop-point-form")).to_be_hidden()  # nothing left to steer
    page.screenshot(path=str(ARTIFACTS / "start-completed.png"), full_page=True)
    assert store_of(stack).get(execution_id).status == "completed"


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_the_execution_pages_forms_follow_the_tasks_and_say_what_the_api_refused(
        settings: Settings, redis_client: Any, browser: Any) -> None:  # noqa: F811 (the fixture)
    # No GitHub answers here (the settings point at a closed port): every call the API makes fails, which is
    # what the page has to say. A team member looks at a blocked execution whose task 2.1 failed.
    app = create_app(settings)
    app.extensions["clarity.viewer_provider"] = lambda: Viewer("ada", {7: "team_member"})
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    store: Store = app.extensions["clarity.store"]
    ex = store.create(Execution(id="", installation_id=7, repo="acme/widgets", account="acme", issue_number=3,
                                is_pull_request=False, branch="clarity/issue-3", base_branch="main",
                                requester="ada", stop_point="2.1"), "test")
    store.transition(ex.id, ExecutionStatus.INITIALIZING, "engine", "started")
    store.transition(ex.id, ExecutionStatus.AUTONOMOUS, "engine", "initialized")
    for task_id in ("1.1", "2.1", "2.2"):
        store.put_task(ex.id, TaskProgress(task_id, f"task {task_id}"))
    for status in (TaskStatus.IN_PROGRESS, TaskStatus.FAILED):
        store.set_task_status(ex.id, "2.1", status)
    store.transition(ex.id, ExecutionStatus.BLOCKED, "engine", "task 2.1 failed")
    try:
        page = browser.new_page(viewport=TABLET)
        page.goto(f"http://127.0.0.1:{web.server_port}/executions/{ex.id}")
        expect(page.locator("#live-state")).to_have_text("Live", timeout=10_000)
        override = page.locator("#override-form")
        expect(override).to_be_visible()
        expect(override.get_by_label("Task")).to_have_value("2.1")
        store.set_task_status(ex.id, "2.2", TaskStatus.SKIPPED)  # the live feed offers it too
        expect(override.locator('option[value="2.2"]')).to_have_count(1)

        override.get_by_label("Skip it").check()
        override.get_by_role("button", name="Override").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("GitHub could not be reached, try again later")
        page.get_by_label("Stop after task").select_option("1.1")
        page.get_by_role("button", name="Set stop point").click()
        expect(alert).to_contain_text("GitHub could not be reached")
        assert store.get(ex.id).stop_point == "2.1" and store.task(ex.id, "2.1").status is TaskStatus.FAILED

        page.locator('tr[data-task="1"]').focus()  # the treegrid: arrows move between rows
        page.keyboard.press("ArrowDown")
        expect(page.locator('tr[data-task="1.1"]')).to_be_focused()
        page.keyboard.press("End")
        expect(page.locator('tr[data-task="2.2"]')).to_be_focused()
        store.transition(ex.id, ExecutionStatus.STOPPED, "ada", "stopped by @ada")
        expect(override).to_be_hidden()
        expect(page.locator("#stop-point-form")).to_be_hidden()
    finally:
        web.shutdown()
        web.server_close()
