"""`clarity demo` runs end to end in under a minute and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import devstack

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class DemoRun:
    """One `clarity demo` run: what it printed, how it ended, how long it took, where it announced itself."""

    result: subprocess.CompletedProcess[str]
    elapsed: float
    runtime_dir: Path


@pytest.fixture(scope="module")
def demo(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo, run once for the tests of this module (its own runtime dir: no one else's demo file)."""
    runtime = tmp_path_factory.mktemp("runtime")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cli", "demo"], capture_output=True, text=True,
                            check=False, timeout=120,
                            env={**os.environ, "REDIS_URL": redis_url, "XDG_RUNTIME_DIR": str(runtime)})
    return DemoRun(result, time.monotonic() - started, runtime)


def test_demo_pauses_at_its_stop_point_and_cleans_up(demo: DemoRun) -> None:
    result, elapsed = demo.result, demo.elapsed
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < 60, f"the demo took {elapsed:.0f}s"
    assert "autonomous → paused (stop point 1.3 reached)" in out
    assert "task 1.3 Shout mode: in-progress (attempt 2)" in out  # the planned retry happened
    for name in ("1.1 Create the greeting module", "1.2 Add unit tests for the greeting", "1.3 Shout mode"):
        assert f"success  Clarity: {name}" in out
    assert "  - [x] 1. Greeting library" in out and "    - [ ] 2.1 Add a command-line entry point" in out
    assert re.search(r"#2 Clarity: tasks for #1 \(open\): clarity/issue-1 → main", out)
    assert "clarity: 1.3 Shout mode" in out and "Dashboard: http://127.0.0.1:" in out
    # It says how tasks ran: isolated here, and loudly so where the machine cannot isolate them.
    assert re.search(r"  sandbox:   (local: bubblewrap, a cgroup per run|NONE: this machine cannot isolate)", out)
    worker_pid = int(re.search(r"worker:\s+pid (\d+)", out).group(1))  # type: ignore[union-attr]
    assert not os.path.exists(f"/proc/{worker_pid}"), "the demo left its worker running"
    assert not (demo.runtime_dir / "clarity" / "demo.json").exists(), "the demo left its state file"


def test_demo_output_has_no_terminal_colour_codes(demo: DemoRun) -> None:
    # Read in a file, a pipe or CI, werkzeug's coloured request log showed as `[35m[1mPOST /webhooks`.
    assert '"POST /webhooks HTTP/1.1" 202' in demo.result.stderr  # the request log is still there
    for stream in (demo.result.stdout, demo.result.stderr):
        assert "\x1b" not in stream, next(line for line in stream.splitlines() if "\x1b" in line)


def test_demo_prints_bot_comments_without_cutting_words(demo: DemoRun) -> None:
    comments = demo.result.stdout.split("Comments on issue #1:")[1].split("tasks_list.md on")[0]
    # The whole sentence, where the listing used to stop at 110 characters inside `clarity/issue-1`.
    assert "on branch `clarity/issue-1`, until 1.3. Progress appears as check runs and on the dashboard." \
        in comments
    assert "paused ⏸️: stop point 1.3 reached." in comments and "3 of 3 task(s) done;" in comments
    assert "<!--" not in comments  # GitHub hides HTML comments; so does the listing


def test_demo_lists_the_summary_check_run_once_with_its_latest_state(demo: DemoRun) -> None:
    checks = demo.result.stdout.split("Check runs")[1].split("Comments on issue #1:")[0]
    summary = [line for line in checks.splitlines() if "Clarity: run until 1.3" in line]
    assert len(summary) == 1, checks  # not one "neutral … Continued on a newer commit" per pushed commit
    assert "paused: 3/3 tasks done" in summary[0] and "Continued on a newer commit" not in checks


def test_the_demo_stack_asks_people_to_sign_in_through_the_forges_oauth_pages(redis_url: str,
                                                                             tmp_path: Path) -> None:
    # The demo shows what a real user sees (issue 13): no open dashboard, a sign-in through "GitHub".
    stack = devstack.start(tmp_path / "stack", redis_url, workers=0, namespace=f"demo-{uuid.uuid4().hex[:8]}",
                           sign_in=True)
    try:
        assert stack.settings.dashboard_auth == "github"
        home = httpx.get(f"{stack.web_url}/", follow_redirects=False)
        assert home.status_code == 302 and "/login" in home.headers["location"]
        login = httpx.get(f"{stack.web_url}/login", follow_redirects=False)
        assert login.status_code == 302 and login.headers["location"].startswith(stack.forge.url)
        assert "client_id=" + stack.settings.github_client_id in login.headers["location"]
    finally:
        stack.forget()
        stack.stop()
