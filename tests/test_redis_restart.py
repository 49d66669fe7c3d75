"""A Redis restart while a step runs loses nothing and repeats nothing (issue 4).

The lease a step holds names the step (clarity.leases): a step whose lease another step took is
cancelled and abandons its work without touching the execution; one whose lease lapsed (Redis came
back without the expired key) takes it again unless the execution was recovered meanwhile. The
end-to-end test crashes a private Redis (append-only file, fsync always) in the middle of a task,
keeps it down longer than the lease, starts it again, and checks that the run completes with every
task committed once and every acknowledged command answered once, on workers that never restarted.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import devstack
from clarity import leases
from clarity.settings import Settings
from clarity.status import ExecutionStatus as E
from clarity.status import TaskStatus as T
from clarity.store import Store
from devstack import localredis
from jobs import context, heartbeat
from jobs.step import Step
from runner.workspace import git_dir_of
from tests.conftest import AGENT
from tests.conftest_forge import ForgeHandle
from tests.e2e import REPO, git, make_repo, store_of, tasks_md, wait_comment, wait_settled
from tests.test_recovery import bare_git, execution

STATUS_REPLY = "| task | title | status | attempts |"
HELP_REPLY = "| command | what it does |"


@pytest.fixture
def engine(settings: Settings) -> context.Engine:
    return context.build(dataclasses.replace(settings, lease_ttl=2))


def lease_key(store: Store) -> str:
    return f"{store.namespace}:repo:{REPO}:lease"


# -- the lease: who may take, keep and give it back -------------------------------------------------
def test_a_step_takes_its_executions_lease_over_but_never_another_steps(store: Store) -> None:
    assert store.acquire_lease(REPO, "e1", 60)  # the scheduler, for the execution
    assert store.acquire_lease(REPO, "e1", 60, token="s1")  # its step takes it over
    assert (store.lease_holder(REPO), store.lease_step(REPO)) == ("e1", "s1")
    assert not store.acquire_lease(REPO, "e1", 60, token="s2")  # a second step of it: refused
    assert not store.acquire_lease(REPO, "e2", 60)  # another execution: refused
    assert store.acquire_lease(REPO, "e1", 60) and store.lease_step(REPO) == "s1"  # renewed as it is
    assert store.keep_lease(REPO, "e1", "s2", 60) == "lost"
    assert store.keep_lease(REPO, "e1", "s1", 60) == "renewed"
    assert not store.release_lease(REPO, "e1", token="s2") and store.lease_step(REPO) == "s1"
    assert store.hand_back_lease(REPO, "e1", "s1")
    assert store.r.get(lease_key(store)) == "e1" and 0 < store.r.pttl(lease_key(store)) <= 60_000
    assert store.acquire_lease(REPO, "e1", 60, token="s2")  # the next step
    assert store.release_lease(REPO, "e1") and store.lease_holder(REPO) is None


def test_a_lapsed_lease_goes_back_only_to_the_step_nobody_replaced(store: Store) -> None:
    assert store.acquire_lease(REPO, "e1", 60, token="s1")
    store.r.delete(lease_key(store))  # expired while Redis was down
    assert store.keep_lease(REPO, "e1", "s1", 60) == "retaken"
    assert store.lease_step(REPO) == "s1"
    store.r.delete(lease_key(store))
    assert store.take_free_lease(REPO, "e1", 60)  # recovery got there first...
    assert not store.take_free_lease(REPO, "e1", 60)
    store.release_lease(REPO, "e1")  # ... and the lease lapsed again while its new step waited
    assert store.keep_lease(REPO, "e1", "s1", 60) == "lost"
    assert store.lease_holder(REPO) is None


# -- the heartbeat ---------------------------------------------------------------------------------
def test_a_heartbeat_whose_lease_another_step_took_cancels_its_step(engine: context.Engine) -> None:
    store = engine.store
    ex = execution(store)
    cancel = threading.Event()
    with pytest.raises(heartbeat.LeaseLost, match="another step of this execution"), \
            heartbeat.beating(engine, ex, cancel) as hold:
        store.r.set(lease_key(store), leases.value(ex.id, "other"), px=60_000)
        devstack.wait_for(cancel.is_set, 3, interval=0.02, what="the step to be cancelled")
        assert hold.lost.is_set()
    assert store.r.get(lease_key(store)) == f"{ex.id}/other"  # the other step keeps it


def test_a_step_cannot_start_under_a_lease_another_step_holds(engine: context.Engine) -> None:
    store = engine.store
    ex = execution(store)
    assert store.acquire_lease(REPO, ex.id, 60, token="first")
    with pytest.raises(heartbeat.LeaseLost), heartbeat.beating(engine, ex, threading.Event()):
        pytest.fail("the block must not run")
    assert store.lease_step(REPO) == "first"


def test_a_lapsed_lease_is_taken_again_and_handed_back_when_the_step_ends(engine: context.Engine) -> None:
    store = engine.store
    ex = execution(store)
    cancel = threading.Event()
    with heartbeat.beating(engine, ex, cancel) as hold:
        assert store.lease_step(REPO) == hold.token
        store.r.delete(lease_key(store))  # Redis restarted after the key's expiry
        devstack.wait_for(lambda: store.lease_step(REPO) == hold.token, 3, interval=0.02,
                          what="the lease to be taken again")
        time.sleep(0.6)  # another beat or two
        assert not cancel.is_set() and not hold.lost.is_set()
    assert store.r.get(lease_key(store)) == ex.id  # the execution's again, for its next step


def test_a_step_whose_execution_was_recovered_meanwhile_does_not_take_the_lease_again(
        engine: context.Engine) -> None:
    store = engine.store
    ex = execution(store)
    cancel = threading.Event()
    with pytest.raises(heartbeat.LeaseLost), heartbeat.beating(engine, ex, cancel):
        store.r.delete(lease_key(store))
        assert store.take_free_lease(REPO, ex.id, 60)  # the reconciler
        store.release_lease(REPO, ex.id)
        devstack.wait_for(cancel.is_set, 3, interval=0.02, what="the step to be cancelled")
    assert store.lease_holder(REPO) is None


def test_redis_lost_under_a_step_abandons_it_and_frees_the_lease(engine: context.Engine) -> None:
    store = engine.store
    ex = execution(store)
    with pytest.raises(heartbeat.LeaseLost, match="Redis was lost"), \
            heartbeat.beating(engine, ex, threading.Event()):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert store.lease_holder(REPO) is None  # recovery may take the execution at once


# -- a real step whose lease is taken over ---------------------------------------------------------
@pytest.fixture
def slow_engine(forge: ForgeHandle, settings: Settings) -> context.Engine:
    forge.create_repo(REPO, {"tasks_list.md": tasks_md(("1", "One [slow:10]", False), ("2", "Two", False)),
                             "README.md": "# widgets\n"})
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    return context.build(dataclasses.replace(
        settings, app_id=forge.app_id, private_key=forge.private_key_pem, github_api_url=forge.api_url,
        lease_ttl=2, agent_command=f"{sys.executable} {AGENT} {{prompt_file}}", retry_backoff=0.05))


def test_a_step_whose_lease_another_step_took_abandons_its_task_and_leaves_the_execution_alone(
        slow_engine: context.Engine, forge: ForgeHandle) -> None:
    eng, store = slow_engine, slow_engine.store
    ex = execution(store, E.INITIALIZING)
    store.update(ex.id, installation_id=eng.github.installation_id_for(REPO))
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(Step(eng, ex.id).run()))
    runner.start()
    try:
        devstack.wait_for(lambda: any(line.get("message") == "task 1: attempt 1 started"
                                      for line in store.log_lines(ex.id)), 30, interval=0.05,
                          what="the agent to run")
        # What the reconciler and a second step do after the first one's lease lapsed.
        store.r.delete(lease_key(store))
        assert store.take_free_lease(REPO, ex.id, 60)
        assert store.acquire_lease(REPO, ex.id, 60, token="second")
        took_over = time.monotonic()
    finally:
        runner.join(30)
    assert outcome and outcome[0].startswith("abandoned:"), outcome
    assert time.monotonic() - took_over < 6  # the agent (10 s of sleep) was killed, not waited for

    after = store.get(ex.id)
    assert (after.status, after.current_task, after.tasks_completed) == (E.TASK_EXECUTING, "1", 0)
    assert store.task(ex.id, "1").status is T.IN_PROGRESS  # the second step's to settle, not this one's
    messages = [line.get("message", "") for line in store.log_lines(ex.id)]
    assert not any(m.startswith("execution ") for m in messages), messages  # not stopped, not blocked
    assert store.ready.entries() == []  # nor made ready again: the second step does that
    assert store.lease_step(REPO) == "second"
    assert next(a["outcome"] for a in store.audit(count=100) if a["kind"] == "step.finished") \
        .startswith("abandoned:")
    assert "clarity: 1 " not in bare_git(forge, "log", "--format=%s", "--all")
    workspace = eng.settings.workspaces_dir / REPO
    assert git_status(workspace) == ""  # nothing the agent or the step left behind


def git_status(workspace: Path) -> str:
    return subprocess.run(["git", "--git-dir", str(git_dir_of(workspace)), "--work-tree", str(workspace), "-C",
                           str(workspace), "status", "--porcelain"], capture_output=True, text=True,
                          check=True).stdout


# -- the whole product through a Redis crash -------------------------------------------------------
@dataclasses.dataclass
class AofRedis:
    """A private redis-server with an append-only file synced on every write, restartable in place."""

    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", "always", "--save", "", "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        devstack.wait_for(lambda: localredis.reachable(self.url, 0.2), 10, interval=0.02, what="redis-server")

    def crash(self) -> None:
        """SIGKILL: nothing flushed on the way out; the fsync'ed append-only file is all that is left."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextlib.contextmanager
