"""A slot job takes its execution's next step itself while nobody else waits (jobs.chaining).

What DESIGN §1's one task per job protects stays true: every task is recorded before the next
starts, another customer's execution never waits behind a chain, and a worker asked to stop ends
its chain after the step in hand. What it saves: the hand-off between steps and the fetch that
starts one (the workspace is at the commit the job has just pushed); someone else's push in
between makes ours fail, which pauses the execution instead of blocking it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import devstack
from clarity.status import ExecutionStatus as E
from clarity.store import Store
from jobs import chaining
from runner.workspace import Workspace
from tests.e2e import (
    REPO,
    branch_file,
    make_repo,
    own_workers_stack,
    seeded_origin,
    store_of,
    tasks_md,
    wait_settled,
)

from .test_engine_overhead import subcommand


# -- the ready set's part ---------------------------------------------------------------------------
def test_keep_holds_the_execution_only_while_nobody_waits_and_counts_the_turn(store: Store) -> None:
    ready = store.ready
    ready.add("b1", 5, 2)
    assert ready.take("j0") == "b1"  # installation 2 served: turn 1
    assert ready.take("j1") is None
    assert ready.keep("j1", "a1", 1)  # nobody waits: j1 steps a1 again, installation 1 served: turn 2
    assert ready.slot("j1") == "a1" and ready.served() == {2: 1, 1: 2}

    ready.add("a2", 5, 1)
    ready.add("b2", 5, 2)
    assert not ready.keep("j1", "a1", 1)  # others wait: the chain ends, a1 goes back in line
    assert ready.served() == {2: 1, 1: 2} and {e.execution_id for e in ready.entries()} == {"a2", "b2"}
    assert ready.take("j2") == "b2"  # installation 1 was served last (by the kept turn)


def test_budget_allows_another_step_only_with_time_for_a_whole_one(monkeypatch) -> None:
    assert chaining.JobTimeLeft(None, 10**6).allows() and chaining.JobTimeLeft(-1, 10**6).allows()  # RQ: no timeout
    assert chaining.JobTimeLeft(1000, 900).allows()  # 1000 s ≥ 900 s + the 60 s margin
    assert not chaining.JobTimeLeft(1000, 950).allows()
    late = chaining.JobTimeLeft(1000, 500)
    late.started -= 450  # 550 s left: not enough for 500 + 60
    assert not late.allows()

    orphan = chaining.JobTimeLeft(None, 1)
    monkeypatch.setattr(os, "getppid", lambda: orphan.parent + 1)  # the worker that forked us is gone
    assert not orphan.allows()
    monkeypatch.undo()

    chaining.winding_down.set()
    try:
        assert not chaining.JobTimeLeft(None, 1).allows()
    finally:
        chaining.winding_down.clear()


def test_the_worst_case_of_a_step_follows_the_settings(settings) -> None:
    assert chaining.step_worst_case(settings) == settings.task_timeout * (settings.retries + 2)


# -- the workspace's part ---------------------------------------------------------------------------
@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return seeded_origin(tmp_path)


def test_resume_checks_out_the_pushed_commit_in_two_git_processes_and_asks_no_remote(
        tmp_path: Path, origin: Path) -> None:
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)
    root = ws.sync("clarity/issue-1", "main")
    ws.write("1.txt", b"task 1\n")
    sha = ws.commit("clarity: 1 Task")
    assert sha
    ws.push("clarity/issue-1")
    ws.write("x.txt", b"leftover\n")  # what the next agent must not see
    ws.write("README.md", b"changed\n")
    ws.write("debug.log", b"ignored\n")
    subprocess.run(["git", f"--git-dir={origin}", "update-ref", "refs/heads/other", sha], check=True)
    before = len(ws.calls)
    assert ws.resume("clarity/issue-1", sha) == root
    assert [subcommand(argv) for argv in ws.calls[before:]] == ["checkout", "clean"]
    assert ws.changed_files() == [] and not (root / "debug.log").exists()
    assert ws.head_sha() == ws.synced_sha == sha
    assert (root / "README.md").read_text() == "# app\n"

    with pytest.raises(Exception, match="no workspace"):
        Workspace(tmp_path / "ws" / "acme" / "none", str(origin), None).resume("clarity/issue-1", sha)


# -- the whole engine -------------------------------------------------------------------------------
@pytest.fixture
def steps_stack(redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    with own_workers_stack(redis_url, tmp_path, "chain") as stack:
        yield stack


def step_jobs(store: Store, execution_id: str) -> list[str]:
    """The RQ job of each step of the execution, in order (from the audit stream)."""
    return [e["job"] for e in store.log_lines(execution_id, 5000) if e.get("kind") == "step.started"]


def fetches(stack: devstack.Stack) -> int:
    """The ref advertisements for fetches (`git-upload-pack`) the forge served for the repository."""
    return sum(1 for c in stack.admin("GET", "/calls") if c["surface"] == "git" and REPO in c["path"]
               and c["path"].endswith("/info/refs") and c["query"].get("service") == "git-upload-pack")


@pytest.mark.e2e
def test_an_execution_nobody_competes_with_runs_its_steps_in_one_job_fetching_once(
        steps_stack: devstack.Stack, tmp_path: Path) -> None:
    stack = steps_stack
    make_repo(stack, tmp_path, tasks_md(*((str(i), f"Task {i}", False) for i in range(1, 5))))
    stack.start_worker(role="steps")
    stack.admin("DELETE", "/calls")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is E.COMPLETED, ex.reason
    assert (ex.tasks_completed, ex.tasks_total) == (4, 4)
    store = store_of(stack)
    jobs = step_jobs(store, ex.id)
    assert len(jobs) == 5 and len(set(jobs)) == 1, jobs  # four tasks and the concluding step, one job
    assert fetches(stack) == 1  # the first step synced; the others went on from their own push
    assert branch_file(stack, "tasks_list.md").count("- [x]") == 4
    assert [t.status.value for t in store.tasks(ex.id).values()] == ["completed"] * 4


@pytest.mark.e2e
def test_a_waiting_customer_ends_the_chain_and_the_two_take_turns(steps_stack: devstack.Stack, tmp_path: Path) -> None:
    stack = steps_stack
    other = "zeta/gadgets"
    make_repo(stack, tmp_path, tasks_md(*((str(i), f"Task {i} [slow:1]", False) for i in range(1, 4))))
    make_repo(stack, tmp_path, tasks_md(*((str(i), f"Task {i} [slow:1]", False) for i in range(1, 4))), name=other,
              collaborators={"ada": "write"})
    stack.comment(REPO, 1, "/clarity run", user="ada")
    stack.comment(other, 1, "/clarity run", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: len(store.ready.entries()) == 2, 20, what="both executions to wait for a worker")
    stack.start_worker(role="steps")  # one worker for both
    first, second = wait_settled(stack), wait_settled(stack, repo=other)
    assert first.status is E.COMPLETED and second.status is E.COMPLETED
    steps = sorted((e["time"], e["execution"]) for x in (first, second)
                   for e in store.log_lines(x.id, 5000) if e.get("kind") == "step.started")
    order = [execution for _, execution in steps]
    # Turns alternate while both have work: neither runs two tasks in a row while the other waits.
    assert order[:6] in ([first.id, second.id] * 3, [second.id, first.id] * 3), order


@pytest.mark.e2e
def test_a_worker_asked_to_stop_ends_its_chain_after_the_step_in_hand(steps_stack: devstack.Stack,
                                                                     tmp_path: Path) -> None:
    stack = steps_stack
    make_repo(stack, tmp_path, tasks_md(*((str(i), f"Task {i} [slow:1]", False) for i in range(1, 5))))
    worker = stack.start_worker(role="steps")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: any(e.current_task == "2" for e in store.executions(repo=REPO)), 30,
                      what="task 2 to start")
    worker.send_signal(signal.SIGTERM)  # a deploy: warm shutdown
    assert worker.wait(timeout=30) == 0
    ex = store.executions(repo=REPO)[0]
    assert not ex.status.is_terminal and ex.tasks_completed == 2, (ex.status, ex.tasks_completed)
    assert ex.id in {e.execution_id for e in store.ready.entries()}  # back in line, with a slot queued
    stack.start_worker(role="steps")  # the next worker takes it from there
    done = wait_settled(stack, timeout=60)
    assert done.status is E.COMPLETED and done.tasks_completed == 4
    jobs = step_jobs(store, done.id)
    assert len(set(jobs)) == 2 and jobs[:2] == [jobs[0]] * 2 and jobs[2] != jobs[0], jobs


@pytest.mark.e2e
def test_someone_elses_push_during_a_task_pauses_the_execution_and_resume_goes_on_from_it(
        steps_stack: devstack.Stack, tmp_path: Path) -> None:
    stack = steps_stack
    make_repo(stack, tmp_path, tasks_md(("1", "First", False), ("2", "Second [slow:2]", False), ("3", "Third", False)))
    stack.start_worker(role="steps")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: any(e.current_task == "2" for e in store.executions(repo=REPO)), 30,
                      what="task 2 to start")
    # Grace pushes to the branch while the agent works on task 2 (the forge sends no push webhook here).
    bare = stack.forge.config.repos_dir / "acme" / "widgets.git"
    clone = tmp_path / "grace"
    subprocess.run(["git", "clone", "-q", "-b", "clarity/issue-1", str(bare), str(clone)], check=True)
    (clone / "NOTES.md").write_text("grace was here\n")
    subprocess.run(["git", "-C", str(clone), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(clone), "-c", "user.name=grace", "-c", "user.email=g@example.com", "commit", "-q",
                    "-m", "notes"], check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "clarity/issue-1"], check=True)

    ex = wait_settled(stack)
    assert ex.status is E.PAUSED and "the branch moved on GitHub" in ex.reason, ex.reason
    assert store.task(ex.id, "2").status.value == "pending" and ex.tasks_completed == 1
    runs = {r["id"]: r for r in stack.admin("GET", "/state")["check_runs"]}
    task2 = runs[store.task(ex.id, "2").check_run_id]
    assert (task2["status"], task2["conclusion"]) == ("completed", "neutral")  # never shown done
    assert "- [ ] 2 " in branch_file(stack, "tasks_list.md")  # their commit is the branch, ours never forced

    stack.comment(REPO, 1, "/clarity resume", user="ada")
    done = wait_settled(stack, since=ex.finished_at)
    assert done.status is E.COMPLETED, done.reason
    assert branch_file(stack, "NOTES.md") == "grace was here\n"  # kept
    assert branch_file(stack, "tasks_list.md").count("- [x]") == 3


@pytest.mark.e2e
def test_workers_asked_to_stop_are_gone_in_seconds(steps_stack: devstack.Stack) -> None:
    """RQ's pub/sub thread could hold a stopping worker for a minute (jobs.worker.SteadyWorker.unsubscribe)."""
    import redis
    from rq import Worker

    stack = steps_stack
    workers = [stack.start_worker(role="steps") for _ in range(3)]
    conn = redis.Redis.from_url(stack.redis.url)
    prefix = f"{stack.settings.namespace}:steps"

    def listening() -> bool:
        return sum(1 for w in Worker.all(connection=conn) if any(q.name.startswith(prefix) for q in w.queues)) == 3

    devstack.wait_for(listening, 30, interval=0.1, what="three steps workers to listen")
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert [worker.wait(timeout=20) for worker in workers] == [0, 0, 0]
    assert time.monotonic() - started < 8
