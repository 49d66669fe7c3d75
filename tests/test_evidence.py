"""Evidence is never overwritten, and every outcome is written down (issue 15), end to end: forge + web + worker.

A retry numbers its attempts on (`attempt-5/` after `attempt-4/`, the task's count is the total); a crashed
agent's check run says the checks never ran and names them; an override is an outcome like any other (who,
when, why in `task_outcomes.md`, the PR's table and its commit); an API token is never written as an
@-mention; a task's commit carries the evidence in its body.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import devstack
from clarity.actors import shown
from clarity.status import ExecutionStatus
from tests.e2e import REPO, branch_file, git, make_repo, store_of, tasks_md, wait_comment, wait_settled
from tests.test_api_e2e import BASE, call, token


def _runs(stack: devstack.Stack, name: str) -> list[dict[str, Any]]:
    return [r for r in stack.admin("GET", "/state")["check_runs"] if r["name"] == name]


def test_a_retry_numbers_its_attempts_on_and_never_writes_over_the_first_rounds_evidence(
        stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Impossible [broken]", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    folder = stack.settings.artifacts_dir / ex.id / "1"
    first = {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    assert {path.parts[0] for path in first} == {f"attempt-{n}" for n in range(1, 5)}

    since = time.time()
    stack.comment(REPO, 1, "/clarity retry", user="ada")
    again = wait_settled(stack, since=since)
    assert again.status is ExecutionStatus.BLOCKED, again.reason
    for path, data in first.items():  # the first round's prompts, logs, diffs and verdicts, byte for byte
        assert (folder / path).read_bytes() == data, f"{path} was written over"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"attempt-{n}" for n in range(1, 9))
    verdicts = [json.loads((folder / f"attempt-{n}" / "result.json").read_text()) for n in range(1, 9)]
    assert [v["attempt"] for v in verdicts] == list(range(1, 9)) and {v["tool"] for v in verdicts} == {"command"}

    assert store_of(stack).task(ex.id, "1").attempts == 8  # the task's count is the total
    progress = httpx.get(f"{stack.web_url}/api/devteam/executions/{ex.id}/progress", timeout=30).json()
    assert [t["attempts"] for t in progress["tasks"]] == [8]
    runs = _runs(stack, "Clarity: 1 Impossible [broken]")
    assert [r["title"] for r in runs] == ["Task 1 failed after 4 attempts", "Task 1 failed after 4 attempts (8 in all)"]
    escalation = wait_comment(stack, "8 in all for this task")["body"]
    assert "failed after 4 attempts (1 + 3 retries; 8 in all for this task)" in escalation


def test_overrides_are_outcomes_with_who_when_why_and_a_token_is_never_an_at_mention(
        stack: devstack.Stack, tmp_path: Path) -> None:
    tasks = ("# Tasks\n\n- [ ] 1 Crashy [crash]\n  - check: test -f nothing.txt\n"
             "- [ ] 2 Impossible [broken]\n  - check: test -f never.txt\n"
             "- [ ] 3 After\n  - check: grep -qx \"ok 3\" done/3.txt\n")
    make_repo(stack, tmp_path, tasks)
    stack.admin("POST", f"/repos/{REPO}/issues", json={"title": "the release", "user": "ada"})
    script = token(stack, "team_member")  # a script's API token: its actor is `token:ci-team_member`
    started = call(stack, "POST", f"{BASE}/initialize", script, {"repository": REPO, "issueNumber": 1})
    assert started.status_code == 201, started.text
    ex_id = started.json()["id"]
    blocked = wait_settled(stack)
    assert blocked.status is ExecutionStatus.BLOCKED, blocked.reason

    # The agent crashed on every attempt: the check run says so, and names the check that never ran.
    [crashed] = _runs(stack, "Clarity: 1 Crashy [crash]")
    assert "No acceptance checks are declared" not in crashed["summary"]
    assert ("The agent crashed (SIGSEGV) before the checks ran (exit 139); checks declared: `test -f nothing.txt`."
            in crashed["summary"]), crashed["summary"]

    since = time.time()
    stack.comment(REPO, 1, "/clarity override 1 done because the crash is upstream; @bob fixes it", user="ada")
    blocked_again = wait_settled(stack, since=since)
    assert blocked_again.status is ExecutionStatus.BLOCKED, blocked_again.reason  # task 2 failed
    since = time.time()
    skipped = call(stack, "POST", f"{BASE}/{ex_id}/manual-override", script,
                   {"taskId": "2", "action": "skipped", "reason": "not needed for this release"})
    assert skipped.status_code == 200, skipped.text
    done = wait_settled(stack, since=since)
    assert done.status is ExecutionStatus.COMPLETED, done.reason

    # task_outcomes.md: a section per override, saying who, when and why.
    outcomes = branch_file(stack, "task_outcomes.md")
    one = outcomes[outcomes.index("## 1 Crashy [crash]"):outcomes.index("## 2 ")]
    assert "- Status: marked done by @ada at " in one and "without the agent; reason: `the crash is upstream; @bob " \
        "fixes it`" in one and "- Attempts before: 4 (tool command)" in one
    two = outcomes[outcomes.index("## 2 Impossible [broken]"):outcomes.index("## 3 ")]
    assert "- Status: skipped by token `ci-team_member` at " in two and "reason: `not needed for this release`" in two

    # The commits: each override has its own, and every commit carries a body.
    log = git(stack, "log", "--format=%B%x00", "clarity/issue-1").split("\x00")
    messages = {m.strip().splitlines()[0]: m.strip() for m in log if m.strip()}
    assert list(messages)[:3] == ["clarity: 3 After", "clarity: 2 skipped by token `ci-team_member`",
                                  "clarity: 1 marked done by @ada"]
    assert "reason: `the crash is upstream; @bob fixes it`" in messages["clarity: 1 marked done by @ada"]
    after = messages["clarity: 3 After"].splitlines()
    assert after[2:5] == ["Tool: command", "Attempts: 1", "Checks: 1 of 1 passed (grep -qx \"ok 3\" done/3.txt)"]
    assert after[5] == f"Artifacts: {stack.settings.public_url}/executions/{ex_id}/artifacts/3"
    assert "- [x] 1 Crashy [crash]" in branch_file(stack, "tasks_list.md")
    assert "- [ ] 2 Impossible [broken]" in branch_file(stack, "tasks_list.md")

    # The PR's table marks both overrides; nobody is written `@token…`, anywhere.
    [pull] = [i for i in stack.admin("GET", "/state")["issues"] if i.get("pull")]
    rows = {line.split("|")[1].strip(): line for line in pull["body"].splitlines() if line.startswith("| ")}
    assert "✋ overridden: marked done by @ada" in rows["1"] and "| 4 |" in rows["1"]
    assert "✋ overridden: skipped by token `ci-team_member`" in rows["2"]
    said = [c["body"] for c in stack.admin("GET", "/state")["comments"]] + [pull["body"], *messages.values()]
    assert not [text for text in said if "@token" in text]
    assert any("token `ci-team_member` execution" in text for text in said)  # the closing comment's addressee


@pytest.mark.parametrize(("actor", "written"), [
    ("ada", "@ada"),
    ("token:dev", "token `dev`"),  # an API token's name is the operator's text: never after an `@`
    ("token:@ops team", "token `@ops team`"),
    ("grace (pushed to `main`)", "@grace (pushed to `main`)"),  # a pause flag: the login, then the engine's note
    ("engine", "Clarity"),
    ("", "someone"),
])
def test_an_actor_is_an_at_mention_only_when_it_is_a_person(actor: str, written: str) -> None:
    assert shown(actor) == written
