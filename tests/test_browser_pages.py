"""The dashboard's pages in a real browser at a phone's, a tablet's and a desktop's width, and through axe-core.

Debian's chromium driven by Playwright (as tests/test_browser.py), on the real app over a real Redis with
executions of every kind stored through the store; GitHub is unreachable here (nothing on the pages needs
it). For each page at 375, 768 and 1440 px: a full-page screenshot (in test-artifacts/pages/, the path is
printed), nothing wider than the window and nothing cut off inside the main content, the page's own
stylesheet applied with the CSP enforced (no violation reported), status shown as a word in a coloured pill
and no emoji. Then axe-core (tests/fixtures/axe/install_axe.sh installs it from npm; the test runs the
installer when it is missing) finds no `serious` or `critical` violation on any page at 375 and 1440 px.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from werkzeug.serving import make_server

from app import create_app
from clarity import artifacts
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard.auth import Viewer
from tests.test_browser import ARTIFACTS, browser, sync_api  # noqa: F401 (browser: a fixture)

pytestmark = pytest.mark.browser

S, T = ExecutionStatus, TaskStatus
ACME = 7
WIDTHS = {"phone": {"width": 375, "height": 812}, "tablet": {"width": 768, "height": 1024},
          "desktop": {"width": 1440, "height": 900}}
AXE_INSTALLER = Path(__file__).parent / "fixtures" / "axe" / "install_axe.sh"
SHOTS = ARTIFACTS / "pages"

# What every page must hold to: nothing wider than the window, nothing cut off in <main> (a clipped box
# whose content is wider than itself), the stylesheet applied, statuses as words in coloured pills.
LAYOUT = """() => {
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const hidden = (el) => {  // inside a box clipped to nothing (visually hidden, for screen readers)
    for (let a = el; a && a !== document.body; a = a.parentElement) {
      const box = a.getBoundingClientRect(), style = getComputedStyle(a);
      if (box.width <= 1 && (style.clipPath !== 'none' || style.clip !== 'auto' || style.overflow === 'hidden')) return true;
    }
    return false;
  };
  const found = [];
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > width) found.push(`the page is ${document.documentElement.scrollWidth} px wide in ${width}`);
  for (const el of document.querySelectorAll('main *')) {
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (!box.width || hidden(el)) continue;
    if (box.right > width + 0.5) found.push(`${name(el)} ends at ${Math.round(box.right)} px`);
    if (['auto', 'scroll', 'hidden', 'clip'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
      found.push(`${name(el)} cuts off ${el.scrollWidth - el.clientWidth} px`);
  }
  const pills = [...document.querySelectorAll('main .status[data-status]')].map((el) => ({
    status: el.dataset.status, word: el.textContent.trim(), background: getComputedStyle(el).backgroundColor,
    colour: getComputedStyle(el).color}));
  return {found, pills, font: getComputedStyle(document.body).fontFamily,
          emoji: (document.body.innerText.match(/\\p{Extended_Pictographic}/gu) || []).join('')};
}"""
AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))}));
}"""


@pytest.fixture
def shown(settings: Settings, redis_client: redis.Redis) -> Iterator[tuple[str, dict[str, str]]]:
    """The dashboard on a free port, a team member of acme watching, with an execution in each state."""
    app = create_app(settings)
    app.extensions["clarity.viewer_provider"] = lambda: Viewer("ada", {ACME: "team_member"})
    store: Store = app.extensions["clarity.store"]
    paths = world(store, settings)
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{web.server_port}", paths
    finally:
        web.shutdown()
        web.server_close()


def execution(store: Store, repo: str, issue: int, stop_point: str | None = "2.1") -> Execution:
    return store.create(Execution(id="", installation_id=ACME, repo=repo, account="acme", issue_number=issue,
                                  is_pull_request=False, branch=f"clarity/issue-{issue}-with-a-rather-long-branch-name",
                                  base_branch="main", requester="ada", stop_point=stop_point), "ada")


def world(store: Store, settings: Settings) -> dict[str, str]:
    """Executions blocked, running, completed and queued, artifacts of three attempts, audit records."""
    store.put_installation(ACME, "acme", "active", ["acme/widgets", "acme/gears", "acme/bolts"])
    blocked = execution(store, "acme/widgets", 3)
    store.transition(blocked.id, S.INITIALIZING, "engine", "started")
    store.transition(blocked.id, S.AUTONOMOUS, "engine", "initialized", tasks_total=4)
    for task_id, title in (("1.1", "Create the package skeleton"), ("1.2", "Add a CI workflow that runs the tests"),
                           ("1.3", "Document the setup"), ("2.1", "Data layer")):
        store.put_task(blocked.id, TaskProgress(task_id, title))
    store.set_task_status(blocked.id, "1.1", T.IN_PROGRESS, attempts=1, tool="aider")
    store.set_task_status(blocked.id, "1.1", T.VERIFYING)
    store.set_task_status(blocked.id, "1.1", T.COMPLETED, duration=42.3, commit="0123456789abcdef0123",
                          check_run_id=30)
    store.set_task_status(blocked.id, "1.2", T.IN_PROGRESS, attempts=1, tool="claude")
    store.set_task_status(blocked.id, "1.2", T.ERROR_SOLVING, attempts=2)
    store.set_task_status(blocked.id, "1.2", T.FAILED, attempts=3, duration=180.0, error_class="check_failed",
                          check_run_id=31, last_error="tests/test_ci.py:1: AssertionError: no workflow")
    store.set_task_status(blocked.id, "2.1", T.SKIPPED, override_by="ada")
    store.update(blocked.id, attempts=4, error_count=3, retry_count=2, pr_number=5,
                 pr_url="http://forge.test/acme/widgets/pull/5", summary_check_id=32)
    store.log(blocked.id, "task 1.2: attempt 3 failed\ntests/test_ci.py:1: AssertionError: expected a file "
              ".github/workflows/ci.yml, got nothing at all in the working tree", "warning", "1.2")
    store.transition(blocked.id, S.BLOCKED, "engine", "task 1.2 failed after 3 attempts")
    store.audit_event(blocked, "task.override", "ada", {"task": "2.1", "outcome": "skipped"})
    for attempt in (1, 2, 3):
        folder = artifacts.execution_dir(settings.artifacts_dir, blocked.id) / "1.2" / f"attempt-{attempt}"
        folder.mkdir(parents=True)
        for name in ("prompt.md", "agent.log", "diff.patch", "checks.json"):
            artifacts.write_text(folder / name, f"{name} of attempt {attempt}\n")

    running = execution(store, "acme/gears", 4, None)
    store.transition(running.id, S.INITIALIZING, "engine", "started")
    store.transition(running.id, S.AUTONOMOUS, "engine", "initialized", tasks_total=2)
    store.put_task(running.id, TaskProgress("1", "Slow one"))
    store.set_task_status(running.id, "1", T.IN_PROGRESS, attempts=1, tool="aider")
    store.transition(running.id, S.TASK_EXECUTING, "engine", "task 1 attempt 1", current_task="1")

    done = execution(store, "acme/bolts", 5, None)
    store.transition(done.id, S.INITIALIZING, "engine", "started")
    store.transition(done.id, S.AUTONOMOUS, "engine", "initialized", tasks_total=1)
    store.put_task(done.id, TaskProgress("1", "Only task"))
    store.set_task_status(done.id, "1", T.IN_PROGRESS, attempts=1, tool="aider")
    store.set_task_status(done.id, "1", T.VERIFYING)
    store.set_task_status(done.id, "1", T.COMPLETED, duration=12.0, commit="fedcba9876543210")
    store.transition(done.id, S.COMPLETED, "engine", "all tasks done")

    waiting = execution(store, "acme/widgets", 6, None)
    store.transition(waiting.id, S.INITIALIZING, "engine", "started")
    store.ready.add(waiting.id, 5, ACME)
    return {"overview": "/", "execution": f"/executions/{blocked.id}", "running": f"/executions/{running.id}",
            "artifacts": f"/executions/{blocked.id}/artifacts", "audit": "/audit", "queue": "/queue",
            "resources": "/resources", "insights": "/insights"}


@pytest.fixture(scope="session")
def axe_script() -> str:
    """axe-core's axe.min.js, installed by tests/fixtures/axe/install_axe.sh if it is not there yet."""
    home = Path(os.environ.get("CLARITY_AXE_HOME") or Path.home() / ".cache" / "clarity-axe")
    script = home / "axe.min.js"
    if not script.is_file():
        done = subprocess.run([str(AXE_INSTALLER)], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0 or not script.is_file():
            why = f"axe-core could not be installed by {AXE_INSTALLER}: {done.stderr.strip()[-500:]}"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(why, pytrace=False)
            pytest.skip(why)
    return script.read_text()


def test_every_page_fits_a_phone_a_tablet_and_a_desktop_with_its_own_stylesheet_and_worded_statuses(
        shown: tuple[str, dict[str, str]], browser: Any) -> None:  # noqa: F811 (the fixture)
    base, paths = shown
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the pages at each width: {SHOTS}")
    problems: list[str] = []
    for viewport in WIDTHS.values():
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation', "
                             "(e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));")
        for name, path in paths.items():
            page.goto(base + path)
            page.screenshot(path=str(SHOTS / f"{name}-{viewport['width']}.png"), full_page=True)
            seen = page.evaluate(LAYOUT)
            where = f"{name} at {viewport['width']} px"
            problems += [f"{where}: {found}" for found in seen["found"]]
            problems += [f"{where}: CSP refused {refused}" for refused in page.evaluate("window.__csp")]
            if seen["emoji"]:
                problems.append(f"{where}: shows emoji {seen['emoji']!r} (status must not need an emoji font)")
            if "Times" in seen["font"] or seen["font"].strip('"') == "serif":
                problems.append(f"{where}: the browser's default font ({seen['font']}): no stylesheet")
            for pill in seen["pills"]:
                if pill["word"] != pill["status"] or pill["background"] in ("rgba(0, 0, 0, 0)", "transparent"):
                    problems.append(f"{where}: status pill {pill}")
        context.close()
    assert not problems, "\n".join(problems)


def test_status_colours_tell_the_states_apart_beside_their_words(shown: tuple[str, dict[str, str]],
                                                                browser: Any) -> None:  # noqa: F811
    base, paths = shown
    page = browser.new_page(viewport=WIDTHS["desktop"])
    page.goto(base + paths["overview"])
    colours = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#counts .status')]
        .map((el) => [el.dataset.status, getComputedStyle(el).color + ' on ' + getComputedStyle(el).backgroundColor]))""")
    assert set(colours) == {str(s) for s in ExecutionStatus}
    families = [colours[s] for s in ("queued", "task-executing", "error-solving", "paused", "completed", "blocked",
                                     "failed")]
    assert len(set(families)) == len(families), colours  # waiting, running, fixing, paused, done, stuck, failed
    page.goto(base + paths["execution"])
    row = page.locator('tr[data-task="1.2"] [data-field="task-status"] .status')
    sync_api.expect(row).to_have_text("failed")
    assert row.evaluate("(el) => getComputedStyle(el).color") == "rgb(164, 14, 38)"  # the failed red, 4.5:1 and more


def test_axe_finds_nothing_serious_or_critical_on_any_page(shown: tuple[str, dict[str, str]], browser: Any,  # noqa: F811
                                                           axe_script: str) -> None:
    base, paths = shown
    found: dict[str, Any] = {}
    for device in ("phone", "desktop"):
        context = browser.new_context(viewport=WIDTHS[device], bypass_csp=True)  # axe is injected, not served
        page = context.new_page()
        for name, path in paths.items():
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            page.evaluate(axe_script + "\n;0")
            violations = page.evaluate(AXE_RUN)
            if violations:
                found[f"{name} at {WIDTHS[device]['width']} px"] = violations
        context.close()
    assert not found, found
