"""End to end against a forge as unkind as github.com can be (issue 14, "behave as GitHub does").

GitHub can lag behind a push (422 on a PR or check run for the new commit), ask for a minute's pause
without saying how long (a secondary rate limit with no headers), ask for ten minutes, or answer 502
after it made what it was asked to make. Each run here must still end with exactly one of everything
(comment, check run, PR) and complete, without blocking and without throwing the agent's work away.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

import devstack
from clarity.models import Execution
from clarity.status import ExecutionStatus
from github_app.reporting import check_owner
from tests.conftest import AGENT
from tests.e2e import REPO, git, make_repo, store_of, tasks_md, wait_comment, wait_settled

WAIT = 3  # CLARITY_SECONDARY_LIMIT_WAIT here: GitHub's "at least one minute", shortened for the tests
SECONDARY = "You have exceeded a secondary rate limit"


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    """The whole product with the test agent, waiting WAIT seconds after a secondary limit naming no time."""
    running = devstack.start(tmp_path / "stack", redis_url, agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                             namespace=f"e2e-{uuid.uuid4().hex[:8]}",
                             extra_env={"CLARITY_RETRY_BACKOFF": "0.05", "CLARITY_SECONDARY_LIMIT_WAIT": str(WAIT)})
    try:
        yield running
    finally:
        running.forget()
        running.stop()


def fault(stack: devstack.Stack, method: str, path_regex: str, kind: str, **extra: Any) -> None:
    stack.admin("POST", "/faults", json={"method": method, "path_regex": path_regex, "kind": kind, **extra})


def calls(stack: devstack.Stack, method: str, path: str) -> list[dict[str, Any]]:
    """The REST calls to exactly `path`, oldest first."""
    return [c for c in stack.admin("GET", "/calls", params={"method": method, "path": path}) if c["path"] == path]


def runs_of(stack: devstack.Stack, ex: Execution) -> dict[str, list[dict[str, Any]]]:
    """The execution's check runs by owner: task id, or "" for its summary runs."""
    found: dict[str, list[dict[str, Any]]] = {}
    for run in stack.admin("GET", "/state")["check_runs"]:
        owner = check_owner(run["external_id"] or "")
        if owner.startswith(f"{ex.id}:"):
            found.setdefault(owner.split(":", 1)[1], []).append(run)
    return found


def bot_comments(stack: devstack.Stack, needle: str) -> list[dict[str, Any]]:
    return [c for c in stack.admin("GET", "/state")["comments"] if c["author"].endswith("[bot]") and needle in c["body"]]


def pulls(stack: devstack.Stack) -> list[dict[str, Any]]:
    return [i for i in stack.admin("GET", "/state")["issues"] if i.get("pull")]


def history(stack: devstack.Stack, ex: Execution) -> list[dict[str, Any]]:
    """The execution's audit records, oldest first."""
    return [e for e in reversed(store_of(stack).audit(2000)) if e.get("execution") == ex.id]


def never_blocked(stack: devstack.Stack, ex: Execution) -> bool:
    return not [e for e in history(stack, ex) if e["kind"] == "execution.status" and e["to"] == "blocked"]


def assert_completed_once(stack: devstack.Stack, ex: Execution, tasks: int) -> None:
    """Completed; one PR, one check run per task (passed), one closing comment."""
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    # The status settles first; the PR refresh and the closing comment follow it (a PR first opened by the last
    # step is recorded then): read the record again once the closing comment is there.
    wait_comment(stack, f"{tasks} of {tasks} task(s) done")
    ex = store_of(stack).get(ex.id)
    assert (ex.tasks_completed, ex.tasks_total) == (tasks, tasks)
    [pull] = pulls(stack)
    assert ex.pr_number == pull["number"]
    runs = runs_of(stack, ex)
    assert sorted(k for k in runs if k) == [str(n) for n in range(1, tasks + 1)]
    assert all(len(runs[str(n)]) == 1 and runs[str(n)][0]["conclusion"] == "success" for n in range(1, tasks + 1))
    wait_comment(stack, f"{tasks} of {tasks} task(s) done")
    assert len(bot_comments(stack, f"{tasks} of {tasks} task(s) done")) == 1


def started(stack: devstack.Stack) -> Execution:
    return devstack.wait_for(lambda: next(iter(store_of(stack).executions(repo=REPO)), None), 30, what="an execution")


