"""Helpers of the whole-stack tests (the `stack` fixture is in conftest.py): drive it and inspect it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

import devstack
from clarity.store import Store

REPO = "acme/widgets"
SETTLED = {"paused", "completed", "blocked", "failed", "stopped"}


def check_for(task_id: str) -> str:
    # On failure it prints a pytest-style `path:line: Error` line, so the check run gets an annotation.
    return (f'check: grep -qx "ok {task_id}" done/{task_id}.txt || '
            f'(echo "done/{task_id}.txt:1: AssertionError: expected ok {task_id}, got: $(cat done/{task_id}.txt)";'
            ' exit 1)')


def tasks_md(*items: tuple[str, str, bool]) -> str:
    """(id, title, is_parent) → a tasks_list.md; leaves get a check on the agent's output file."""
    lines = ["# Tasks", ""]
    for task_id, title, is_parent in items:
        indent = "  " * task_id.count(".")
        lines.append(f"{indent}- [ ] {task_id} {title}")
        if not is_parent:
            lines.append(f"{indent}  - {check_for(task_id)}")
    return "\n".join(lines) + "\n"


def make_repo(stack: devstack.Stack, tmp_path: Path, tasks: str, name: str = REPO,
              collaborators: dict[str, str] | None = None) -> None:
    source = tmp_path / f"src-{name.replace('/', '-')}"
    source.mkdir()
    (source / "tasks_list.md").write_text(tasks)
    (source / "README.md").write_text("# widgets\n")
    stack.create_repo(name, source)
    for login, permission in (collaborators or {"ada": "write"}).items():
        stack.admin("PUT", f"/repos/{name}/collaborators/{login}", json={"permission": permission})


def store_of(stack: devstack.Stack) -> Store:
    return Store.from_url(stack.redis.url, stack.settings.namespace)


def wait_settled(stack: devstack.Stack, repo: str = REPO, count: int = 1, timeout: float = 60,
                 since: float = 0.0) -> Any:
    """Wait until `count` executions of the repo exist and the newest has settled after `since`."""
    store = store_of(stack)

    def newest() -> Any:
        found = store.executions(repo=repo)
        if len(found) >= count and str(found[0].status) in SETTLED and found[0].finished_at > since:
            return found[0]
        return None

    return devstack.wait_for(newest, timeout, what=f"an execution of {repo} to settle (see {stack.base})")


def wait_comment(stack: devstack.Stack, needle: str, timeout: float = 20) -> dict[str, Any]:
    def find() -> Any:
        return next((c for c in stack.admin("GET", "/state")["comments"]
                     if c["author"] == stack.bot_login and needle in c["body"]), None)
    return devstack.wait_for(find, timeout, what=f"a bot comment containing {needle!r}")


def git(stack: devstack.Stack, *args: str, repo: str = REPO) -> str:
    owner, name = repo.split("/")
    bare = stack.forge.config.repos_dir / owner / f"{name}.git"
    return subprocess.run(["git", f"--git-dir={bare}", *args], capture_output=True, text=True,
                          check=True).stdout


def branch_file(stack: devstack.Stack, path: str, branch: str = "clarity/issue-1") -> str:
    return git(stack, "show", f"{branch}:{path}")


def sinks(stack: devstack.Stack, log_text: str) -> dict[str, str]:
    """Every place a text can leave the product, read back whole: for the secret scans."""
    executions = store_of(stack).executions()
    root = stack.settings.artifacts_dir
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())

    def web(path: str) -> str:
        response = httpx.get(f"{stack.web_url}{path}", timeout=30)
        response.raise_for_status()
        return response.text

    return {
        "forge calls": json.dumps(stack.admin("GET", "/calls")),
        "forge state": json.dumps(stack.admin("GET", "/state")),
        "redis": dump_redis(stack),
        "worker logs": "".join(p.read_text(errors="replace") for p in stack.base.glob("*.log")),
        "web and forge logs (this process)": log_text,
        "artifacts": "".join((root / f).read_text(errors="replace") for f in files),
        "dashboard": web("/") + "".join(web(f"/executions/{e.id}") for e in executions),
        "dashboard API": web("/api/devteam/executions") + web("/api/devteam/history/executions") + "".join(
            web(f"/api/executions/{e.id}") + web(f"/api/devteam/executions/{e.id}/progress") for e in executions),
        "artifacts served": "".join(web(f"/executions/{f.parts[0]}/artifacts/{'/'.join(f.parts[1:])}")
                                    for f in files),
    }


def dump_redis(stack: devstack.Stack) -> str:
    """The values of every key of the stack's namespace, as text."""
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    parts = []
    for key in client.scan_iter(f"{stack.settings.namespace}:*", count=1000):
        kind = client.type(key)
        if kind == "hash":
            parts.append(json.dumps(client.hgetall(key)))
        elif kind == "stream":
            parts.append(json.dumps(client.xrange(key)))
        elif kind == "string":
            parts.append(client.get(key) or "")
        elif kind == "list":
            parts.append(json.dumps(client.lrange(key, 0, -1)))
    return "\n".join(parts)


@contextlib.contextmanager
def own_workers_stack(redis_url: str, tmp_path: Path, prefix: str, **extra_env: str) -> Iterator[devstack.Stack]:
    """A stack with its intake worker running, whose steps workers the test starts (and kills) itself."""
    from tests.conftest import AGENT

    running = devstack.start(tmp_path / "stack", redis_url, agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                             workers=0, namespace=f"{prefix}-{uuid.uuid4().hex[:8]}",
                             extra_env={"CLARITY_RETRY_BACKOFF": "0.05", **extra_env})
    running.start_worker(role="intake")
    try:
        yield running
    finally:
        running.forget()
        running.stop()


def seeded_origin(tmp_path: Path) -> Path:
    """A bare repository with one commit on `main`: a README and a .gitignore of `*.log`."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "README.md").write_text("# app\n")
    (source / ".gitignore").write_text("*.log\n")
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(source)], check=True)
    subprocess.run(["git", *env, "-C", str(source), "add", "-A"], check=True)
    subprocess.run(["git", *env, "-C", str(source), "commit", "-q", "-m", "init"], check=True)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(bare)], check=True)
    return bare
