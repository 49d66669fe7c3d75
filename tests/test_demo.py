"""`clarity demo` runs end to end in under a minute and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

import devstack


def test_demo_pauses_at_its_stop_point_and_cleans_up(redis_url: str) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "clarity.cli", "demo"], capture_output=True, text=True,
                            check=False, timeout=120, env={**os.environ, "REDIS_URL": redis_url})
    elapsed = time.monotonic() - started
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
