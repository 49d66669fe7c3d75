"""`clarity demo`: a sample repository driven by a signed `/clarity run until 1.3` comment, end to end."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from devstack import Stack, start, wait_for

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


def _git_show(stack: Stack, ref: str, path: str) -> str:
    bare = stack.forge.config.repos_dir / REPO.split("/")[0] / f"{REPO.split('/')[1]}.git"
    result = subprocess.run(["git", f"--git-dir={bare}", "show", f"{ref}:{path}"], capture_output=True,
                            text=True, check=False)
    return result.stdout if result.returncode == 0 else f"({path} not found on {ref})"


def report(stack: Stack) -> None:
    """Print the PR, the check runs, the comments, the ticked list and the branch's commits."""
    state = stack.admin("GET", "/state")
    _say("\nPull request:")
    for issue in state["issues"]:
        if issue["repo"] == REPO and issue.get("pull"):
            pull = issue["pull"]
            _say(f"  #{issue['number']} {issue['title']} ({issue['state']}): {pull['head_ref']} → {pull['base_ref']}")
            _say(f"  {stack.forge.url}/{REPO}/pull/{issue['number']}")
    _say("\nCheck runs:")
    for run in state["check_runs"]:
        if run["repo"] == REPO:
            summary = f"  ({run['title']})" if run["name"].startswith("Clarity: run ") else ""
            _say(f"  {run['conclusion'] or run['status']:>9}  {run['name']}{summary}")
    _say("\nComments on issue #1:")
    for comment in state["comments"]:
        if comment["repo"] == REPO and comment["issue_number"] == 1:
            _say(f"  @{comment['author']}: {comment['body'].strip().splitlines()[0][:110]}")
    _say("\ntasks_list.md on clarity/issue-1:")
    _say("  " + _git_show(stack, "clarity/issue-1", "tasks_list.md").rstrip().replace("\n", "\n  "))
    _say("\ngit log clarity/issue-1:")
    bare = stack.forge.config.repos_dir / "acme" / "greeting.git"
    log = subprocess.run(["git", f"--git-dir={bare}", "log", "--oneline", "clarity/issue-1"],
                         capture_output=True, text=True, check=False).stdout
    _say("  " + log.strip().replace("\n", "\n  "))


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


def main(until: str = "1.3", keep: bool = False, timeout: float = 55.0) -> int:
    """Run the demo; return 0 when the execution paused at the stop point."""
    started = time.monotonic()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    base = Path(tempfile.mkdtemp(prefix="clarity-demo-"))
    _say(f"Clarity demo in {base}")
    agent = f"{sys.executable} -m clarity.demo.agent {{prompt_file}}"
    # A namespace of its own: the demo may share the machine's Redis and must not meet old runs there.
    namespace = f"clarity-demo-{base.name.rsplit('-', 1)[-1]}"
    # The dashboard asks for sign-in, as in production: the forge's OAuth pages stand in for GitHub's.
    stack = start(base, os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), agent_command=agent,
                  namespace=namespace, sign_in=True)
    final = None
    try:
        _say(f"  Redis:     {stack.redis.source}")
        _say(f"  forge:     {stack.forge.url} (local GitHub stand-in)")
        _say(f"  web:       {stack.web_url} (webhooks + dashboard)")
        _say(f"  worker:    pid {stack.workers[0].pid} (rq)")
        _say(f"  sandbox:   {_sandbox_words(stack.settings.sandbox)}")
        _say(f"  namespace: {namespace} (Redis keys and queues of this demo)")
        source = base / "sample"
        shutil.copytree(SAMPLE, source)
        stack.create_repo(REPO, source)
        stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
        stack.admin("POST", f"/repos/{REPO}/issues", json={"title": "Build the greeting tool", "user": "ada",
                                                          "body": "Work through tasks_list.md, please."})
        body = f"/clarity run until {until}"
        delivery = stack.comment(REPO, 1, body, user="ada")
        _say(f"\n@ada commented on {REPO}#1: {body!r} → webhook {delivery.get('status_code')}\n")
        final = follow(stack, timeout)
        if final:
            _await_final_comment(stack, final)
        report(stack)
        _say(f"\nDashboard: {stack.web_url}/" + (f"executions/{final['execution']}" if final else "")
             + " (sign in as ada on the forge's page: she may Stop, Pause, Resume and Retry; --keep to look)")
        _say(f"Done in {time.monotonic() - started:.1f}s.")
        if final is None:
            _say("The execution did not settle in time; see the worker log in " + str(base))
            return 1
        if keep:
            _say("Servers keep running; press Ctrl-C to stop.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if final.get("to") == "paused" else 1
    finally:
        stack.forget()
        stack.stop()
        if final is not None and not keep:
            shutil.rmtree(base, ignore_errors=True)
