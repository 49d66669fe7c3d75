"""Issue 15: every number of an execution comes from one place (clarity.numbers) and every surface agrees.

Pure: the definitions, as tables. Then a property test that drives random sequences of commands (run,
stop, pause, resume, retry, override done/skipped, replay, stop-point moves) and worker steps against the
real store, the real control functions (against the forge) and the step's own bookkeeping (`track_scope`,
`attempt_hook`, `settle_tasks`), with a step that completes or fails tasks at once instead of running an
agent; after every move the numbers obey their invariants and read the same on every surface.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from clarity import history, numbers, tasklist
from clarity.flags import Flag
from clarity.models import Execution, TaskProgress
from clarity.numbers import Numbers
from clarity.status import ExecutionStatus as E
from clarity.status import TaskStatus as T
from clarity.store import Store
from github_app import commands
from github_app.reporting import Reporter
from jobs import context, control, publish, reports, scheduler, verbs
from jobs.checkout import track_scope
from jobs.comment_event import CommentEvent
from jobs.taskrun import attempt_hook
from tests.conftest_forge import ForgeHandle


def row(task_id: str, status: T, by: str = "", made: int = 0, failed: int = 0) -> TaskProgress:
    return TaskProgress(task_id=task_id, status=status, override_by=by, attempts_made=made, attempts_failed=failed)


# -- the definitions ------------------------------------------------------------------------------

def test_a_fresh_execution_has_no_numbers_yet_and_no_rate() -> None:
    assert numbers.count({}, set()) == Numbers()
    assert (Numbers().known, Numbers().success_rate, Numbers().success_text) == (False, None, "—")


def test_done_counts_every_completed_task_and_total_adds_the_rest_of_the_scope() -> None:
    table = {"1": row("1", T.COMPLETED, made=1), "2": row("2", T.COMPLETED, by="ada"),  # a person's, beyond scope
             "3": row("3", T.FAILED, made=4, failed=4), "4": row("4", T.SKIPPED, by="bob"),
             "5": row("5", T.PENDING), "6": row("6", T.PENDING)}  # 6 is out of scope: not counted
    counted = numbers.count(table, {"3", "4", "5", "7"})  # 7 has no row yet: pending
    assert counted == Numbers(done=2, total=6, left=2, passed=1, failed=1, attempts=5, errors=4, retries=3)
    assert (counted.progress, counted.tasks_text(), counted.success_text) == ("2/6", "2/6 tasks done, 1 failed", "50%")


@pytest.mark.parametrize(("passed", "failed", "rate", "text", "wire"), [
    (0, 0, None, "—", 0.0), (3, 0, 1.0, "100%", 1.0), (2, 1, 2 / 3, "67%", 0.667), (0, 2, 0.0, "0%", 0.0),
])
def test_success_rate_is_passed_over_finished_tasks(passed: int, failed: int, rate: float | None, text: str,
                                                     wire: float) -> None:
    assert numbers.rate(passed, failed) == rate
    assert (numbers.rate_text(passed, failed), numbers.wire_rate(passed, failed)) == (text, wire)


def test_the_record_keeps_the_numbers_and_gives_them_back() -> None:
    counted = Numbers(done=4, total=4, left=0, passed=3, failed=0, attempts=5, errors=1, retries=1)
    ex = numbers.stamp(Execution("x", 1, "a/b", "a", 1, False, "b", "main", "ada"), counted)
    assert numbers.of(ex) == counted
    assert (ex.tasks_completed, ex.tasks_total, ex.error_count, ex.retry_count, ex.success_rate) == (4, 4, 1, 1, 1.0)
    assert {k: ex.to_json()[k] for k in counted.to_json() if k != "successText"} == {
        k: v for k, v in counted.to_json().items() if k != "successText"}


statuses = st.sampled_from(list(T))
rows = st.builds(row, st.sampled_from(["1", "2", "3", "4"]), statuses, st.sampled_from(["", "ada"]),
                 st.integers(0, 5), st.integers(0, 5))


@given(st.dictionaries(st.sampled_from(["1", "2", "3", "4"]), rows), st.sets(st.sampled_from(["1", "2", "3", "5"])),
       st.lists(rows, max_size=4))
def test_moving_by_each_rows_difference_is_counting_afresh(table: dict[str, TaskProgress], scope: set[str],
                                                           writes: list[TaskProgress]) -> None:
    """The store moves the numbers by what written rows add now less what they added before (settle_tasks)."""
    table = {k: dataclasses.replace(v, task_id=k) for k, v in table.items()}
    before = numbers.count(table, scope)
    assert 0 <= before.done <= before.total and before.left <= before.total - before.done
    after_table = dict(table)
    moved = before
    for write in writes:
        old = after_table.get(write.task_id, TaskProgress(task_id=write.task_id))
        moved += numbers.row(write, write.task_id in scope) - numbers.row(old, write.task_id in scope)
        after_table[write.task_id] = write
    assert moved == numbers.count(after_table, scope)


# -- the engine, driven at random -----------------------------------------------------------------

REPO = "acme/widgets"
LIST = """# Tasks
- [ ] 1 Setup
  - [ ] 1.1 One
  - [ ] 1.2 Two
    - depends: 1.1
  - [ ] 1.3 Three
