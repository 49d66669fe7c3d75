"""The Queue and Resources pages in a real browser (Debian's chromium driven by Playwright) on the whole stack.

One steps worker is busy with a long task, so the other executions wait in the ready set; a manager
re-prioritises one on the Queue page and the rows reorder; a change made elsewhere (the REST API)
reorders them again without a reload; the Resources page shows the running execution's processes
and keeps its numbers current. Skipped where chromium or playwright is missing, as tests/test_browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import devstack
from clarity.status import ExecutionStatus
from tests.e2e import REPO, make_repo, store_of, tasks_md
from tests.test_api_e2e import call, token
from tests.test_browser import ARTIFACTS, TABLET, browser, sign_in, sync_api  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.browser

REPOS = (REPO, "acme/gears", "acme/bolts", "acme/nuts")
WAITING = "#queue section[aria-labelledby=for-worker] tbody tr"


def waiting_ids(page: Any) -> list[str]:
    ids: list[str] = page.locator(WAITING).evaluate_all("rows => rows.map(r => r.dataset.key)")
    return ids


def test_a_manager_reorders_the_queue_and_the_resources_page_follows_live(stack: devstack.Stack, tmp_path: Path,
                                                                          browser: Any) -> None:  # noqa: F811
    for name in REPOS:  # ada administers them: manager and more
        make_repo(stack, tmp_path, tasks_md(("1", "Slow", True), ("1.1", "[slow:120] a long one", False)),
                  name=name, collaborators={"ada": "admin"})
    page = browser.new_page(viewport=TABLET)
    sign_in(stack, page)
    store = store_of(stack)
    stack.comment(REPOS[0], 1, "/clarity run", user="ada")
    running = devstack.wait_for(lambda: [e for e in store.executions()
                                         if e.status is ExecutionStatus.TASK_EXECUTING], 30,
                                what="the first execution to take the worker")[0]
    for name in REPOS[1:]:
        stack.comment(name, 1, "/clarity run", user="ada")

    page.goto(f"{stack.web_url}/queue")
    sync_api.expect(page.get_by_role("link", name="Queue")).to_have_attribute("aria-current", "page")
    sync_api.expect(page.locator(WAITING)).to_have_count(3, timeout=30_000)  # appear without a reload
    before = waiting_ids(page)
    assert running.id not in before
    last = before[-1]
    sync_api.expect(page.locator(f"{WAITING} [data-field=position]")).to_have_text(["1", "2", "3"])

    page.get_by_label(re.compile(f"^Priority of {last}")).fill("9")
    page.get_by_role("button", name=f"Set priority of {last}").click()
    sync_api.expect(page.locator("#queue-notice")).to_have_text(re.compile(f"{last} .* now has priority 9"))
    sync_api.expect(page.locator("#queue-notice")).to_be_focused()
    sync_api.expect(page.locator(WAITING).first).to_have_attribute("data-key", last)
    assert waiting_ids(page) == [last, *before[:-1]]
    assert store.get(last).priority == 9
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

    # Someone else re-prioritises (a script, through the REST API): the page follows without a reload.
    page.evaluate("() => { window.__notReloaded = true; }")
    moved = before[-2]
    answer = call(stack, "POST", "/api/devteam/resources/prioritize", token(stack, "manager"),
                  {"executionId": moved, "priority": 10})
    assert answer.status_code == 200, answer.text
    sync_api.expect(page.locator(WAITING).first).to_have_attribute("data-key", moved, timeout=10_000)
    assert waiting_ids(page) == [moved, last, before[0]]
    assert page.evaluate("window.__notReloaded") is True

    page.get_by_role("link", name="Resources").click()
    row = page.locator(f'tr[data-execution="{running.id}"]')
    sync_api.expect(row).to_be_visible(timeout=10_000)
    sync_api.expect(row.locator("[data-field=processes]")).not_to_have_text("0")
    sync_api.expect(row.locator("[data-field=memory]")).to_have_text(re.compile(r"^[0-9]+\.[0-9]$"))
    assert float(row.locator("[data-field=memory]").inner_text()) > 0
    sync_api.expect(page.locator("[data-worker] [data-field=running]")).to_contain_text(running.id)
    sync_api.expect(page.locator("[data-field=host-cpu]")).to_have_text(re.compile(r"^[0-9]+\.[0-9] %$"))
    page.evaluate("() => { window.__notReloaded = true; }")
    first = page.locator("[data-field=sampled]").inner_text()
    sync_api.expect(page.locator("[data-field=sampled]")).not_to_have_text(first, timeout=3_000)
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(ARTIFACTS / "resources.png"), full_page=True)