def test_a_run_completes_with_one_pull_and_one_check_run_per_task_though_github_sees_each_push_late(
        stack: devstack.Stack, tmp_path: Path) -> None:
    stack.admin("PUT", "/push-visibility", json={"seconds": 2})
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", False), ("2", "Build", False), ("3", "Docs", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=180)
    assert_completed_once(stack, ex, 3)
    assert never_blocked(stack, ex)
    # GitHub's two answers for a push it does not see yet were met, and waited out.
    opened = calls(stack, "POST", f"/repos/{REPO}/pulls")
    assert opened[0]["status"] == 422 and opened[0]["response"]["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}]
    assert [c["status"] for c in opened].count(201) == 1
    created = calls(stack, "POST", f"/repos/{REPO}/check-runs")
    assert any(c["status"] == 422 and c["response"]["message"].startswith("No commit found for SHA") for c in created)


def test_a_secondary_limit_naming_no_time_puts_the_step_back_in_line_for_the_setting(
        stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", False), ("2", "Build", False)))
    # The PR is opened once task 1 is pushed; GitHub answers that with a secondary limit and no retry-after.
    fault(stack, "POST", f"^/repos/{REPO}/pulls$", "secondary_rate_limit", retry_after=None, status=403)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=120)
    assert_completed_once(stack, ex, 2)
    limited, opened = calls(stack, "POST", f"/repos/{REPO}/pulls")
    assert limited["status"] == 403 and SECONDARY in limited["response"]["message"] and opened["status"] == 201
    # Not slept through in the worker, not retried at once: the step ended, and came back WAIT s later.
    records = history(stack, ex)
    [deferred] = [e for e in records if e["kind"] == "execution.deferred"]
    assert deferred["seconds"] == WAIT
    [put_off] = [e for e in records if e["kind"] == "step.finished" and e["outcome"].startswith("deferred")]
    after = next(e for e in records if e["kind"] == "step.started" and e["time"] > put_off["time"])
    assert after["time"] - put_off["time"] >= WAIT  # never early (RQ keeps whole seconds: see enqueue_step_later)
    assert never_blocked(stack, ex)
    assert any(f"GitHub asked us to slow down; resuming in {WAIT} s" in line.get("message", "")
               for line in store_of(stack).log_lines(ex.id, 500))


def test_a_502_after_github_wrote_a_comment_leaves_exactly_one_of_each_comment(
        stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only [slow:3]", False)))
    comments = f"^/repos/{REPO}/issues/1/comments$"
    fault(stack, "POST", comments, "server_error_after_write")  # the reply to the command
    stack.comment(REPO, 1, "/clarity run", user="ada")
    wait_comment(stack, "Starting execution")
    fault(stack, "POST", comments, "server_error_after_write")  # the closing comment, while the agent works
    ex = wait_settled(stack)
    assert_completed_once(stack, ex, 1)
    assert len(bot_comments(stack, "Starting execution")) == 1
    assert [c["status"] for c in calls(stack, "POST", f"/repos/{REPO}/issues/1/comments")] == [502, 502]


def test_a_502_after_github_made_a_check_run_leaves_exactly_one_check_run(
        stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only", False)))
    # The first two check runs: the execution's summary, then the task's (opened as the agent starts).
    fault(stack, "POST", f"^/repos/{REPO}/check-runs$", "server_error_after_write", count=2)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert_completed_once(stack, ex, 1)
    summaries = runs_of(stack, ex)[""]
    assert len({run["head_sha"] for run in summaries}) == len(summaries)  # one summary per commit
    assert [c["status"] for c in calls(stack, "POST", f"/repos/{REPO}/check-runs")][:2] == [502, 502]


def test_a_task_whose_check_run_github_would_not_open_keeps_its_work_and_gets_its_run_at_the_end(
        stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only", False)))
    # Every try of the first two creates fails (GitHub made nothing): the summary's, then the task's, three each.
    fault(stack, "POST", f"^/repos/{REPO}/check-runs$", "server_error", status=502, count=6)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert_completed_once(stack, ex, 1)
    assert ex.attempts == 1 and never_blocked(stack, ex)
    [run] = runs_of(stack, ex)["1"]
    assert run["status"] == "completed" and run["started_at"] == run["completed_at"]  # created completed
    assert git(stack, "log", "--format=%s", ex.branch).count("clarity: 1 ") == 1


def test_a_long_retry_after_once_the_agent_is_done_puts_the_step_off_and_keeps_the_agents_commit(
        stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Only [slow:3]", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = started(stack)
    [run] = devstack.wait_for(lambda: runs_of(stack, ex).get("1"), 30, what="the task's check run")
    # Completing the task's check run (after the agent, beside the push) is asked to wait ten minutes.
    fault(stack, "PATCH", f"^/repos/{REPO}/check-runs/{run['id']}$", "secondary_rate_limit", retry_after=600,
          status=429)
    store = store_of(stack)
    devstack.wait_for(lambda: [e for e in history(stack, ex) if e["kind"] == "execution.deferred"], 60,
                      what="the step to be put off")
    waiting = store.get(ex.id)
    assert waiting.status is ExecutionStatus.AUTONOMOUS and never_blocked(stack, waiting)
    assert store.lease_holder(REPO) == ex.id  # the repository stays its own while it waits
    assert store.r.pttl(f"{stack.settings.namespace}:repo:{REPO}:lease") > 600_000
    assert "- [x] 1 Only" in git(stack, "show", f"{waiting.branch}:tasks_list.md")  # pushed, not thrown away
    # The step comes back through RQ's scheduler in ten minutes; here, now.
    connection = redis.Redis.from_url(stack.redis.url)
    registry = ScheduledJobRegistry(stack.settings.intake_queue, connection=connection)
    [job_id] = registry.get_job_ids()
    # Retry-After 600 is waited as 600.25 s (github_app.retries), then rounded up to RQ's next whole second.
    assert 590 < (registry.get_scheduled_time(job_id) - datetime.now(UTC)).total_seconds() <= 601.25
    registry.schedule(Job.fetch(job_id, connection=connection), datetime.now(UTC))
    ex = wait_settled(stack, timeout=60)
    assert_completed_once(stack, ex, 1)
    assert ex.attempts == 1  # the agent ran once: the next step found its commit on the branch
    assert git(stack, "log", "--format=%s", waiting.branch).count("clarity: 1 ") == 1
