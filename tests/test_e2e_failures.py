"""End to end (forge + web + a real worker): failure classes in the escalation, artifacts, manual override."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from clarity.status import ExecutionStatus
from tests.e2e import (
    REPO,
    branch_file,
    check_for,
    git,
    make_repo,
    store_of,
    tasks_md,
    wait_comment,
    wait_settled,
)


def test_an_agent_that_always_times_out_blocks_with_a_timeout_escalation(stack, tmp_path: Path) -> None:
    tasks = ("# Tasks\n\n- [ ] 1 Endless [slow:30]\n  - timeout: 1s\n"
             f"  - {check_for('1')}\n")
    make_repo(stack, tmp_path, tasks)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    escalation = wait_comment(stack, "failed after 4 attempts")["body"]
    assert "Failure class: `timeout`" in escalation and "ran out of time" in escalation
    assert "timed out (timeout)" in escalation and "[killed: timeout after" in escalation  # the last output
    progress = store_of(stack).task(ex.id, "1")
    assert (str(progress.status), progress.error_class) == ("failed", "timeout")

    folder = stack.settings.artifacts_dir / ex.id / "1"
    assert json.loads((folder / "attempt-4" / "result.json").read_text())["error_class"] == "timeout"
    assert "The previous attempt failed (timeout)" in (folder / "attempt-2" / "prompt.md").read_text()
    timings = json.loads((folder / "attempt-1" / "timings.json").read_text())
    assert 0.9 < timings["agent_seconds"] < 15
    # The check run links the artifacts; the dashboard serves them, and nothing outside them.
    [run] = [r for r in stack.admin("GET", "/state")["check_runs"] if r["name"] == "Clarity: 1 Endless [slow:30]"]
    link = f"{stack.settings.public_url}/executions/{ex.id}/artifacts/1"
    assert link in run["text"]
    listing = httpx.get(f"{stack.web_url}/executions/{ex.id}/artifacts/1")
    assert listing.status_code == 200 and "attempt-4/diff.patch" in listing.text
    served = httpx.get(f"{stack.web_url}/executions/{ex.id}/artifacts/1/attempt-1/agent.log")
    assert served.status_code == 200 and "(killed: timeout)" in served.text
    assert httpx.get(f"{stack.web_url}/executions/{ex.id}/artifacts/1/%2e%2e/%2e%2e/x").status_code == 404


def test_override_done_ticks_the_blocked_task_with_its_own_commit_and_the_execution_goes_on(
        stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Good", False), ("2", "Impossible [broken]", False),
                                        ("3", "After", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    since = time.time()
    stack.comment(REPO, 1, "/clarity override 2 done", user="ada")
    ex = wait_settled(stack, since=since)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    subjects = git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()
    assert subjects[:3] == ["clarity: 3 After", "clarity: 2 marked done by @ada", "clarity: 1 Good"]
    changed = git(stack, "show", "--name-only", "--format=", "clarity/issue-1~1").split()
    assert changed == ["task_outcomes.md", "tasks_list.md"]  # the override commit: the box and its outcome only
    tasks = branch_file(stack, "tasks_list.md")
    assert "- [x] 2 Impossible [broken]" in tasks and "- [x] 3 After" in tasks
    progress = store_of(stack).task(ex.id, "2")
    assert (str(progress.status), progress.override_by) == ("completed", "ada")
    assert ex.tasks_completed == 3
    assert "marked **done** by @ada" in wait_comment(stack, "marked **done**")["body"]
    assert any(a["kind"] == "task.override" and a["actor"] == "ada" for a in store_of(stack).audit())


def test_override_skipped_leaves_the_box_open_and_the_execution_completes_the_rest(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Impossible [broken]", False), ("2", "After", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    assert wait_settled(stack).status is ExecutionStatus.BLOCKED
    since = time.time()
    stack.comment(REPO, 1, "/clarity override 1 skipped", user="ada")
    ex = wait_settled(stack, since=since)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert ex.reason == "every task in the list is done or skipped by a person (1)"
    tasks = branch_file(stack, "tasks_list.md")
    assert "- [ ] 1 Impossible [broken]" in tasks and "- [x] 2 After" in tasks
    assert git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()[0] == "clarity: 2 After"
    progress = store_of(stack).task(ex.id, "1")
    assert (str(progress.status), progress.override_by, progress.attempts) == ("skipped", "ada", 4)
