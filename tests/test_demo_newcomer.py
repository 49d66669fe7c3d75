"""A newcomer's path: `clarity demo --keep`, then from another shell the printed lines, exactly as printed."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis

pytestmark = pytest.mark.e2e  # `clarity demo --keep`: the whole stack

READY = "Servers keep running; press Ctrl-C to stop."


def _lines(stream: IO[str]) -> queue.Queue[str | None]:
    """The stream's lines as they come (None at its end), so a test can wait with a deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str | None], marker: str, timeout: float) -> str:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"the demo never printed {marker!r}; it printed:\n" + "".join(seen))


def _shell(script: str, env: dict[str, str], timeout: float = 30) -> str:
    """Run lines in bash, as a person pastes them; fail with what they saw unless all went well."""
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)
    assert done.returncode == 0, f"{script}\n→ exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


def _sign_in_as_chosen_user(link: str) -> httpx.Response:
    """Click the printed link, then the forge's "Authorize" button without touching the user it chose."""
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(link)
        assert "/login/oauth/authorize" in str(page.url), page.url
        assert re.search(r'<option value="ada" selected>', page.text), "ada is not the user chosen"
        form: dict[str, Any] = dict(re.findall(r'name="(client_id|redirect_uri|state|login)" value="([^"]*)"',
                                               page.text))
        form.update(login="ada", authorize="1")
        return browser.post(str(page.url).split("?")[0], data=form)


def test_what_clarity_demo_keep_prints_works_as_printed_and_ctrl_c_leaves_nothing(
        redis_url: str, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    # Another shell of the same person: the same runtime dir, none of the demo's settings.
    shell_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CLARITY_NAMESPACE", "FORGE_URL")}
    shell_env["XDG_RUNTIME_DIR"] = str(runtime)
    with open(tmp_path / "demo.stderr", "w") as stderr:
        demo = subprocess.Popen([sys.executable, "-m", "cli", "demo", "--keep"], stdout=subprocess.PIPE,
                                stderr=stderr, text=True, env={**shell_env, "REDIS_URL": redis_url})
    assert demo.stdout is not None
    lines = _lines(demo.stdout)
    try:
        out = _read_until(lines, READY, 60)
        kept = Path(re.search(r"Clarity demo in (\S+)", out).group(1))  # type: ignore[union-attr]
        worker = int(re.search(r"worker:\s+pid (\d+)", out).group(1))  # type: ignore[union-attr]
        web = re.search(r"web:\s+(http://\S+)", out).group(1)  # type: ignore[union-attr]
        forge = re.search(r"forge:\s+(http://\S+)", out).group(1)  # type: ignore[union-attr]
        namespace = re.search(r"Namespace: (\S+)", out).group(1)  # type: ignore[union-attr]
        link = re.search(r"^Dashboard: (http://\S+)$", out, re.MULTILINE).group(1)  # type: ignore[union-attr]
        assert (runtime / "clarity" / "demo.json").exists()
        tried = out.split("Try it in another shell")[1].split("\n", 1)[1].split("\n\n")[0]
        recipe = [line.strip() for line in tried.splitlines() if line.strip() and not line.strip().startswith("#")]
        token_line = next(line for line in recipe if line.startswith("TOKEN=$("))
        progress_line = next(line for line in recipe if line.startswith("curl") and line.endswith("/progress"))
        list_line = next(line for line in recipe if line.startswith("curl") and line.endswith("/executions"))
        comment_line = next(line for line in recipe if " -m forge comment " in line)

        # The one link: the forge's "Authorize" page has ada chosen; one click and the buttons are there.
        signed_in = _sign_in_as_chosen_user(link)
        assert signed_in.url == link and all(f">{b}</button>" in signed_in.text for b in ("Stop", "Resume"))

        # The token line makes a token the demo's API takes; the curl lines answer with the paused execution.
        token = _shell(f'{token_line}\nprintf %s "$TOKEN"', shell_env).strip()
        assert token.startswith("clr_")
        progress = json.loads(_shell(progress_line, {**shell_env, "TOKEN": token}))
        assert progress["status"] == "paused" and progress["tasksCompleted"] == 3, progress
        listed = json.loads(_shell(list_line, {**shell_env, "TOKEN": token}))
        assert progress["executionId"] in [e["id"] for e in listed["executions"]], listed

        # The comment line finds the demo's forge by itself; the worker acts on `/clarity run`.
        said = _shell(comment_line, shell_env)
        assert re.search(r"webhook status 202", said), said
        deadline = time.monotonic() + 30
        while progress["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.5)
            progress = json.loads(_shell(progress_line, {**shell_env, "TOKEN": token}))
        assert progress["status"] == "completed" and progress["tasksCompleted"] == 5, progress

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(timeout=30) == 0
        rest = "".join(line for line in iter(lines.get, None) if line)
        assert "Stopped the worker, the web app, the forge" in rest
    finally:
        if demo.poll() is None:  # a failed step: still stop it the clean way, so its worker goes too
            demo.terminate()
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
    assert not os.path.exists(f"/proc/{worker}"), "the demo left its worker running"
    assert _closed(web) and _closed(forge), "the demo left a server listening"
    assert not (runtime / "clarity" / "demo.json").exists(), "the demo left its state file"
    client = redis.Redis.from_url(redis_url)
    assert not [*client.scan_iter(f"{namespace}:*", count=1000), *client.scan_iter(f"rq:*{namespace}:*", count=1000)]
    shutil.rmtree(kept, ignore_errors=True)  # --keep keeps the logs for a person to read; the test needs none
