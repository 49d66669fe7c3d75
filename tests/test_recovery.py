"""Recovery after lost workers: the reconciler against a real Redis, then real workers killed with SIGKILL.

The unit-level tests drive `jobs.recovery.reconcile` on states built in the store and in RQ; the
end-to-end test kills the steps worker of a running stack at random points (and once between its
`git push` and the store update) and checks that nothing was lost and nothing was done twice.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq import Queue, Worker

import devstack
from clarity.flags import Flag
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus as E
from clarity.status import TaskStatus as T
from clarity.store import Store
from github_app.reporting import Reporter
from jobs import context, publish, recovery, scheduler
from jobs.step import Step
from tests.conftest_forge import ForgeHandle
from tests.e2e import REPO, git, make_repo, own_workers_stack, store_of, tasks_md, wait_settled

LOST = "recovered after a worker was lost"


# -- the reconciler on states built by hand -------------------------------------------------------
@pytest.fixture
def engine(settings: Settings) -> context.Engine:
    return context.build(dataclasses.replace(settings, lease_ttl=2))


def execution(store: Store, status: E = E.TASK_EXECUTING, issue: int = 1, repo: str = REPO) -> Execution:
    """An execution walked to `status` the way the engine walks it, with task 1 in progress."""
    ex = store.create(Execution(id="", installation_id=1000, repo=repo, account="acme", issue_number=issue,
                                is_pull_request=False, branch=f"clarity/issue-{issue}", base_branch="main",
                                requester="ada"), actor="ada")
    path = {E.QUEUED: [], E.INITIALIZING: [E.INITIALIZING], E.AUTONOMOUS: [E.INITIALIZING, E.AUTONOMOUS],
            E.TASK_EXECUTING: [E.INITIALIZING, E.AUTONOMOUS, E.TASK_EXECUTING]}[status]
    for to in path:
        ex = store.transition(ex.id, to, "engine", tasks_total=2)
    if status is E.TASK_EXECUTING:
        store.set_task_status(ex.id, "1", T.IN_PROGRESS, title="One")
        ex = store.update(ex.id, current_task="1")
    return ex


def step_jobs(engine: context.Engine) -> list[tuple[str, ...]]:
    """Executions waiting for a worker; each has exactly one slot job on the steps queues."""
    ready = [(entry.execution_id,) for entry in scheduler.ready_order(engine)]
    assert scheduler.slots_queued(engine) == len(ready)
    return ready


def test_orphaned_execution_is_recovered_once_however_often_reconcile_runs(engine) -> None:
    ex = execution(engine.store)  # task-executing, no lease, no step job: its worker is gone
    reports: list[recovery.RecoveryReport] = []
    racers = [threading.Thread(target=lambda: reports.append(recovery.reconcile(engine))) for _ in range(3)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    reports.append(recovery.reconcile(engine))
    assert [r.recovered for r in reports if r.recovered] == [(ex.id,)]
    assert step_jobs(engine) == [(ex.id,)]
    after = engine.store.get(ex.id)
    assert (after.status, after.current_task) == (E.AUTONOMOUS, None)
    assert engine.store.task(ex.id, "1").status is T.PENDING
    assert engine.store.lease_holder(REPO) == ex.id
    assert any(LOST in line.get("message", "") for line in engine.store.log_lines(ex.id))


def test_execution_whose_step_is_queued_is_left_alone(engine) -> None:
    ex = execution(engine.store, E.AUTONOMOUS)  # between two steps, its lease lapsed in a long queue
    scheduler.enqueue_step(engine, ex.id)
    assert not recovery.reconcile(engine)
    assert engine.store.get(ex.id).status is E.AUTONOMOUS and step_jobs(engine) == [(ex.id,)]


def test_running_step_counts_while_its_worker_lives_and_not_after(engine) -> None:
    ex = execution(engine.store)
    scheduler.enqueue_step(engine, ex.id)
    worker = take_job_like_a_worker(engine.queue_for(5), engine.store)  # in this (live) process: pid and host are ours
    assert step_jobs(engine) == []  # the slot picked it: it is running, not waiting
    assert not recovery.reconcile(engine)
    assert engine.store.get(ex.id).status is E.TASK_EXECUTING

    engine.intake_queue.connection.hset(worker.key, "pid", dead_pid())  # as after a SIGKILL
    assert recovery.reconcile(engine).recovered == (ex.id,)
    assert engine.store.get(ex.id).status is E.AUTONOMOUS and step_jobs(engine) == [(ex.id,)]
    worker.register_death()  # RQ's worker keys are outside the test's namespace


def take_job_like_a_worker(queue: Queue, store: Store) -> Worker:
    """What an RQ worker does before it forks the work horse (dequeue, register the run, mark it
    started), then what the slot job does first (pick the execution)."""
    worker = Worker([queue], connection=queue.connection)
    worker.register_birth()
    found = Queue.dequeue_any([queue], None, connection=queue.connection)
    assert found is not None
    job, _queue = found
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    assert store.ready.take(job.id) is not None  # what the slot job does first
    return worker


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lease_held_by_the_execution_means_someone_works_on_it(engine) -> None:
    ex = execution(engine.store)
    engine.store.acquire_lease(REPO, ex.id, 60)
    assert not recovery.reconcile(engine)
    assert engine.store.get(ex.id).status is E.TASK_EXECUTING and step_jobs(engine) == []


def test_orphan_whose_repository_was_taken_meanwhile_goes_back_in_line(engine) -> None:
    ex = execution(engine.store)
    other = execution(engine.store, E.INITIALIZING, issue=2)
    engine.store.acquire_lease(REPO, other.id, 60)
    scheduler.enqueue_step(engine, other.id)
    assert recovery.reconcile(engine).requeued == (ex.id,)
    assert engine.store.get(ex.id).status is E.QUEUED and engine.store.waiting(REPO) == [ex.id]
    assert step_jobs(engine) == [(other.id,)]


def test_queued_execution_on_a_free_repository_is_started(engine) -> None:
    first = execution(engine.store, E.QUEUED, issue=1)
    second = execution(engine.store, E.QUEUED, issue=2)
    engine.store.enqueue_waiting(REPO, second.id)  # the line says second goes first; first lost its place
    report = recovery.reconcile(engine)
    assert (report.started, report.relined) == ((second.id,), (first.id,))
    assert engine.store.get(second.id).status is E.INITIALIZING and engine.store.lease_holder(REPO) == second.id
    assert step_jobs(engine) == [(second.id,)]
    assert engine.store.get(first.id).status is E.QUEUED and engine.store.waiting(REPO) == [first.id]
    assert not recovery.reconcile(engine)


def test_plan_is_decided_from_leases_jobs_and_lines() -> None:
    def ex(id_: str, status: E, repo: str = "a/b", created: float = 0.0) -> Execution:
        return Execution(id=id_, installation_id=1, repo=repo, account="a", issue_number=1, is_pull_request=False,
                         branch="x", base_branch="main", requester="ada", status=status, created_at=created)

    cases = [  # (executions, lease holders, live step jobs, lines) → (orphans, starts)
        ([ex("1", E.TASK_EXECUTING)], {"a/b": "1"}, set(), {}, ([], [])),
        ([ex("1", E.TASK_EXECUTING)], {}, {"1"}, {}, ([], [])),
        ([ex("1", E.ERROR_SOLVING)], {}, set(), {}, (["1"], [])),
        ([ex("1", E.INITIALIZING)], {"a/b": "2"}, set(), {}, (["1"], [])),
        ([ex("1", E.PAUSED), ex("2", E.BLOCKED), ex("3", E.COMPLETED)], {}, set(), {}, ([], [])),
        ([ex("1", E.QUEUED, created=1), ex("2", E.QUEUED, created=2)], {}, set(), {}, ([], ["1"])),
        ([ex("1", E.QUEUED, created=1), ex("2", E.QUEUED, created=2)], {}, set(), {"a/b": ["2", "1"]}, ([], ["2"])),
        ([ex("1", E.QUEUED)], {"a/b": "9"}, set(), {}, ([], [])),
        ([ex("1", E.QUEUED), ex("2", E.AUTONOMOUS)], {}, {"2"}, {}, ([], [])),   # its step is on its way
        ([ex("1", E.QUEUED), ex("2", E.AUTONOMOUS)], {}, set(), {}, (["2"], [])),  # the orphan comes first
        ([ex("1", E.QUEUED, "a/b"), ex("2", E.QUEUED, "c/d")], {"a/b": "7"}, set(), {}, ([], ["2"])),
    ]
    for executions, holders, live, lines, (orphans, starts) in cases:
        decided = recovery.plan(executions, holders, live, lines)
        assert ([e.id for e in decided.orphans], [e.id for e in decided.starts]) == (orphans, starts), executions
    three = [ex("1", E.QUEUED, created=1), ex("2", E.QUEUED, created=2), ex("3", E.QUEUED, created=3)]
    free = recovery.plan(three, {}, set(), {"a/b": ["2"]})
    assert ([e.id for e in free.starts], [e.id for e in free.relines]) == (["2"], ["1", "3"])
    busy = recovery.plan(three, {"a/b": "9"}, set(), {"a/b": ["1"]})
    assert ([e.id for e in busy.starts], [e.id for e in busy.relines]) == ([], ["2", "3"])


# -- a task pushed just before the worker died ----------------------------------------------------
@pytest.fixture
def forge_engine(forge: ForgeHandle, settings: Settings) -> context.Engine:
    forge.create_repo(REPO, {"tasks_list.md": tasks_md(("1", "One", False)), "README.md": "# widgets\n"})
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    return context.build(dataclasses.replace(
        settings, app_id=forge.app_id, private_key=forge.private_key_pem, github_api_url=forge.api_url,
        lease_ttl=2))


def push_task_commit(forge: ForgeHandle, tmp_path: Path, task_id: str, title: str) -> str:
    """What the lost step had done: tick the box and push `clarity: <id> <title>` to the branch."""
    bare = forge.config.repos_dir / "acme" / "widgets.git"
    clone = tmp_path / "lost-step"

    def run(*args: str) -> str:
        return subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    run("checkout", "-q", "-b", "clarity/issue-1")
    tasks = clone / "tasks_list.md"
    tasks.write_text(tasks.read_text().replace(f"- [ ] {task_id} ", f"- [x] {task_id} "))
    (clone / "done").mkdir()
    (clone / "done" / f"{task_id}.txt").write_text(f"ok {task_id}\n")
    run("add", "-A")
    run("-c", "user.name=clarity[bot]", "-c", "user.email=bot@example.com", "commit", "-q", "-m",
        f"clarity: {task_id} {title}")
    run("push", "-q", "origin", "clarity/issue-1")
    return run("rev-parse", "HEAD")


def test_task_pushed_before_the_crash_is_recorded_once_and_never_redone(forge_engine, forge, tmp_path) -> None:
    eng = forge_engine
    ex = execution(eng.store)
    eng.store.update(ex.id, tasks_total=1)
    installation = eng.github.installation_id_for(REPO)
    eng.store.update(ex.id, installation_id=installation)
    reporter = Reporter(eng.github.client(installation), REPO)
    main_sha = git_sha(forge, "main")
    check = reporter.start_check(main_sha, "Clarity: 1 One", "http://x", f"{ex.id}:1", "Running task 1.")
    eng.store.set_task_status(ex.id, "1", T.VERIFYING, check_run_id=check)
    sha = push_task_commit(forge, tmp_path, "1", "One")  # ... and the worker died before the store heard of it

    assert recovery.reconcile(eng).recovered == (ex.id,)
    assert eng.store.task(ex.id, "1").status is T.PENDING  # the table does not know yet; git does
    assert Step(eng, ex.id).run() == "completed: every task in the list is done"

    done = eng.store.get(ex.id)
    assert (done.status, done.tasks_completed, done.tasks_total) == (E.COMPLETED, 1, 1)
    progress = eng.store.task(ex.id, "1")
    assert (progress.status, progress.commit) == (T.COMPLETED, sha)
    subjects = [s for s in bare_git(forge, "log", "--format=%s", "clarity/issue-1").splitlines()
                if s.startswith("clarity:")]
    assert subjects == ["clarity: 1 One"]
    run = next(r for r in forge.admin("GET", "/state")[1]["check_runs"] if r["id"] == check)
    assert (run["status"], run["conclusion"]) == ("completed", "success")


def task_in_progress(eng: context.Engine, forge: ForgeHandle) -> tuple[Execution, Reporter, str]:
    """Task 1 of an execution in progress on the forge's repository: the execution, a reporter, main's sha."""
    ex = execution(eng.store)
    installation = eng.github.installation_id_for(REPO)
    ex = eng.store.update(ex.id, installation_id=installation)
    return ex, Reporter(eng.github.client(installation), REPO), git_sha(forge, "main")


def test_a_check_run_opened_while_the_agent_started_is_closed_when_its_worker_is_lost(forge_engine, forge) -> None:
    """The task's check run opens beside the agent; a worker lost before the row names it leaves none spinning."""
    eng = forge_engine
    ex, reporter, main = task_in_progress(eng, forge)  # its row without a check run yet
    check = reporter.start_check(main, "Clarity: 1 One", "http://x", f"{ex.id}:1", "Running task 1.")
    eng.store.record_check(ex.id, "1", check)  # what open_check wrote, then the worker died
    assert eng.store.task(ex.id, "1").check_run_id is None and eng.store.checks(ex.id) == {"1": check}

    assert recovery.reconcile(eng).recovered == (ex.id,)
    run = next(r for r in forge.admin("GET", "/state")[1]["check_runs"] if r["id"] == check)
    assert (run["status"], run["conclusion"]) == ("completed", "cancelled")
    eng.store.forget(ex.id)
    assert eng.store.checks(ex.id) == {}