def stack_on_own_redis(tmp_path: Path, prefix: str, **extra_env: str) -> Iterator[tuple[devstack.Stack, AofRedis]]:
    """A stack (no workers started) on a Redis server of its own, which the test may kill and restart."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH")
    server = AofRedis(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    stack = None
    try:
        stack = devstack.start(tmp_path / "stack", server.url, agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                               workers=0, namespace=f"{prefix}-{uuid.uuid4().hex[:8]}",
                               extra_env={"CLARITY_RETRY_BACKOFF": "0.05", **extra_env})
        yield stack, server
    finally:
        if stack is not None:
            stack.stop()
        server.stop()


@pytest.fixture
def aof_stack(tmp_path: Path) -> Iterator[tuple[devstack.Stack, AofRedis]]:
    with stack_on_own_redis(tmp_path, "rr", CLARITY_LEASE_TTL="2") as running:
        yield running


DOWN = 3.0  # seconds Redis stays down: longer than the lease (2 s), so the step's lease key expires


@pytest.mark.e2e
def test_redis_crashing_mid_task_and_coming_back_after_the_lease_expired_loses_and_repeats_nothing(
        aof_stack: tuple[devstack.Stack, AofRedis], tmp_path: Path) -> None:
    """Two crashes. During task 1 the agent sleeps through the outage: the step rides it out and takes
    its lapsed lease again. During task 2 the agent ends mid-outage and the step finds Redis gone: it
    abandons the task, and the reconciler has it done again once Redis is back."""
    stack, server = aof_stack
    make_repo(stack, tmp_path, tasks_md(("1", "Part 1 [slow:6]", False), ("2", "Part 2 [slow:1.5]", False),
                                        ("3", "Part 3 [slow:1]", False)))
    store = store_of(stack)
    intake = stack.start_worker(role="intake")
    steps = stack.start_worker(role="steps")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex_id = devstack.wait_for(lambda: [e.id for e in store.executions(repo=REPO)], 20,
                              what="the execution to be created")[0]
    why = f"see {stack.base}"

    def started(task: str) -> int:  # attempts count on across a recovered step: the redo is attempt 2
        pattern = re.compile(rf"task {re.escape(task)}: attempt \d+ started")
        return sum(bool(pattern.fullmatch(line.get("message") or "")) for line in store.log_lines(ex_id, 5000))

    devstack.wait_for(lambda: started("1"), 60, interval=0.02, what=f"task 1's agent to run ({why})")
    # A command acknowledged now waits in the intake queue: the intake worker is gone and the steps
    # worker is busy with task 1 until after the outage.
    intake.terminate()
    intake.wait(10)
    before = stack.comment(REPO, 1, "/clarity status", user="ada")
    assert before["status_code"] == 202, before

    server.crash()
    down_at = time.monotonic()
    during: list[dict[str, Any]] = []  # a webhook while Redis is down: acknowledged or refused, never lost
    sender = threading.Thread(target=lambda: during.append(stack.comment(REPO, 1, "/clarity help", user="ada")))
    sender.start()
    time.sleep(max(0.0, down_at + DOWN - time.monotonic()))
    server.start()
    assert store.get(ex_id).status is E.TASK_EXECUTING  # the append-only file kept it all
    # The key expired while Redis was down; the step (its agent still asleep) takes it again.
    devstack.wait_for(lambda: store.lease_step(REPO), 3, interval=0.02, what=f"the lease to be taken again ({why})")
    assert store.lease_holder(REPO) == ex_id and store.task(ex_id, "1").status is not T.COMPLETED
    sender.join(30)
    assert during, "the webhook sent during the outage got no answer"
    if during[0]["status_code"] != 202:
        assert during[0]["status_code"] >= 500, during[0]  # not acknowledged: redelivered (jobs.redelivery; by hand here)
        again = stack.admin("POST", f"/redeliver/{during[0]['delivery_id']}")
        assert again["status_code"] == 202, again

    devstack.wait_for(lambda: started("2"), 60, interval=0.02, what=f"task 2's agent to run ({why})")
    server.crash()
    time.sleep(DOWN)
    server.start()

    ex = wait_settled(stack, timeout=60)
    assert ex.status is E.COMPLETED, f"{ex.reason} ({why})"
    assert (ex.tasks_completed, ex.tasks_total) == (3, 3), why
    subjects = [s for s in git(stack, "log", "--format=%s", "clarity/issue-1").splitlines() if s.startswith("clarity:")]
    assert sorted(collections.Counter(s.split()[1] for s in subjects).items()) == [("1", 1), ("2", 1), ("3", 1)], why
    assert {t.task_id: t.status for t in store.tasks(ex.id).values()} == {i: T.COMPLETED for i in "123"}, why
    # Task 1 rode the first outage out; task 2 was abandoned in the second and done again after it.
    assert [started(i) for i in "123"] == [1, 2, 1], why
    lines = [line.get("message", "") for line in store.log_lines(ex.id, 5000)]
    assert sum("recovered after a worker was lost" in line for line in lines) == 1, why
    assert lines.count("3 task(s) to run: 1 → 2 → 3") == 1, why

    # Both commands answered once: one 👀 each, one reply each.
    wait_comment(stack, STATUS_REPLY, timeout=30)
    wait_comment(stack, HELP_REPLY, timeout=30)
    state = stack.admin("GET", "/state")
    eyes = collections.Counter(r["comment_id"] for r in state["reactions"] if r["content"] == "eyes")
    assert eyes[before["comment"]["id"]] == 1 and eyes[during[0]["comment"]["id"]] == 1, (eyes, why)
    replies = [c["body"] for c in state["comments"] if c["author"] == stack.bot_login]
    assert [sum(needle in body for body in replies) for needle in (STATUS_REPLY, HELP_REPLY)] == [1, 1], why

    # The steps worker rode both outages out: the same process, never restarted, did all of it.
    assert steps.poll() is None, why
