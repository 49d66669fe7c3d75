"""`clarity demo`: a sample repository driven by a signed `/clarity run until 1.3` comment, end to end."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from devstack import Stack, start, wait_for
from devstack.demo_recipes import Running, recipes
from devstack.demo_report import report
from forge import locator

REPO = "acme/greeting"
SAMPLE = Path(__file__).resolve().parents[1] / "clarity" / "demo" / "sample"
FINAL = {"paused", "completed", "blocked", "failed", "stopped"}


def _say(text: str = "") -> None:
    print(text, flush=True)


def _describe(event: dict[str, Any]) -> str | None:
    kind = event.get("kind")
    if kind == "execution.status":
        return f"  execution {event['execution']}: {event['from']} → {event['to']}" + (
            f" ({event['reason']})" if event.get("reason") else "")
    if kind == "task.status":
        return f"    task {event['task']} {event.get('title', '')}: {event['to']}" + (
            f" (attempt {event['attempts']})" if event.get("attempts") else "")
    if kind == "log" and "failed" in event.get("message", ""):
        first = event["message"].splitlines()
        return "    ! " + " / ".join(line.strip() for line in first[:3] if line.strip())
    return None


def follow(stack: Stack, timeout: float) -> dict[str, Any] | None:
    """Print live events until an execution settles; return its final status event."""
    pubsub = redis.Redis.from_url(stack.redis.url, decode_responses=True).pubsub()
    pubsub.subscribe(f"{stack.settings.namespace}:events")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if not message:
                continue
            event = json.loads(message["data"])
            line = _describe(event)
            if line:
                _say(line)
            if event.get("kind") == "execution.status" and event.get("to") in FINAL:
                return event
    finally:
        pubsub.close()
    return None


def _await_final_comment(stack: Stack, final: dict[str, Any]) -> None:
    """The status event comes first; the worker posts its closing comment a moment later."""
    marker = f"@ada execution [`{final['execution']}`]"

    def posted() -> bool:
        return any(marker in c["body"] and c["author"] != "ada" for c in stack.admin("GET", "/state")["comments"])

    try:
        wait_for(posted, 10, interval=0.2, what="the closing comment")
    except TimeoutError:
        _say("  (the closing comment did not arrive within 10 s)")


def _sandbox_words(sandbox: str) -> str:
    """How the demo's agents and checks run, in a line."""
    if sandbox == "local":
        return "local: bubblewrap, a cgroup per run, as nobody, network off (see README Isolation)"
    if sandbox == "none":
        return "NONE: this machine cannot isolate tasks, so they run unsandboxed (see README Isolation)"
    return sandbox


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_stop_cleanly() -> Iterator[None]:
    """TERM (`kill`, a supervisor, a test) stops the demo as Ctrl-C does, through its `finally`; and INT
    does even when the demo was started with INT ignored (a script's `clarity demo --keep &`)."""
    if threading.current_thread() is not threading.main_thread():  # only there may signals be caught
        yield
        return
    saved = {number: signal.signal(number, _interrupt) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def _settle(stack: Stack, until: str, timeout: float) -> dict[str, Any] | None:
    """Comment `/clarity run until X` as ada and print the execution live until it settles."""
    body = f"/clarity run until {until}"
    delivery = stack.comment(REPO, 1, body, user="ada")
    _say(f"\n@ada commented on {REPO}#1: {body!r} → webhook {delivery.get('status_code')}\n")
    final = follow(stack, timeout)
    if final:
        _await_final_comment(stack, final)
    report(_say, stack.admin("GET", "/state"), REPO, stack.forge.url,
           str(stack.forge.config.repos_dir / "acme" / "greeting.git"))
    return final


def _announce(path: Path, stack: Stack) -> None:
    """Tell `python -m forge` (in any shell of this user) where this demo's forge is, until the demo ends."""
    try:
        locator.announce(path, {"forge": stack.forge.url, "web": stack.web_url,
                                "namespace": stack.settings.namespace, "repo": REPO})
    except OSError as err:
        _say(f"  (could not write {path}: {err}; give python -m forge --forge {stack.forge.url})")


def _seed(stack: Stack, base: Path) -> int:
    """The sample repository with ada as a collaborator and issue #1; returns the installation id."""
    # ada first: the forge's "Authorize" page offers its oldest user first, so signing in is one click
    stack.admin("POST", "/users", json={"login": "ada"})
    source = base / "sample"
    shutil.copytree(SAMPLE, source)
    installation = int(stack.create_repo(REPO, source)["installation_id"])
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
    stack.admin("POST", f"/repos/{REPO}/issues", json={"title": "Build the greeting tool", "user": "ada",
                                                      "body": "Work through tasks_list.md, please."})
    return installation


def _invite(stack: Stack, installation: int, execution: str) -> None:
    """What to do with the running demo: the one link to click, then commands to paste."""
    running = Running(web_url=stack.web_url, forge_url=stack.forge.url, namespace=stack.settings.namespace,
                      redis_url=stack.redis.url, repo=REPO, installation=installation, execution=execution)
    _say(f"\nDashboard: {stack.web_url}/executions/{execution}")
    _say("  One click: it opens the forge's \"Authorize\" page (the stand-in for GitHub's sign-in) with ada,")
    _say("  who may write to the repository, chosen; Authorize, and the page has Stop, Pause, Resume, Retry")
    _say(f"  and the stop-point picker ({stack.web_url}/ has the start form).")
    _say(f"Forge:     {stack.forge.url}/{REPO}/issues/1 (the issue; python -m forge finds this forge by itself)")
    _say(f"Namespace: {running.namespace} (its Redis keys, queues and API tokens; all removed at exit)")
    _say("\nTry it in another shell (the lines work as printed):")
    for line in recipes(running):
        _say(f"  {line}")


def main(until: str = "1.3", keep: bool = False, timeout: float = 55.0) -> int:
    """Run the demo; return 0 when the execution paused at the stop point (130 when interrupted)."""
    with _signals_stop_cleanly():
        return _run(until, keep, timeout)


def _run(until: str, keep: bool, timeout: float) -> int:
    started = time.monotonic()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="clarity-demo-"))
    _say(f"Clarity demo in {base}")
    agent = f"{sys.executable} -m clarity.demo.agent {{prompt_file}}"
    # A namespace of its own: the demo may share the machine's Redis and must not meet old runs there.
    namespace = f"clarity-demo-{base.name.rsplit('-', 1)[-1]}"
    announced = locator.state_path()
    stack: Stack | None = None
    final = None
    try:
        # The dashboard asks for sign-in, as in production: the forge's OAuth pages stand in for GitHub's.
        stack = start(base, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), agent_command=agent,
                      namespace=namespace, sign_in=True)
        _announce(announced, stack)
        _say(f"  Redis:     {stack.redis.source}")
        _say(f"  forge:     {stack.forge.url} (local GitHub stand-in)")
        _say(f"  web:       {stack.web_url} (webhooks + dashboard)")
        _say(f"  worker:    pid {stack.workers[0].pid} (rq)")
        _say(f"  sandbox:   {_sandbox_words(stack.settings.sandbox)}")
        _say(f"  namespace: {namespace} (Redis keys and queues of this demo)")
        installation = _seed(stack, base)
        final = _settle(stack, until, timeout)
        if final is None:
            _say(f"\nDone in {time.monotonic() - started:.1f}s.")
            _say("The execution did not settle in time; see the worker log in " + str(base))
            return 1
        if not keep:
            _say(f"\nDashboard: {stack.web_url}/executions/{final['execution']} (`clarity demo --keep` keeps "
                 "the servers up: sign in there, comment, call the API)")
            _say(f"Done in {time.monotonic() - started:.1f}s.")
            return 0 if final.get("to") == "paused" else 1
        _invite(stack, installation, final["execution"])
        _say(f"\nDone in {time.monotonic() - started:.1f}s. Servers keep running; press Ctrl-C to stop.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        if not keep or final is None:
            _say("Interrupted.")
            return 130
        return 0 if final.get("to") == "paused" else 1
    finally:
        locator.withdraw(announced)
        if stack is not None:
            stack.stop(forget=True)
            _say("Stopped the worker, the web app, the forge" + (" and Redis." if stack.redis.process else ".")
                 + (f" Their logs stay in {base}." if keep else ""))
        if final is not None and not keep:
            shutil.rmtree(base, ignore_errors=True)