def test_a_check_run_whose_answer_the_lost_worker_never_heard_is_found_and_closed(forge_engine, forge) -> None:
    """Lost while GitHub answered the POST: only the commit was noted; the run is found by its external id."""
    eng = forge_engine
    ex, reporter, main = task_in_progress(eng, forge)
    eng.store.record_check(ex.id, "1", sha=main)  # open_check's first write; then GitHub made the run
    lost = reporter.start_check(main, "Clarity: 1 One", "http://x", f"{ex.id}:1", "Running task 1.")
    other = reporter.start_check(main, "Clarity: 1 One", "http://x", "another-execution:1", "Not ours.")
    assert eng.store.checks(ex.id) == {"1": main}

    assert recovery.reconcile(eng).recovered == (ex.id,)
    runs = {r["id"]: r for r in forge.admin("GET", "/state")[1]["check_runs"]}
    assert (runs[lost]["status"], runs[lost]["conclusion"]) == ("completed", "cancelled")
    assert runs[other]["status"] == "in_progress"  # another execution's run is left alone


def test_a_summary_check_run_the_lost_worker_opened_but_never_recorded_is_ended(forge_engine, forge) -> None:
    eng = forge_engine
    ex, reporter, main = task_in_progress(eng, forge)
    recorded = reporter.start_check(main, "Clarity: run", "http://x", f"{ex.id}:", "1/2 tasks done")
    eng.store.update(ex.id, summary_check_id=recorded, summary_sha=main)
    eng.store.record_check(ex.id, publish.SUMMARY, sha=main)  # the next summary was asked for, then the worker died
    orphan = reporter.start_check(main, "Clarity: run", "http://x", f"{ex.id}:", "2/2 tasks done")

    assert recovery.reconcile(eng).recovered == (ex.id,)
    runs = {r["id"]: r for r in forge.admin("GET", "/state")[1]["check_runs"]}
    assert (runs[orphan]["status"], runs[orphan]["conclusion"]) == ("completed", "neutral")
    assert runs[recorded]["status"] == "in_progress"  # the execution's summary goes on


