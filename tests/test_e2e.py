"""End to end: forge (GitHub stand-in) + web + a real `clarity worker` (RQ) process + real Redis and git.

A signed comment goes through the forge's webhook to the web app, the worker runs the tasks with a
deterministic agent from tests/fixtures, and the assertions read what the forge recorded and what
its bare git repositories hold.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest
import redis

import devstack
from clarity.status import ExecutionStatus
from tests import e2e
from tests.e2e import (  # noqa: F401
    REPO,
    SETTLED,
    branch_file,
    git,
    make_repo,
    store_of,
    tasks_md,
    wait_comment,
    wait_settled,
)


def test_comment_runs_tasks_to_the_stop_point_then_run_again_completes(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False),
                                        ("1.2", "Add CI", False), ("2", "Data", True),
                                        ("2.1", "Add models", False)))
    delivery = stack.comment(REPO, 1, "Please start.\n\n/clarity run until 1.2", user="ada")
    assert delivery["status_code"] == 202

    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.PAUSED, ex.reason
    assert ex.reason == "stop point 1.2 reached"
    assert (ex.tasks_completed, ex.tasks_total) == (2, 2)
    log = git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()
    assert log[:2] == ["clarity: 1.2 Add CI", "clarity: 1.1 Create skeleton"]
    tasks = branch_file(stack, "tasks_list.md")
    assert "- [x] 1 Setup" in tasks and "- [x] 1.1 Create" in tasks and "- [x] 1.2 Add CI" in tasks
    assert "- [ ] 2 Data" in tasks and "- [ ] 2.1 Add models" in tasks
    outcomes = branch_file(stack, "task_outcomes.md")
    assert "## 1.1 Create skeleton" in outcomes and "## 1.2 Add CI" in outcomes and "Attempts: 1" in outcomes
    assert branch_file(stack, "done/1.2.txt") == "ok 1.2\n"

    state = stack.admin("GET", "/state")
    pulls = [i for i in state["issues"] if i.get("pull")]
    assert len(pulls) == 1 and pulls[0]["pull"]["head_ref"] == "clarity/issue-1"
    assert "Refs #1" in pulls[0]["body"]
    sha = git(stack, "rev-parse", "clarity/issue-1").strip()
    # Evidence per task: its commit, its checks, and a link to the artifacts of every attempt.
    commit = f"[{sha[:10]}]({stack.settings.web_url}/{REPO}/commit/{sha})"
    artifacts = f"[artifacts]({stack.web_url}/executions/{ex.id}/artifacts/1.2)"
    assert f"| 1.2 | Add CI | {commit} | 1 | 1/1 passed | {artifacts} |" in pulls[0]["body"]
    # Opened as a draft while tasks ran, marked ready for review (GraphQL) once paused.
    [opened] = stack.admin("GET", "/calls", params={"method": "POST", "path": "/pulls"})
    assert opened["request"]["draft"] is True
    runs = {r["name"]: r for r in state["check_runs"] if not r["name"].startswith("Clarity: run ")}
    assert runs["Clarity: 1.1 Create skeleton"]["conclusion"] == "success"
    assert runs["Clarity: 1.2 Add CI"]["conclusion"] == "success"
    assert len(runs) == 2
    assert [r["content"] for r in state["reactions"]] == ["eyes"]
    wait_comment(stack, "paused")  # posted after the PR was marked ready and the summary concluded
    head = git(stack, "rev-parse", "clarity/issue-1").strip()
    summaries = [r for r in stack.admin("GET", "/state")["check_runs"] if r["name"] == "Clarity: run until 1.2"]
    [current] = [r for r in summaries if r["head_sha"] == head]
    assert current["conclusion"] == "neutral" and "2/2 tasks done" in current["title"]
    assert "| 1.2 | Add CI | completed | 1 |" in current["text"]
    assert [a["identifier"] for a in current["actions"]] == ["resume"]
    assert all(r["conclusion"] == "neutral" and r["title"] == "Continued on a newer commit"
               for r in summaries if r is not current)
    assert [i["pull"]["draft"] for i in stack.admin("GET", "/state")["issues"] if i.get("pull")] == [False]

    since = time.time()
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, since=since)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    tasks = branch_file(stack, "tasks_list.md")
    assert "- [x] 2 Data" in tasks and "- [x] 2.1 Add models" in tasks
    assert git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()[0] == "clarity: 2.1 Add models"
    assert len([i for i in stack.admin("GET", "/state")["issues"] if i.get("pull")]) == 1
    assert len(store_of(stack).executions(repo=REPO)) == 1  # the paused execution was resumed, not duplicated


def test_agent_that_fails_once_then_succeeds_takes_two_attempts(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Flaky thing [flaky]", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    progress = store_of(stack).task(ex.id, "1")
    assert (progress.attempts, str(progress.status)) == (2, "completed")
    assert (ex.attempts, ex.error_count, ex.retry_count) == (2, 1, 1)
    assert "Attempts: 2" in branch_file(stack, "task_outcomes.md")
    prompt = (stack.settings.artifacts_dir / ex.id / "1" / "attempt-2" / "prompt.md").read_text()
    assert "expected ok 1, got: wrong 1" in prompt


def test_agent_that_never_passes_is_tried_four_times_then_blocks_with_escalation(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Good", False), ("2", "Impossible [broken]", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    assert ex.reason == "task 2 failed after 4 attempts"
    progress = store_of(stack).task(ex.id, "2")
    assert (progress.attempts, str(progress.status)) == (4, "failed")
    attempts = sorted(p.name for p in (stack.settings.artifacts_dir / ex.id / "2").iterdir())
    assert attempts == ["attempt-1", "attempt-2", "attempt-3", "attempt-4"]
    escalation = wait_comment(stack, "failed after 4 attempts")
    assert "@ada" in escalation["body"] and "expected ok 2, got: wrong 2" in escalation["body"]
    subjects = git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()
    assert subjects[0] == "clarity: 1 Good"  # task 1 landed, nothing of task 2 did
    assert not any("clarity: 2" in s for s in subjects)
    assert "done/2.txt" not in git(stack, "ls-tree", "-r", "--name-only", "clarity/issue-1")
    all_runs = stack.admin("GET", "/state")["check_runs"]
    runs = {r["name"]: r for r in all_runs if not r["name"].startswith("Clarity: run ")}
    assert {name: r["conclusion"] for name, r in runs.items()} == {
        "Clarity: 1 Good": "success", "Clarity: 2 Impossible [broken]": "failure"}
    head = git(stack, "rev-parse", "clarity/issue-1").strip()
    [summary] = [r for r in all_runs if r["name"] == "Clarity: run to the end of the list" and r["head_sha"] == head]
    assert summary["conclusion"] == "action_required"
    assert [a["identifier"] for a in summary["actions"]] == ["retry", "stop"]
    [note] = runs["Clarity: 2 Impossible [broken]"]["annotations"]
    assert (note["path"], note["start_line"]) == ("done/2.txt", 1)
    assert note["message"].startswith("AssertionError: expected ok 2, got: wrong 2")


def test_push_refused_for_a_workflow_file_blocks_with_the_named_reason(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Add CI [workflow]", False)))
    stack.admin("PUT", "/app/permissions", json={"permissions": {"workflows": "none"}})
    stack.admin("POST", "/tokens/expire")  # the app's new permissions reach the tokens issued from now on
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    named = ("GitHub refused the push: the task changed `.github/workflows/ci.yml`, and the app lacks the "
             "Workflows permission; grant it (Settings → GitHub Apps → Permissions) or keep the task away "
             "from workflow files")
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    assert ex.reason == named
    runs = {r["name"]: r for r in stack.admin("GET", "/state")["check_runs"]}
    assert runs["Clarity: 1 Add CI [workflow]"]["conclusion"] == "failure"
    task_run = runs["Clarity: 1 Add CI [workflow]"]
    assert named in f"{task_run['title']} {task_run['summary']} {task_run['text']}"
    wait_comment(stack, "the app lacks the Workflows permission")


def test_same_delivery_twice_makes_one_execution(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only task", False)))
    first = stack.comment(REPO, 1, "/clarity run", user="ada", delivery_id="delivery-dup-1")
    again = stack.admin("POST", "/redeliver/delivery-dup-1")
    assert first["status_code"] == 202
    assert again["status_code"] == 200  # acknowledged as a duplicate
    wait_settled(stack)
    assert len(store_of(stack).executions(repo=REPO)) == 1
    starts = [c for c in stack.admin("GET", "/state")["comments"] if c["body"].startswith("Starting execution")]
    assert len(starts) == 1


def test_bad_signature_is_refused_and_nothing_is_queued(stack) -> None:
    body = json.dumps({"action": "created"}).encode()
    response = httpx.post(f"{stack.web_url}/webhooks", content=body, headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "forged-1",
        "X-Hub-Signature-256": "sha256=" + "ab" * 32, "Content-Type": "application/json"})
    assert response.status_code == 401
    raw = redis.Redis.from_url(stack.redis.url)
    assert raw.llen(f"rq:queue:{stack.settings.intake_queue}") == 0
    assert store_of(stack).executions() == []


def test_reader_is_refused_with_a_reason_and_nothing_starts(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only task", False)), collaborators={"rita": "read"})
    stack.comment(REPO, 1, "/clarity run", user="rita")
    refusal = wait_comment(stack, "only people with write access")
    assert "@rita" in refusal["body"] and "`read`" in refusal["body"]
    assert store_of(stack).executions() == []


def test_unknown_command_gets_help_and_status_reports(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only task", False)))
    stack.comment(REPO, 1, "/clarity fly", user="ada")
    reply = wait_comment(stack, "unknown command")
    assert "/clarity run" in reply["body"]  # the help text follows the problem
    stack.comment(REPO, 1, "/clarity run until 1", user="ada")
    wait_settled(stack)
    stack.comment(REPO, 1, "/clarity status", user="ada")
    status = wait_comment(stack, "| task | title | status | attempts |")
    assert "| 1 | Only task | completed | 1 |" in status["body"]


def test_no_secret_leaves_the_process(stack, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    make_repo(stack, tmp_path, tasks_md(("1", "Chatty agent [leak]", False), ("2", "Broken [broken]", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    wait_settled(stack)
    wait_comment(stack, "failed after 4 attempts")
    secrets = [stack.settings.webhook_secret, *_key_lines(stack.settings.private_key),
               *stack.forge.context.tokens._grants.keys()]
    assert any(s.startswith("ghs_") for s in secrets)
    sinks = e2e.sinks(stack, caplog.text)  # encoded and split copies: tests/test_attacks_redaction.py
    assert all(sinks.values())
    for sink, text in sinks.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {sink}"


def _key_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and "-----" not in line]


def test_second_run_on_the_same_repo_waits_for_the_first(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Slow one [slow:2]", False), ("2", "Second", False)))
    stack.admin("POST", f"/repos/{REPO}/issues", json={"title": "first", "user": "ada"})
    stack.admin("POST", f"/repos/{REPO}/issues", json={"title": "second", "user": "ada"})
    stack.comment(REPO, 1, "/clarity run until 1", user="ada")
    devstack.wait_for(lambda: store_of(stack).lease_holder(REPO), 20, what="the first execution to start")
    stack.comment(REPO, 2, "/clarity run until 1", user="ada")
    queued = wait_comment(stack, "Queued")
    assert "Position 1 in line" in queued["body"]
    second = wait_settled(stack, count=2)
    first = store_of(stack).executions(repo=REPO)[1]
    assert (first.status, second.status) == (ExecutionStatus.PAUSED, ExecutionStatus.PAUSED)
    assert second.started_at >= first.finished_at  # never two executions on one repo at once
    assert git(stack, "log", "--format=%s", "clarity/issue-2").splitlines()[0] == "clarity: 1 Slow one [slow:2]"


def test_stop_cancels_the_running_attempt_and_commits_nothing(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Endless [slow:60]", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: any(str(t.status) == "in-progress" for e in store.executions(repo=REPO)
                                  for t in store.tasks(e.id).values()), 20, what="the attempt to start")
    started = time.monotonic()
    stack.comment(REPO, 1, "/clarity stop", user="ada")
    ex = wait_settled(stack, timeout=30)
    assert ex.status is ExecutionStatus.STOPPED and ex.reason == "stopped by @ada"
    assert time.monotonic() - started < 15  # the 60 s agent was killed, not waited for
    assert "clarity/issue-1" not in git(stack, "branch", "--list")
    runs = stack.admin("GET", "/state")["check_runs"]
    assert {r["name"]: r["conclusion"] for r in runs} == {
        "Clarity: 1 Endless [slow:60]": "cancelled", "Clarity: run to the end of the list": "cancelled"}
    assert str(store.task(ex.id, "1").status) == "pending"


def test_dashboard_lists_executions_and_shows_tasks_and_log(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only task", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    overview = httpx.get(f"{stack.web_url}/").text
    assert f"/executions/{ex.id}" in overview and "completed" in overview and "1/1" in overview
    page = httpx.get(f"{stack.web_url}/executions/{ex.id}").text
    assert "Only task" in page and "task.status" in page
    data = httpx.get(f"{stack.web_url}/api/executions/{ex.id}").json()
    assert data["status"] == "completed" and data["tasksCompleted"] == 1 and data["tasks"][0]["attempts"] == 1
    assert httpx.get(f"{stack.web_url}/executions/nope").status_code == 404


def test_pr_template_and_notify_list_from_the_repository(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only task", False)))
    source = tmp_path / "extra"
    source.mkdir()
    # A second repository whose config asks for a PR template and people to notify.
    (source / "tasks_list.md").write_text(tasks_md(("1", "Only task", False)))
    (source / ".github").mkdir()
    (source / ".github" / "clarity.yml").write_text("notify: [grace, '@lin']\n")
    (source / ".github" / "clarity_pr_template.md").write_text(
        "## Our template\n\nStatus: {status}\n\n{tasks}\n\nCloses {issue}.\n")
    stack.create_repo("acme/templated", source)
    stack.admin("PUT", "/repos/acme/templated/collaborators/ada", json={"permission": "write"})
    stack.comment("acme/templated", 1, "/clarity run", user="ada")
    ex = wait_settled(stack, repo="acme/templated")
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    closing = wait_comment(stack, "completed")
    assert "cc @grace @lin" in closing["body"]
    [pull] = [i for i in stack.admin("GET", "/state")["issues"] if i["repo"] == "acme/templated" and i.get("pull")]
    assert pull["body"].startswith("## Our template\n\nStatus: completed")
    assert "| 1 | Only task |" in pull["body"] and "Closes #1." in pull["body"]
