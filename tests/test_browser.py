"""The dashboard in a real browser (Debian's chromium driven by Playwright) on the whole stack.

Skipped only where chromium or the playwright package is missing (.ci/run installs both).
Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

import devstack
from app import create_app
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import Store
from tests.e2e import REPO, make_repo, store_of, tasks_md, wait_comment

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
GEARS = "acme/gears"
TABLET = {"width": 820, "height": 1180}

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                               "(pip install -e .[test])")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it as root)",
                allow_module_level=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless chromium from the machine (never a downloaded browser build)."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def sign_in(stack: devstack.Stack, page: Any, login: str = "ada") -> None:
    """Turn sign-in on for the stack's dashboard and sign `login` in through the forge's OAuth pages.

    The stack starts with the dashboard open; its web server calls whatever app it points at, so this
    swaps in the same app with sign-in (the forge's OAuth client), then walks the browser through
    /login → the forge's "Authorize" page → /auth/callback. Roles come from repository permissions
    (a collaborator with write is a team member), so call it after the repositories exist.
    """
    client = stack.admin("GET", "/app")
    settings = dataclasses.replace(stack.settings, dashboard_auth="github", github_client_id=client["client_id"],
                                   github_client_secret=client["client_secret"])
    stack.web.app.target = create_app(settings)  # type: ignore[attr-defined]
    page.goto(f"{stack.web_url}/")
    who = page.locator("[name=login]")
    if who.evaluate("e => e.tagName") == "SELECT":
        who.select_option(login)
    else:
        who.fill(login)
    page.get_by_role("button", name=re.compile("^Authorize")).click()
    page.wait_for_url(f"{stack.web_url}/")
    sync_api.expect(page.locator("header")).to_contain_text(f"signed in as {login}")


def watch(page: Any) -> None:
    """Record every status the page applies, and mark the document so a reload would show."""
    page.evaluate("""() => {
      window.__notReloaded = true; window.__statuses = [];
      document.addEventListener('clarity:applied', (e) => {
        const m = e.detail; const s = m.type === 'snapshot' ? m.execution.status : (m.to && m.kind === 'execution.status' ? m.to : m.status);
        if (s) window.__statuses.push(s);
      });
    }""")


def test_pages_follow_executions_live_and_stop_stops_one(stack: devstack.Stack, tmp_path: Path,
                                                        browser: Any) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "first", False), ("1.2", "second", False)))
    make_repo(stack, tmp_path, tasks_md(("1", "Slow", True), ("1.1", "[slow:30] a long one", False)), name=GEARS)
    page = browser.new_page(viewport=TABLET)
    sign_in(stack, page)
    sync_api.expect(page.locator("#live-state")).to_have_text("Live", timeout=10_000)
    watch(page)

    stack.comment(REPO, 1, "/clarity run until 1.1", user="ada")
    row = page.locator("tr[data-execution]").first
    sync_api.expect(row).to_have_attribute("data-status", "paused", timeout=60_000)
    sync_api.expect(row.locator('[data-field="status-word"]')).to_have_text("paused")  # words, not colour alone
    sync_api.expect(row.locator('[data-field="progress"]')).to_have_text("1/1")
    sync_api.expect(row.locator('[data-field="success"]')).to_have_text("100%")  # 1 task done in 1 attempt
    assert page.evaluate("window.__notReloaded") is True
    seen = page.evaluate("window.__statuses")
    assert "paused" in seen and {"initializing", "autonomous", "task-executing"} & set(seen), seen
    sync_api.expect(page.locator('[data-count="paused"] .n')).to_have_text("1")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    widgets = row.get_attribute("data-execution")
    page.goto(f"{stack.web_url}/executions/{widgets}")
    root = page.locator("[data-live-page=execution]")
    sync_api.expect(page.get_by_role("button", name="Pause", exact=True)).to_be_hidden()  # paused already
    page.get_by_role("button", name="Resume", exact=True).click()  # past its stop point: runs on to the end of the list
    sync_api.expect(root).to_have_attribute("data-status", "completed", timeout=60_000)
    sync_api.expect(root.locator('[data-field="progress"]')).to_have_text("2/2")
    sync_api.expect(page.locator('tr[data-task="1.2"] [data-field="task-status"]')).to_have_text("completed")

    stack.comment(GEARS, 1, "/clarity run", user="ada")
    store = store_of(stack)
    gears = devstack.wait_for(lambda: store.executions(repo=GEARS), 20, what="the execution of acme/gears")[0]
    page.goto(f"{stack.web_url}/executions/{gears.id}")
    root = page.locator("[data-live-page=execution]")
    sync_api.expect(root).to_have_attribute("data-status", "task-executing", timeout=30_000)
    sync_api.expect(page.locator('tr[data-task="1.1"] [data-field="task-status"]')).to_have_text("in-progress")
    sync_api.expect(page.locator("#log")).to_contain_text("Task 1.1 “[slow:30] a long one”: pending → in-progress")
    follow = page.get_by_role("button", name="Follow new lines")
    sync_api.expect(follow).to_have_attribute("aria-pressed", "true")
    follow.click()  # pause the scrolling; the log still grows
    sync_api.expect(follow).to_have_attribute("aria-pressed", "false")
    stop = page.get_by_role("button", name="Stop", exact=True)
    sync_api.expect(stop).to_be_visible()
    sync_api.expect(page.get_by_role("button", name="Resume", exact=True)).to_be_hidden()
    stop.click()
    sync_api.expect(page.get_by_role("status").filter(has_text="Stop requested")).to_be_visible()
    sync_api.expect(root).to_have_attribute("data-status", "stopped", timeout=25_000)
    sync_api.expect(root.locator('[data-field="status-word"]').first).to_have_text("stopped")
    sync_api.expect(stop).to_be_hidden()
    page.screenshot(path=str(ARTIFACTS / "execution.png"), full_page=True)
    assert store.get(gears.id).status == "stopped" and "@ada" in store.get(gears.id).reason
    assert gears.id in wait_comment(stack, "Stopp")["body"]  # the issue hears of it, as for `/clarity stop`


def test_without_websockets_the_overview_polls_and_still_follows(settings: Settings, redis_client: Any,
                                                                 browser: Any) -> None:
    app = create_app(settings)
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    store: Store = app.extensions["clarity.store"]
    try:
        page = browser.new_page(viewport=TABLET)
        page.goto(f"http://127.0.0.1:{web.server_port}/?live=poll")
        sync_api.expect(page.locator("#live-state")).to_have_text("Updating every 5 s")
        watch(page)
        ex = store.create(Execution(id="", installation_id=7, repo="acme/polled", account="acme", issue_number=3,
                                    is_pull_request=False, branch="clarity/issue-3", base_branch="main",
                                    requester="ada"), "test")
        row = page.locator(f'tr[data-execution="{ex.id}"]')
        sync_api.expect(row).to_have_attribute("data-status", "queued", timeout=12_000)
        store.transition(ex.id, ExecutionStatus.INITIALIZING, "engine", "started", tasks_total=4)
        sync_api.expect(row).to_have_attribute("data-status", "initializing", timeout=12_000)
        sync_api.expect(row.locator('[data-field="progress"]')).to_have_text("0/4")
        assert page.evaluate("window.__notReloaded") is True
    finally:
        web.shutdown()
        web.server_close()