def bare_git(forge: ForgeHandle, *args: str) -> str:
    bare = forge.config.repos_dir / "acme" / "widgets.git"
    return subprocess.run(["git", f"--git-dir={bare}", *args], capture_output=True, text=True, check=True).stdout


def git_sha(forge: ForgeHandle, ref: str) -> str:
    return bare_git(forge, "rev-parse", ref).strip()


# -- real workers, killed -------------------------------------------------------------------------
HOLD_HOOK = """#!/bin/sh
# Hold the push of task {task} (once) until the test has killed the worker that made it.
while read old new ref; do
  case "$(git log -1 --format=%s "$new")" in
    "clarity: {task} "*)
      if [ -e "{trap}" ]; then
        rm -f "{trap}"; touch "{held}"; i=0
        while [ ! -e "{release}" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
      fi;;
  esac
done
exit 0
"""


@pytest.fixture
def crash_stack(redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    # Random kills may hit one task often: that guard has its own test.
    with own_workers_stack(redis_url, tmp_path, "rec", CLARITY_LEASE_TTL="2", CLARITY_MAX_RECOVERIES="100") as stack:
        yield stack


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    found: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            found[parent].append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """`pid`'s children, grandchildren, ..."""
    tree = children()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started, at once (as when its machine dies)."""
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


RANDOM_KILLS = 9  # and a tenth once the last task is in git, before the store hears of it


@pytest.mark.e2e
def test_killing_the_steps_worker_again_and_again_loses_nothing_and_repeats_nothing(crash_stack, tmp_path) -> None:
    stack = crash_stack
    # More tasks than kills: under load a kill cycle may let a task more through; the last is held.
    last = str(RANDOM_KILLS + 4)
    ids = [str(i) for i in range(1, RANDOM_KILLS + 5)]
    make_repo(stack, tmp_path, tasks_md(*((i, f"Part {i} [slow:1]", False) for i in ids)))
    bare = stack.forge.config.repos_dir / "acme" / "widgets.git"
    trap, held, release = tmp_path / "trap", tmp_path / "held", tmp_path / "release"
    hook = bare / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(HOLD_HOOK.format(task=last, trap=trap, held=held, release=release))
    hook.chmod(0o755)
    trap.touch()

    seed = int(os.environ.get("RECOVERY_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    store = store_of(stack)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    devstack.wait_for(lambda: store.executions(repo=REPO), 20, what="the execution to be created")
    worker = stack.start_worker(role="steps")
    kills: list[str] = []
    ex_id = store.executions(repo=REPO)[0].id

    def status() -> E:
        return store.get(ex_id).status

    def holding() -> bool:
        return held.exists() and not release.exists()

    def pause(seconds: float) -> None:
        """Sleep, but wake up for the held push or the end."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not holding() and not status().is_terminal:
            time.sleep(0.02)

    give_up = time.monotonic() + 150
    # A kill waits for a task attempt that started after the previous kill. Counted by the execution's
    # attempts, not by its status leaving task-executing: between two chained steps it does so for
    # milliseconds, which a poll can miss.
    attempts_at_kill = -1

    def armed() -> bool:
        return store.get(ex_id).attempts > attempts_at_kill

    while not status().is_terminal and not release.exists():
        assert time.monotonic() < give_up, f"no end in sight: seed {seed}, kills {kills}, see {stack.base}"
        if holding():
            kill_tree(worker.pid)  # the last task is in git; the store has not heard of it
            release.touch()
            kills.append(f"after the push of {last}")
        elif len(kills) >= RANDOM_KILLS or not armed() or status() is not E.TASK_EXECUTING:
            pause(0.05)  # after the random kills, only the held push is left
            continue
        else:
            # Somewhere in the agent, the checks, the commit or the push, or just after. An attempt takes
            # more than 1 s (the agent sleeps), so a kill lets at most one task through: all the random
            # ones come before the last task is pushed.
            pause(rng.uniform(0.0, 1.8))
            if holding() or status().is_terminal:
                continue
            attempts_at_kill = store.get(ex_id).attempts
            horse = children().get(worker.pid, [])  # RQ forks one work horse per job
            if horse and rng.random() < 0.3:
                kill_tree(horse[0])  # the work horse only: its worker lives on and recovers it itself
                kills.append("horse")
                continue
            kill_tree(worker.pid)
            kills.append("worker")
        worker.wait()
        worker = stack.start_worker(role="steps")

    ex = wait_settled(stack, timeout=60)
    why = f"seed {seed}, kills {kills}, see {stack.base}"
    assert ex.status is E.COMPLETED, f"{ex.reason} ({why})"
    assert len(kills) >= RANDOM_KILLS + 1 and kills[-1] == f"after the push of {last}", why
    assert (ex.tasks_completed, ex.tasks_total) == (len(ids), len(ids)), why

    subjects = [s for s in git(stack, "log", "--format=%s", "clarity/issue-1").splitlines() if s.startswith("clarity:")]
    assert sorted(collections.Counter(s.split()[1] for s in subjects).items()) == sorted((i, 1) for i in ids), why
    tasks = git(stack, "show", "clarity/issue-1:tasks_list.md")
    assert "- [ ]" not in tasks and tasks.count("- [x]") == len(ids), why
    outcomes = git(stack, "show", "clarity/issue-1:task_outcomes.md")
    assert [outcomes.count(f"## {i} Part {i}") for i in ids] == [1] * len(ids), why

    table = store.tasks(ex.id)
    shas = dict(line.split(" ", 1)[::-1] for line in git(stack, "log", "--format=%H %s", "clarity/issue-1")
                .splitlines() if line.split(" ", 1)[1].startswith("clarity:"))
    assert {t.task_id: (t.status, t.commit) for t in table.values()} == {
        i: (T.COMPLETED, shas[f"clarity: {i} Part {i} [slow:1]"]) for i in ids}, why
    lines = [line.get("message", "") for line in store.log_lines(ex.id, 5000)]
    assert any(LOST in line for line in lines), why
    assert any(line.startswith(f"task {last}: found done on") for line in lines), why
    runs = stack.admin("GET", "/state")["check_runs"]
    assert all(any(r["name"].startswith(f"Clarity: {i} ") and r["conclusion"] == "success" for r in runs)
               for i in ids), why
    spinning = [(r["name"], r["id"]) for r in runs if r["status"] != "completed"]
    assert spinning == [], (spinning, why)  # no check run a lost worker opened is left running


EPHEMERAL = ("rq:*{ns}:*", "{ns}:ready*", "{ns}:slot:*", "{ns}:served*", "{ns}:repo:*:lease", "{ns}:recovery:*",
             "{ns}:repo:*:waiting")


@pytest.mark.e2e
def test_lost_queues_and_leases_are_rebuilt_and_the_execution_resumes_from_git(crash_stack, tmp_path) -> None:
    """Redis restarted without its queue state (or an operator flushed it) while the workers were down."""
    stack = crash_stack
    ids = ["1", "2", "3", "4"]
    make_repo(stack, tmp_path, tasks_md(*((i, f"Part {i} [slow:1]", False) for i in ids)))
    store = store_of(stack)
    stack.comment(REPO, 1, "/clarity run", user="ada")
    devstack.wait_for(lambda: store.executions(repo=REPO), 20, what="the execution to be created")
    ex_id = store.executions(repo=REPO)[0].id
    worker = stack.start_worker(role="steps")
    devstack.wait_for(lambda: store.get(ex_id).tasks_completed >= 1 and store.get(ex_id).status is E.TASK_EXECUTING,
                      60, interval=0.02, what="task 2 to be under way")
    kill_tree(worker.pid)
    worker.wait()

    client = store.r
    ns = stack.settings.namespace
    gone = [key for pattern in EPHEMERAL for key in client.scan_iter(pattern.format(ns=ns), count=1000)]
    assert any(key.endswith(":lease") for key in gone) or any(key.startswith("rq:") for key in gone)
    client.delete(*gone)

    stack.start_worker(role="steps")
    ex = wait_settled(stack, timeout=90)
    why = f"see {stack.base}"
    assert ex.status is E.COMPLETED and (ex.tasks_completed, ex.tasks_total) == (4, 4), f"{ex.reason} ({why})"
    subjects = [s for s in git(stack, "log", "--format=%s", "clarity/issue-1").splitlines() if s.startswith("clarity:")]
    assert sorted(s.split()[1] for s in subjects) == ids, why  # each task once: nothing lost, nothing repeated
    assert any("recovered after a worker was lost" in line.get("message", "") for line in store.log_lines(ex.id))


def test_a_task_that_loses_its_worker_again_and_again_blocks_instead_of_looping(engine) -> None:
    ex = execution(engine.store)  # task 1 in progress, its worker gone
    for loss in range(1, engine.settings.max_recoveries):
        assert recovery.reconcile(engine, confirm=0).recovered == (ex.id,), f"loss {loss}"
        engine.store.ready.remove(ex.id)  # the recovered step "runs" and loses its worker again:
        engine.store.release_lease(REPO, ex.id)
        engine.store.transition(ex.id, E.TASK_EXECUTING, "engine")
        engine.store.set_task_status(ex.id, "1", T.IN_PROGRESS)
        engine.store.r.delete(f"{engine.settings.namespace}:recovery:claim:{ex.id}")
    report = recovery.reconcile(engine, confirm=0)
    assert report.blocked == (ex.id,) and not report.recovered
    after = engine.store.get(ex.id)
    assert after.status is E.BLOCKED and "lost 3 times" in after.reason
    task = engine.store.task(ex.id, "1")
    assert (task.status, task.error_class) == (T.FAILED, "infra")
    assert engine.store.ready.entries() == [] and engine.store.lease_holder(REPO) is None

    # A person's retry gives the task a fresh count.
    engine.store.reset_recoveries(ex.id, "1")
    assert engine.store.count_recovery(ex.id, "1") == 1


def test_a_step_that_finds_the_stop_flag_before_starting_stops_the_execution(forge_engine) -> None:
    ex = execution(forge_engine.store, E.AUTONOMOUS)
    forge_engine.store.set_flag(ex.id, Flag.STOP, "ada")
    outcome = Step(forge_engine, ex.id).run()
    stopped = forge_engine.store.get(ex.id)
    assert (stopped.status, stopped.reason) == (E.STOPPED, "stopped by @ada"), outcome
    assert forge_engine.store.lease_holder(REPO) is None  # the repository is free for the next one
