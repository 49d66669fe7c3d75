"""End to end: setup, gate phases and the command allowlist through the whole stack (forge, web, worker)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack
from clarity.status import ExecutionStatus
from tests.conftest import AGENT
from tests.e2e import check_for, git, store_of, wait_comment, wait_settled

pytestmark = pytest.mark.e2e

CONFIG = """\
setup: ["mkdir -p build && echo ready > build/setup.txt"]
gates:
  pre: ["file README.md"]
  post_task: ["file build/setup.txt"]
  post_execution: ["file README.md", "grep -q never README.md"]
"""


def _repo(stack: devstack.Stack, tmp_path: Path, name: str, config: str, task: str = "1 Build it") -> None:
    source = tmp_path / f"src-{name.replace('/', '-')}"
    (source / ".github").mkdir(parents=True)
    task_id = task.split()[0]
    (source / "tasks_list.md").write_text(f"# Tasks\n\n- [ ] {task}\n  - {check_for(task_id)}\n")
    (source / "README.md").write_text("# widgets\n")
    (source / ".github" / "clarity.yml").write_text(config)
    stack.create_repo(name, source)
    stack.admin("PUT", f"/repos/{name}/collaborators/ada", json={"permission": "write"})


def test_setup_and_gates_of_every_phase_run_and_post_execution_blocks(stack, tmp_path: Path) -> None:
    _repo(stack, tmp_path, "acme/gated", CONFIG)
    _repo(stack, tmp_path, "acme/closed", 'gates: {pre: ["grep -q open README.md"]}\n')
    stack.comment("acme/gated", 1, "/clarity run", user="ada")
    stack.comment("acme/closed", 1, "/clarity run", user="ada")

    ex = wait_settled(stack, repo="acme/gated")
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    assert ex.reason.startswith("post_execution gate `grep -q never README.md` failed (exit 1)")
    assert ex.tasks_completed == 1  # the task itself passed: setup ran before its checks, post_task gate too
    # Setup ran in the task's workspace, so what it made is committed unless the repo ignores it.
    assert git(stack, "show", "clarity/issue-1:build/setup.txt", repo="acme/gated") == "ready\n"
    progress = store_of(stack).task(ex.id, "1")
    assert [(c["name"], c["passed"]) for c in progress.checks][-1] == ("file build/setup.txt", True)
    assert git(stack, "log", "--format=%s", "clarity/issue-1", repo="acme/gated").splitlines()[0] == "clarity: 1 Build it"
    comment = wait_comment(stack, "post_execution gate `grep -q never README.md` failed")
    assert "is blocked" in comment["body"]
    lines = [entry.get("message", "") for entry in store_of(stack).log_lines(ex.id, 500)]
    assert any(line.startswith("pre gate `file README.md`: passed") for line in lines)
    assert any(line.startswith("post_execution gate `file README.md`: passed") for line in lines)

    closed = wait_settled(stack, repo="acme/closed")
    assert closed.status is ExecutionStatus.BLOCKED, closed.reason
    assert closed.reason.startswith("pre gate `grep -q open README.md` failed (exit 1)")
    assert (closed.tasks_completed, closed.attempts) == (0, 0)  # blocked before any task was tried


@pytest.fixture
def allowlisted(redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    """The stack with CLARITY_COMMAND_ALLOWLIST: the test agent's python and grep, nothing else."""
    running = devstack.start(tmp_path / "stack", redis_url,
                             agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                             namespace=f"e2e-{uuid.uuid4().hex[:8]}",
                             extra_env={"CLARITY_RETRY_BACKOFF": "0.05",
                                        "CLARITY_COMMAND_ALLOWLIST": f"{sys.executable},grep"})
    try:
        yield running
    finally:
        running.forget()
        running.stop()


def test_a_check_outside_the_allowlist_blocks_before_the_agent_runs(allowlisted, tmp_path: Path) -> None:
    stack = allowlisted
    source = tmp_path / "src"
    source.mkdir()
    (source / "tasks_list.md").write_text("# Tasks\n\n- [ ] 1 Fetch\n  - check: grep -q x README.md && curl -s x\n")
    (source / "README.md").write_text("x\n")
    stack.create_repo("acme/strict", source)
    stack.admin("PUT", "/repos/acme/strict/collaborators/ada", json={"permission": "write"})
    stack.comment("acme/strict", 1, "/clarity run", user="ada")
    ex = wait_settled(stack, repo="acme/strict")
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    assert ex.reason == (f"task 1: check `grep -q x README.md && curl -s x` was not run: `curl` is not allowed "
                         f"by CLARITY_COMMAND_ALLOWLIST (allowed: {sys.executable}, grep)")
    assert not (stack.settings.artifacts_dir / ex.id / "1" / "attempt-1").exists()  # the agent never ran
    wait_comment(stack, "`curl` is not allowed by CLARITY_COMMAND_ALLOWLIST")
