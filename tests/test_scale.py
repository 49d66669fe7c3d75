"""Many customers at once: 10 repositories of 3 installations on 2 workers, 20 more runs waiting in line.

Everything goes through the real pipeline (forge webhooks, intake, RQ workers in their own processes,
git pushes), and the assertions read the audit stream, which records every step's start and end.
"""

from __future__ import annotations

import collections
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import devstack
from clarity.status import ExecutionStatus as E
from tests.conftest import AGENT
from tests.e2e import git, make_repo, store_of, tasks_md

pytestmark = pytest.mark.e2e

# Installation acme runs six repositories, globex three, initech one (its repository comes last):
# served first come first, initech would wait for nine others; served per customer, it goes third.
ACCOUNTS = {"acme": 6, "globex": 3, "initech": 1}
RUNS_PER_REPO = 3


def test_ten_repositories_share_two_workers_fairly_and_never_step_one_repository_twice_at_once(
        redis_url: str, tmp_path: Path) -> None:
    stack = devstack.start(tmp_path / "stack", redis_url, workers=0,
                           agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                           namespace=f"scale-{uuid.uuid4().hex[:8]}", extra_env={"CLARITY_RETRY_BACKOFF": "0.05"})
    try:
        _run(stack, tmp_path)
    finally:
        stack.forget()
        stack.stop()


def _run(stack: devstack.Stack, tmp_path: Path) -> None:
    store = store_of(stack)
    repos = [f"{account}/repo{i}" for account, count in ACCOUNTS.items() for i in range(count)]
    for repo in repos:
        make_repo(stack, tmp_path, tasks_md(("1", "One", False)), name=repo)
    stack.start_worker(role="intake")  # no steps worker yet: every run is in place before the first step
    for issue in range(1, RUNS_PER_REPO + 1):
        for repo in repos:
            stack.comment(repo, issue, "/clarity run", user="ada")

    def everyone_in_place() -> Any:
        statuses = collections.Counter(e.status for e in store.executions(limit=100))
        return statuses if statuses == {E.INITIALIZING: 10, E.QUEUED: 20} else None

    devstack.wait_for(everyone_in_place, 60, what="10 executions ready and 20 waiting in their repositories' lines")
    stack.start_worker(role="steps")
    stack.start_worker(role="steps")

    def all_done() -> Any:
        # An execution ends inside its last step, which then records its own end: wait for both.
        executions = store.executions(limit=100)
        kinds = collections.Counter(a["kind"] for a in store.audit(count=20000))
        settled = all(e.status.is_terminal for e in executions) and kinds["step.started"] == kinds["step.finished"]
        return executions if settled else None

    executions = devstack.wait_for(all_done, 240, interval=0.5, what=f"30 executions to end (see {stack.base})")
    assert [e.status for e in executions] == [E.COMPLETED] * 30, [(e.id, e.status, e.reason) for e in executions]
    for repo in repos:  # each run did its one task once, on its own branch
        for issue in range(1, RUNS_PER_REPO + 1):
            subjects = git(stack, "log", "--format=%s", f"clarity/issue-{issue}", repo=repo).splitlines()
            assert [s for s in subjects if s.startswith("clarity:")] == ["clarity: 1 One"], (repo, issue)

    steps = [a for a in reversed(store.audit(count=20000)) if a["kind"] in ("step.started", "step.finished")]
    assert len({a["worker"] for a in steps}) == 2, "both workers took steps"
    _assert_one_step_at_a_time_per_repository(steps)
    started = [a for a in steps if a["kind"] == "step.started"]
    assert len(started) == 60  # 30 runs × (the task, then the step that concludes)
    first_turns = [a["repo"].split("/")[0] for a in started[:3]]
    assert sorted(first_turns) == sorted(ACCOUNTS), f"round-robin across customers: {first_turns}"


def _assert_one_step_at_a_time_per_repository(steps: list[dict[str, Any]]) -> None:
    """In stream order, each repository's steps alternate started/finished, with the same job."""
    running: dict[str, str] = {}
    for record in steps:
        repo, job = record["repo"], record["job"]
        if record["kind"] == "step.started":
            assert repo not in running, f"{repo}: job {job} started while job {running.get(repo)} ran"
            running[repo] = job
        else:
            assert running.pop(repo, None) == job, f"{repo}: job {job} finished without having started"
    assert not running, [(r["kind"], r["job"], r["execution"], r.get("outcome")) for r in steps
                         if r["repo"] in running]
