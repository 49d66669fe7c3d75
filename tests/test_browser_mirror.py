"""The live execution page is a faithful mirror: after every control it shows exactly what a reload shows.

The whole stack (forge, web, a real worker, the scripted agent) and Debian's chromium (as tests/test_browser.py).
One execution of a task list whose 1.1 fails once then passes (a retry) and whose 1.2 always fails: the
run blocks; `/clarity override 1.2 done` settles 1.2 and resumes it to its stop point (paused); the stop
point moves to 2.1 (tasks 1.3 and 2.1 come into scope); the Resume button runs them to the end. After the
run and after each control, a second tab loads the page afresh and the watched page, never reloaded, must
become identical to it: every attribute and every text of the execution's part of the page (header,
counters, links, notice, controls, task tree with its cells, log), with nothing normalised.
"""

from __future__ import annotations

import difflib
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import devstack
from tests.e2e import REPO, make_repo, store_of, tasks_md
from tests.test_browser import browser, sign_in, sync_api, watch  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.browser

expect = sync_api.expect
DESKTOP = {"width": 1440, "height": 1000}
SETTLE = 15.0  # seconds the watched page has to catch up with a fresh one
# The execution's part of the page as markup, one tag a line (for a readable diff).
MARKUP = """() => document.querySelector('[data-live-page]').outerHTML.replace(/></g, '>\\n<')"""


def same_as_a_reload(page: Any, when: str) -> str:
    """Open the page afresh beside `page` and wait until both show the same; return that markup."""
    fresh = page.context.new_page()
    try:
        fresh.goto(page.url)
        expect(fresh.locator("#live-state")).to_have_text("Live", timeout=10_000)
        deadline = time.monotonic() + SETTLE
        while True:
            watched, reloaded = page.evaluate(MARKUP), fresh.evaluate(MARKUP)
            if watched == reloaded:
                return str(watched)
            if time.monotonic() > deadline:
                diff = "\n".join(difflib.unified_diff(reloaded.splitlines(), watched.splitlines(), "reload", "live",
                                                      lineterm="", n=2))
                raise AssertionError(f"{when}: the live page differs from a reload:\n{diff}")
            time.sleep(0.25)
    finally:
        fresh.close()


def test_the_live_execution_page_matches_a_reload_after_retries_an_override_a_stop_point_and_a_resume(
        stack: devstack.Stack, tmp_path: Path, browser: Any) -> None:  # noqa: F811 (the fixture)
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "[flaky] first", False),
                                        ("1.2", "[broken] second", False), ("1.3", "third", False),
                                        ("2", "Later", True), ("2.1", "fourth", False)))
    page = browser.new_context(viewport=DESKTOP).new_page()
    sign_in(stack, page)
    stack.comment(REPO, 1, "/clarity run until 1.2", user="ada")
    store = store_of(stack)
    ex = devstack.wait_for(lambda: store.executions(repo=REPO), 20, what="the execution")[0]
    page.goto(f"{stack.web_url}/executions/{ex.id}")
    expect(page.locator("#live-state")).to_have_text("Live", timeout=10_000)
    watch(page)
    root = page.locator("[data-live-page=execution]")

    # The run: 1.1 passes at its second attempt, 1.2 fails every one of its attempts and blocks the execution.
    expect(root).to_have_attribute("data-status", "blocked", timeout=60_000)
    shown = same_as_a_reload(page, "blocked after the retries")
    row = page.locator('tr[data-task="1.2"]')
    expect(row.locator('[data-field="failure"]')).not_to_be_empty()  # the failure class, as it arrived
    expect(row.locator('[data-field="tool"]')).not_to_be_empty()
    expect(row.locator('[data-field="check-run"] a')).to_have_count(1)
    expect(page.locator('tr[data-task="1.1"] [data-field="commit"] code')).to_have_count(1)
    expect(page.locator('tr[data-task="1.1"] [data-field="attempts"]')).to_have_text("2")
    record = store.get(ex.id)
    facts = page.locator(".facts")
    expect(facts.locator('[data-field="attempts"]')).to_have_text(str(record.attempts))  # 2 + those of 1.2
    expect(facts.locator('[data-field="errors"]')).to_have_text(str(record.error_count))
    assert record.attempts >= 4 and record.error_count >= 2
    assert 'data-kind="execution.status"' in shown and "Execution task-executing → error-solving" in shown  # words
    assert re.search(r'<time datetime="[0-9T:+-]+">\d\d:\d\d:\d\d</time>', shown)  # each line has its time

    # The override (a comment): 1.2 is ticked without the agent and the execution runs on to its stop point.
    stack.comment(REPO, 1, "/clarity override 1.2 done", user="ada")
    expect(root).to_have_attribute("data-status", "paused", timeout=60_000)
    same_as_a_reload(page, "paused after the override")
    expect(page.locator('tr[data-task="1.2"] [data-field="override"]')).to_have_text("by @ada")

    # The stop point moves (a comment) to 2.1: more tasks in scope.
    stack.comment(REPO, 1, "/clarity stop-point 2.1", user="ada")
    expect(root.locator('[data-field="stop-point"]')).to_have_text("2.1", timeout=20_000)
    same_as_a_reload(page, "after the stop point moved")
    assert page.evaluate("window.__notReloaded") is True  # all of it live, no reload so far

    # Resume (the button): 1.3 and 2.1 enter the table and run; the "Resume requested" notice ends with them.
    page.get_by_role("button", name="Resume", exact=True).click()
    page.wait_for_url(re.compile(r"\?requested=resume&at=\d+-\d+$"))
    watch(page)
    expect(root).to_have_attribute("data-status", re.compile("^(completed|paused)$"), timeout=60_000)
    shown = same_as_a_reload(page, "after the resume")
    expect(page.locator('[data-field="requested"]')).to_be_empty()
    for task_id in ("1.3", "2.1"):
        expect(page.locator(f'tr[data-task="{task_id}"] [data-field="task-status"]')).to_have_text("completed")
    expect(page.locator('tr[data-task="2"][data-group] [data-field="title"]')).to_have_text("Later")
    assert page.evaluate("window.__notReloaded") is True

    # Without any script (a reader, a crawler, the first paint) the groups have their titles too.
    html = httpx.get(page.url, cookies={c["name"]: c["value"] for c in page.context.cookies()}, timeout=10).text
    assert re.search(r'<tr data-task="2" data-group[^>]*>.*?data-field="title">Later</td>', html)
    assert re.search(r'<tr data-task="1" data-group[^>]*>.*?data-field="title">Setup</td>', html)