- [ ] 2 Data
  - [ ] 2.1 Four
    - depends: 1.2
  - [ ] 2.2 Five
"""
LEAVES = ("1.1", "1.2", "1.3", "2.1", "2.2")
STOPS = ("1", "1.2", "1.3", "2.1", "2")
RETRIES = 3  # the default: 1 + 3 attempts per task
PAGES_EVERY = 5  # sequences between two looks at the API and the pages through the web app
SEQUENCES = [0]


@dataclass
class World:
    """What the driver knows beside the store: the branch's list as the fake steps tick it, and the task in hand."""

    text: str = LIST
    running: tuple[str, str, int] | None = None  # (execution, task, failed attempts): begun, ended by the next `work`
    attempts: dict[str, int] = field(default_factory=dict)  # per execution: attempts the fake agent made
    errors: dict[str, int] = field(default_factory=dict)  # and of those, the failed ones
    stepped: set[str] = field(default_factory=set)  # executions whose scope the last move read from the list


@pytest.fixture
def engine(forge: ForgeHandle, settings: Any, tmp_path: Path) -> context.Engine:
    forge.seed(REPO, {"tasks_list.md": LIST})
    return forge.engine(settings)


class ReadOnce(httpx.BaseTransport):
    """The forge in-process, each repository read answered once: the repository never changes in this test
    (the fake steps tick their own copy of the list), and every control reads it (git runs for each read)."""

    def __init__(self, app: Any) -> None:
        self.forge = httpx.WSGITransport(app=app)
        self.read: dict[str, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" or "/repos/" not in request.url.path:
            return self.forge.handle_request(request)
        key = str(request.url)
        if key not in self.read:
            response = self.forge.handle_request(request)
            self.read[key] = (response.status_code, list(response.headers.raw), response.read())
        status, headers, body = self.read[key]
        return httpx.Response(status, headers=headers, content=body)


@pytest.fixture
def reporter(forge: ForgeHandle, engine: context.Engine) -> Reporter:
    """The controls' GitHub: the forge, called in-process."""
    # No HTTP cache: githubkit's would grow with every request and scan itself on each one.
    return Reporter(forge.installation_client(REPO, transport=ReadOnce(forge.running.app), http_cache=False), REPO)


@pytest.fixture
def web(engine: context.Engine, settings: Any) -> Any:
    from app import create_app
    return create_app(dataclasses.replace(settings, github_api_url=engine.settings.github_api_url,
                                          app_id=engine.settings.app_id,
                                          private_key=engine.settings.private_key)).test_client()


EVENT = CommentEvent(delivery="d", installation_id=1000, repo=REPO, account="acme", issue_number=1,
                     is_pull_request=False, locked=False, comment_id=1, body="", author="ada", author_is_bot=False)


def say(eng: context.Engine, reporter: Reporter, body: str) -> None:
    """A person's comment command, parsed as intake parses it and acted on by the same control function."""
    [command] = commands.parse(body)
    assert isinstance(command, commands.Command), command
    act = {"run": verbs.run, "stop": verbs.stop, "pause": verbs.pause, "resume": verbs.resume,
           "retry": verbs.retry, "stop-point": verbs.set_stop_point, "override": verbs.override}
    act[str(command.verb)](eng, reporter, EVENT, command)


# -- the fake worker: the step's decisions and writes, an agent that passes or fails at once --------

def finish(eng: context.Engine, ex: Execution, status: E, reason: str) -> None:
    if ex.status is not status:
        ex = eng.store.transition(ex.id, status, "engine", reason, current_task=None)
    eng.store.clear_flag(ex.id, Flag.STOP)
    scheduler.release(eng, ex)


def work(eng: context.Engine, world: World, failures: int) -> None:
    """One step of whichever execution is runnable: begin its next task (`failures` failed attempts first,
    1 + RETRIES of them fail it), or end the task in hand, or conclude."""
    if world.running is not None:
        end_task(eng, world)
        return
    store = eng.store
    runnable = [e for e in store.executions(repo=REPO) if e.status in (E.INITIALIZING, E.AUTONOMOUS)]
    if not runnable:
        return
    ex = runnable[0]
    if store.flag(ex.id, Flag.STOP):
        finish(eng, ex, E.STOPPED, "stopped")
        return
    tasks = tasklist.parse(world.text)
    for progress in store.tasks(ex.id).values():  # overrides.tick_overridden: a person's `done` is ticked first
        if progress.status is T.COMPLETED and progress.override_by and not tasks.get(progress.task_id).done:
            world.text = tasklist.tick(world.text, [progress.task_id])
            store.set_task_status(ex.id, progress.task_id, T.COMPLETED, commit="0" * 40)
    tasks = tasklist.parse(world.text)
    ex = track_scope(store, ex, tasks)
    world.stepped.add(ex.id)
    if ex.status is E.INITIALIZING:
        store.clear_flag(ex.id, Flag.STOP_POINT_REACHED)
        ex = store.transition(ex.id, E.AUTONOMOUS, "engine", "initialized")
    table = store.tasks(ex.id)
    unavailable = frozenset(p.task_id for p in table.values() if p.status in (T.FAILED, T.SKIPPED))
    task = None if store.flag(ex.id, Flag.PAUSE) else tasks.next_task(ex.stop_point, unavailable)
    if task is None:
        conclude(eng, ex, tasks)
        return
    store.transition(ex.id, E.TASK_EXECUTING, "engine", f"task {task.id}", current_task=task.id)
    store.set_task_status(ex.id, task.id, T.IN_PROGRESS, title=task.title, tool="command")
    hook = attempt_hook(store, ex, task.id)
    made = min(failures, 1 + RETRIES)
    for attempt in range(1, made + 1):
        attempt_made(world, ex.id, hook, attempt, failed=True)
    world.running = (ex.id, task.id, made)


def attempt_made(world: World, execution_id: str, hook: Any, attempt: int, failed: bool) -> None:
    hook("attempt", attempt, "")
    hook("verifying", attempt, "")
    world.attempts[execution_id] = world.attempts.get(execution_id, 0) + 1
    if failed:
        hook("failed", attempt, "boom")
        world.errors[execution_id] = world.errors.get(execution_id, 0) + 1


def end_task(eng: context.Engine, world: World) -> None:
    """The task in hand ends: cancelled by a stop, failed after its attempts, or passed (ticked, committed)."""
    assert world.running is not None
    execution_id, task_id, made = world.running
    world.running = None
    store = eng.store
    ex = store.get(execution_id)
    if store.flag(ex.id, Flag.STOP):  # Cancelled: the task goes back to pending, the execution stops
        store.set_task_status(ex.id, task_id, T.PENDING)
        finish(eng, store.get(ex.id), E.STOPPED, "stopped")
        return
    if made >= 1 + RETRIES:
        store.set_task_status(ex.id, task_id, T.FAILED, last_error="boom", error_class="check_failed")
        store.update(ex.id, current_task=None)
        finish(eng, store.get(ex.id), E.BLOCKED, f"task {task_id} failed after {made} attempts")
        return
    attempt_made(world, ex.id, attempt_hook(store, ex, task_id), made + 1, failed=False)
    table = store.tasks(ex.id)
    done = dataclasses.replace(table[task_id], status=T.COMPLETED, commit="1" * 40, last_error="")
    table[task_id] = done
    # What the step reports before recording (the summary, the PR) is what the store then records.
    foretold = numbers.count(table, store.scope(ex.id))
    world.text = tasklist.tick(world.text, [task_id])
    settled = store.settle_tasks(ex.id, [done], new=E.AUTONOMOUS, reason=f"task {task_id} completed",
                                 current_task=None)
    assert numbers.of(settled) == foretold


def conclude(eng: context.Engine, ex: Execution, tasks: tasklist.TaskList) -> None:
    """jobs.planner (Pause, Conclude): paused by a person, at the stop point, completed, or blocked behind a failure."""
    store = eng.store
    if store.flag(ex.id, Flag.PAUSE):
        store.clear_flag(ex.id, Flag.PAUSE)
        finish(eng, ex, E.PAUSED, "paused")
        return
    waived = {p.task_id for p in store.tasks(ex.id).values() if p.status is T.SKIPPED and p.override_by}
    scope = tasks.leaves(under=ex.only) if ex.only else [tasks.get(i) for i in tasks.run_order(ex.stop_point)]
    if [t for t in scope if not t.done and t.id not in waived]:
        finish(eng, ex, E.BLOCKED, "tasks cannot run")
    elif all(t.done or t.id in waived for t in tasks.leaves()):
        finish(eng, ex, E.COMPLETED, "every task in the list is done")
    else:
        store.set_flag(ex.id, Flag.STOP_POINT_REACHED, "engine")
        finish(eng, ex, E.PAUSED, "stop point reached")


# -- what is checked after every move -------------------------------------------------------------

class Feed:
    """The live feed as a page receives it: the last numbers announced for each execution."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pubsub = store.r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(store.events_channel)
        self.last: dict[str, dict[str, Any]] = {}
        self.marks = 0

    def drain(self) -> None:
        """Read every event published so far (up to a mark of our own, published now)."""
        self.marks += 1
        self.store.r.publish(self.store.events_channel, json.dumps({"mark": self.marks}))
        deadline = time.monotonic() + 5
        while True:
            message = self.pubsub.get_message(timeout=1)
            if message is None:  # a subscription's confirmation, or nothing yet
                assert time.monotonic() < deadline, "the live feed went quiet"
                continue
            event = json.loads(message["data"])
            if event.get("mark") == self.marks:
                return
            if "numbers" in event:
                self.last[event["execution"]] = event["numbers"]

    def close(self) -> None:
        self.pubsub.close()


def check(eng: context.Engine, world: World, feed: Feed) -> None:
    store = eng.store
    feed.drain()
    found = store.executions(repo=REPO)
    for ex in found:
        n, table, scope = numbers.of(ex), store.tasks(ex.id), store.scope(ex.id)
        # The record's numbers are the count of its table and scope, and the count obeys its definition.
        assert n == numbers.count(table, scope), (ex.id, n, numbers.count(table, scope))
        assert 0 <= n.done <= n.total and 0 <= n.left <= n.total - n.done
        assert n.done == sum(1 for p in table.values() if p.status is T.COMPLETED)
        assert n.total == n.done + len(scope - {i for i, p in table.items() if p.status is T.COMPLETED})
        assert n.attempts == sum(p.attempts_made for p in table.values()) == world.attempts.get(ex.id, 0)
        assert n.errors == sum(p.attempts_failed for p in table.values()) == world.errors.get(ex.id, 0)
        if ex.id in world.stepped:  # a step just read the list: the scope is what it says now
            expected = numbers.scope(tasklist.parse(world.text), ex.stop_point, ex.only)
            assert scope == set(expected)
        # Every surface renders these numbers.
        assert f": {n.tasks_text()}" in reports.summary_line(ex)  # the summary check run's title
        said = reports.finished(ex, "why", "http://x")  # the closing comment
        assert f"{n.done} of {n.total} task(s) done; " in said and f"success rate {n.success_text}." in said
        wire = ex.to_json()  # the API's record, a live snapshot's
        assert {k: wire[k] for k in ("tasksCompleted", "tasksTotal", "attempts", "errorCount", "successRate")} == {
            k: n.to_json()[k] for k in ("tasksCompleted", "tasksTotal", "attempts", "errorCount", "successRate")}
        pr = publish.pull_text(eng, ex, str(ex.status), None)  # the PR body: its status line and its task table
        completed = {i for i, p in table.items() if p.status is T.COMPLETED}
        assert pr is not None or not completed
        if pr is not None:
            assert f"**Status:** {ex.status} · {n.tasks_text()} ·" in pr
            listed = {line.split("|")[1].strip() for line in pr.splitlines() if line.startswith("| ")}
            assert len(listed & completed) == n.done
        tally = history.tally(table.values())  # the Metrics page (/insights) counts the same tasks the same way
        assert (tally.completed, tally.failed, tally.success_rate) == (n.passed, n.failed, n.to_json()["successRate"])
        if ex.id in feed.last:  # the live feed's last word on it
            assert feed.last[ex.id] == n.to_json(), (feed.last[ex.id], n)
    world.stepped.clear()


def replies_agree(eng: context.Engine) -> None:
    """The `/clarity status` reply says what the newest execution's record says."""
    found = eng.store.executions(repo=REPO)
    if found:
        assert eng.store.recount(found[0].id) == numbers.of(found[0])
        assert f", {numbers.of(found[0]).tasks_text()}" in verbs.status_text(eng, REPO, 1)


def pages_agree(web: Any, eng: context.Engine) -> None:
    """The API and the pages say what the record says (once per sequence: they render the same Numbers)."""
    overview = web.get("/").get_data(as_text=True)
    for ex in eng.store.executions(repo=REPO):
        n = numbers.of(ex)
        progress = web.get(f"/api/devteam/executions/{ex.id}/progress").get_json()
        assert (progress["tasksCompleted"], progress["tasksTotal"]) == (n.done, n.total)
        listed = web.get(f"/api/executions/{ex.id}").get_json()
        assert (listed["tasksCompleted"], listed["tasksTotal"], listed["successRate"]) == (
            n.done, n.total, n.to_json()["successRate"])
        row = overview[overview.index(f'data-execution="{ex.id}"'):]
        shown(row[:row.index("</tr>")], n)
        shown(web.get(f"/executions/{ex.id}").get_data(as_text=True), n)


def shown(html: str, n: Numbers) -> None:
    """The page's progress and success-rate fields read these numbers."""
    for name, value in (("progress", n.progress), ("success", n.success_text)):
        found = re.search(rf'data-field="{name}"[^>]*>([^<]*)<', html)
        assert found is not None and found.group(1) == value, (name, found and found.group(1), value)


# -- the moves --------------------------------------------------------------------------------------

leaf = st.sampled_from(LEAVES)
moves = st.one_of(
    st.tuples(st.just("work"), st.integers(0, 1 + RETRIES)),
    st.tuples(st.just("work"), st.integers(0, 1)),  # mostly passing tasks: executions get somewhere
    st.tuples(st.just("say"), st.sampled_from([f"/clarity run until {s}" for s in STOPS] + ["/clarity run"])),
    st.tuples(st.just("say"), st.sampled_from(["/clarity stop", "/clarity pause", "/clarity resume",
                                               "/clarity retry"])),
    st.tuples(st.just("say"), leaf.map(lambda t: f"/clarity retry {t}")),
    st.tuples(st.just("say"), st.tuples(leaf, st.sampled_from(["done", "skipped"])).map(
        lambda o: f"/clarity override {o[0]} {o[1]}")),
    st.tuples(st.just("say"), st.sampled_from(STOPS).map(lambda s: f"/clarity stop-point {s}")),
    st.tuples(st.just("replay"), st.tuples(st.none() | leaf, st.none() | st.sampled_from(STOPS))),
)


def play(eng: context.Engine, reporter: Reporter, world: World, move: tuple[str, Any]) -> None:
    kind, arg = move
    if kind == "work":
        work(eng, world, arg)
    elif kind == "say":
        say(eng, reporter, arg)
    elif kind == "replay":
        found = eng.store.find(REPO, 1, (E.PAUSED, E.BLOCKED))
        if found:
            control.replay_execution(eng, reporter, found[0], "ada", arg[0], None, arg[1])


def fresh(store: Store) -> None:
    """Forget every key of the test's namespace (executions, leases, lines, queues) between sequences."""
    keys = list(store.r.scan_iter(f"{store.namespace}:*", count=1000))
    if keys:
        store.r.delete(*keys)


@pytest.fixture
def feed(engine: context.Engine) -> Iterator[Feed]:
    watching = Feed(engine.store)
    yield watching
    watching.close()


SHARDS = 4  # 4 × 125 = 500 sequences, each shard its own seed: they spread over the suite's workers


def sequences(shard: int) -> Any:
    """One shard of the property test: 500 / SHARDS random sequences, reproducible from its seed."""

    @pytest.mark.slow
    @seed(shard)
    @settings(max_examples=500 // SHARDS, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(moves, min_size=1, max_size=10))
    def test(engine: context.Engine, reporter: Reporter, web: Any, feed: Feed, script: list[tuple[str, Any]]) -> None:
        fresh(engine.store)
        world = World()
        say(engine, reporter, "/clarity run until 1.3")
        check(engine, world, feed)
        for move in script:
            play(engine, reporter, world, move)
            check(engine, world, feed)
        replies_agree(engine)
        SEQUENCES[0] += 1
        if SEQUENCES[0] % PAGES_EVERY == 0:  # the pages render the same Numbers as the record: one in a few will do
            pages_agree(web, engine)

    return test


test_numbers_hold_and_every_surface_agrees_whatever_people_and_workers_do_1 = sequences(1)
test_numbers_hold_and_every_surface_agrees_whatever_people_and_workers_do_2 = sequences(2)
test_numbers_hold_and_every_surface_agrees_whatever_people_and_workers_do_3 = sequences(3)
test_numbers_hold_and_every_surface_agrees_whatever_people_and_workers_do_4 = sequences(4)
