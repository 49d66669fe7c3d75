"""Execution history (clarity.history): records, trends, per-tool rates, error classes; retention and its CLI.

The rules are pure and tested on values with exact numbers; reading, pruning and the CLI run on a real
Redis through the real Store. The API and the Metrics page over the same history are in
tests/test_api_history.py and tests/test_insights.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

import cli
from clarity import history
from clarity.history import DAY, Record, Tally
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings, SettingsError
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import NotFound, Store
from jobs import recovery

S, T = ExecutionStatus, TaskStatus
A, B = 101, 202
NOW = datetime(2025, 3, 10, 15, 0, tzinfo=UTC).timestamp()


def at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2025, 3, day, hour, minute, tzinfo=UTC).timestamp()


def execution(id_: str, installation: int, status: ExecutionStatus, finished: float) -> Execution:
    account = {A: "acme", B: "globex"}[installation]
    return Execution(id=id_, installation_id=installation, repo=f"{account}/app", account=account, issue_number=1,
                     is_pull_request=False, branch="clarity/issue-1", base_branch="main", requester="ada",
                     status=status, created_at=finished - 600, updated_at=finished, finished_at=finished)


def task(tid: str, status: TaskStatus, tool: str = "", duration: float = 0.0, **fields: Any) -> TaskProgress:
    return TaskProgress(tid, f"task {tid}", status, tool=tool, duration=duration, **fields)


E1 = execution("e1", A, S.COMPLETED, at(10, 9))
E2 = execution("e2", A, S.FAILED, at(8, 1))
E3 = execution("e3", B, S.STOPPED, at(9, 12))
E4 = execution("e4", A, S.PAUSED, at(9, 8))  # waits for a person: not history
E5 = execution("e5", A, S.COMPLETED, at(7, 23, 59))  # before a three-day window
TABLES = {
    "e1": {"1": task("1", T.COMPLETED, "aider", 10.0, attempts=1),
           "2": task("2", T.COMPLETED, "aider", 30.0, attempts=2),
           "3": task("3", T.SKIPPED),
           "4": task("4", T.COMPLETED, override_by="ada")},  # a person's done is not the engine's outcome
    "e2": {"1": task("1", T.COMPLETED, "claude", 20.0),
           "2": task("2", T.FAILED, "aider", 40.0, attempts=4, error_class="check_failed")},
    "e3": {"1": task("1", T.FAILED, error_class="infra", attempts=1),  # no tool was available
           "2": task("2", T.PENDING)},
    "e4": {"1": task("1", T.COMPLETED, "aider", 5.0)},
    "e5": {"1": task("1", T.COMPLETED, "aider", 100.0)},
}


@pytest.fixture
def found() -> list[Record]:
    return history.records([E1, E2, E3, E4, E5], TABLES)


# -- the rules ------------------------------------------------------------------------------------
def test_records_are_the_finished_executions_newest_first_with_their_tasks(found: list[Record]) -> None:
    assert [r.execution.id for r in found] == ["e1", "e3", "e2", "e5"]
    assert [t.task_id for t in found[0].tasks] == ["1", "2", "3", "4"]
    assert history.records([E1], {}) == [Record(E1, ())]  # a table that was never written


def test_tally_counts_only_what_the_engine_ran(found: list[Record]) -> None:
    total = history.tally(t for r in history.within(found, 3, NOW) for t in r.tasks)
    assert total == Tally(completed=3, failed=2, seconds=100.0)
    assert (total.ran, total.success_rate, total.mean_seconds) == (5, 0.6, 20.0)
    assert (Tally().success_rate, Tally().mean_seconds) == (0.0, 0.0)


def test_window_is_whole_utc_days_ending_today(found: list[Record]) -> None:
    assert history.window_start(NOW, 1) == at(10, 0)
    assert history.window_start(NOW, 3) == at(8, 0)
    assert [r.execution.id for r in history.within(found, 3, NOW)] == ["e1", "e3", "e2"]
    assert [r.execution.id for r in history.within(found, 1, NOW)] == ["e1"]


def test_per_tool_success_rate_and_mean_time(found: list[Record]) -> None:
    tools = history.by_tool(history.within(found, 3, NOW))
    assert tools == {"aider": Tally(2, 1, 80.0), "claude": Tally(1, 0, 20.0), "none": Tally(0, 1, 0.0)}
    assert (tools["aider"].success_rate, tools["aider"].mean_seconds) == (0.667, 26.667)


def test_error_classes_are_counted_most_frequent_first(found: list[Record]) -> None:
    more = [*found, Record(E1, (task("9", T.FAILED, "aider", error_class="timeout"),
                                task("8", T.PENDING, error_class="timeout")))]
    assert list(history.error_classes(more).items()) == [("timeout", 2), ("check_failed", 1), ("infra", 1)]


def test_tasks_per_day_include_empty_days_oldest_first(found: list[Record]) -> None:
    assert history.per_day(found, 3, NOW) == (("2025-03-08", 1), ("2025-03-09", 0), ("2025-03-10", 2))
    assert history.per_day([], 2, NOW) == (("2025-03-09", 0), ("2025-03-10", 0))


def test_trends_per_customer(found: list[Record]) -> None:
    acme, globex = history.trends(found, 3, NOW)
    assert (acme.installation_id, acme.account, acme.executions) == (A, "acme", 2)
    assert acme.tasks == Tally(3, 1, 100.0) and (acme.tasks.success_rate, acme.tasks.mean_seconds) == (0.75, 25.0)
    assert acme.per_day == (("2025-03-08", 1), ("2025-03-09", 0), ("2025-03-10", 2))
    assert acme.tools == {"aider": Tally(2, 1, 80.0), "claude": Tally(1, 0, 20.0)}
    assert acme.error_classes == {"check_failed": 1}
    assert (globex.installation_id, globex.executions, globex.tasks) == (B, 1, Tally(0, 1, 0.0))
    assert globex.per_day == (("2025-03-08", 0), ("2025-03-09", 0), ("2025-03-10", 0))
    assert globex.tools == {"none": Tally(0, 1, 0.0)} and globex.error_classes == {"infra": 1}
    assert [t.account for t in history.trends(found, 1, NOW)] == ["acme"]  # globex finished before today


def test_expired_is_finished_and_older_than_the_retention_never_live_or_paused() -> None:
    live = execution("e6", A, S.TASK_EXECUTING, at(1, 0))
    blocked = execution("e7", B, S.BLOCKED, at(1, 0))
    queued = execution("e8", B, S.QUEUED, at(1, 0))
    everything = [E1, E2, E3, E4, E5, live, blocked, queued]
    assert history.expired(everything, NOW, 1) == ["e2", "e3", "e5"]  # finished before 9 March 15:00
    assert history.expired(everything, NOW, 30) == []
    assert history.expired(everything, NOW, 0) == []  # 0 keeps forever


# -- on a real store --------------------------------------------------------------------------------
def stored(store: Store, installation: int, status: ExecutionStatus = S.QUEUED, **fields: Any) -> Execution:
    account = {A: "acme", B: "globex"}[installation]
    ex = store.create(Execution(id="", installation_id=installation, repo=f"{account}/app", account=account,
                                issue_number=1, is_pull_request=False, branch="clarity/issue-1",
                                base_branch="main", requester="ada"), actor="ada")
    for step in {S.COMPLETED: (S.INITIALIZING, S.AUTONOMOUS, S.COMPLETED),
                 S.FAILED: (S.INITIALIZING, S.FAILED), S.STOPPED: (S.STOPPED,),
                 S.PAUSED: (S.INITIALIZING, S.AUTONOMOUS, S.PAUSED),
                 S.TASK_EXECUTING: (S.INITIALIZING, S.AUTONOMOUS, S.TASK_EXECUTING),
                 S.QUEUED: ()}[status]:
        ex = store.transition(ex.id, step, "engine")
    return store.update(ex.id, **fields) if fields else ex


def test_task_tables_of_many_executions_come_in_run_order(store: Store) -> None:
    one, two = stored(store, A, S.COMPLETED), stored(store, B, S.FAILED)
    for tid in ("2", "1", "3"):
        store.put_task(one.id, TaskProgress(tid, f"task {tid}"))
    store.set_task_status(one.id, "1", T.COMPLETED, tool="aider", duration=3.0)
    store.put_task(two.id, TaskProgress("1", "only"))
    tables = store.tasks_of([one.id, two.id, "nosuchexec"], chunk=2)
    assert list(tables[one.id]) == ["2", "1", "3"] and tables[one.id] == store.tasks(one.id)
    assert tables[two.id] == store.tasks(two.id) and tables["nosuchexec"] == {}


def test_read_finished_is_scoped_and_windowed(store: Store) -> None:
    mine = stored(store, A, S.COMPLETED)
    stored(store, A, S.PAUSED)
    theirs = stored(store, B, S.STOPPED)
    store.put_task(mine.id, TaskProgress("1", "done", T.COMPLETED, tool="aider", duration=2.0))
    [record] = history.read_finished(store, [A])
    assert record.execution.id == mine.id and [t.task_id for t in record.tasks] == ["1"]
    assert {r.execution.id for r in history.read_finished(store, None)} == {mine.id, theirs.id}
    assert history.read_finished(store, [A], since=time.time() + 60) == []
    assert history.read_finished(store, []) == []


def test_prune_forgets_only_finished_executions_past_the_retention(store: Store) -> None:
    now = time.time() + 100 * DAY  # everything below was created 100 days before "now"
    old = [stored(store, A, S.COMPLETED), stored(store, A, S.FAILED), stored(store, B, S.STOPPED)]
    recent = stored(store, A, S.COMPLETED, finished_at=now - 10 * DAY)  # finished long after it was made
    paused, live, queued = stored(store, A, S.PAUSED), stored(store, B, S.TASK_EXECUTING), stored(store, B)
    store.put_task(old[0].id, TaskProgress("1", "done", T.COMPLETED))
    assert history.prune(store, now, 0) == []
    gone = history.prune(store, now, 90)
    assert sorted(gone) == sorted(ex.id for ex in old)
    for ex in old:
        with pytest.raises(NotFound):
            store.get(ex.id)
    assert store.tasks(old[0].id) == {}
    kept = {recent.id, paused.id, live.id, queued.id}
    assert {ex.id for ex in store.executions()} == kept
    assert history.prune(store, now, 90) == []  # nothing left to do
    assert history.prune(store, now, 5) == [recent.id]
    assert {ex.id for ex in store.executions()} == {paused.id, live.id, queued.id}


def test_prune_when_due_runs_once_per_period(store: Store) -> None:
    now = time.time() + 100 * DAY
    first, second = stored(store, A, S.COMPLETED), stored(store, A, S.COMPLETED)
    store.update(second.id, finished_at=now - DAY)
    assert history.prune_when_due(store, 0, now=now) == []  # retention 0: never
    assert history.prune_when_due(store, 90, now=now) == [first.id]
    assert history.prune_when_due(store, 0.5, now=now) == []  # not due for another hour
    assert history.prune(store, now, 0.5) == [second.id]


def test_the_steps_workers_reconciler_thread_applies_the_retention(settings: Settings, store: Store) -> None:
    finished, paused = stored(store, A, S.COMPLETED), stored(store, B, S.PAUSED)
    time.sleep(0.05)
    stop = threading.Event()
    thread = recovery.run_periodically(dataclasses.replace(settings, lease_ttl=1, history_retention_days=1e-7),
                                       stop)  # about 9 ms: what finished before now is past it
    try:
        deadline = time.monotonic() + 10
        while finished.id in {ex.id for ex in store.executions()} and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
    assert {ex.id for ex in store.executions()} == {paused.id}


# -- settings and the CLI ---------------------------------------------------------------------------
def test_retention_setting_defaults_to_90_days_and_refuses_negatives() -> None:
    assert Settings.from_env({}, require_github=False).history_retention_days == 90.0
    env = {"CLARITY_HISTORY_RETENTION_DAYS": "0"}
    assert Settings.from_env(env, require_github=False).history_retention_days == 0.0
    with pytest.raises(SettingsError, match="CLARITY_HISTORY_RETENTION_DAYS must not be negative, got -3"):
        Settings.from_env({"CLARITY_HISTORY_RETENTION_DAYS": "-3"}, require_github=False)


def test_cli_prunes_with_days_or_the_setting(store: Store, redis_url: str, namespace: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    env = {"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace}
    done, paused = stored(store, A, S.COMPLETED), stored(store, A, S.PAUSED)
    time.sleep(0.2)
    assert cli.main(["history", "prune"], env={**env, "CLARITY_HISTORY_RETENTION_DAYS": "0"}) == 0
    assert capsys.readouterr().err.strip() == "retention is 0 (keep forever): nothing removed"
    assert cli.main(["history", "prune"], env=env) == 0  # 90 days: nothing that old
    assert capsys.readouterr() == ("", "removed 0 finished execution(s) older than 90 days\n")
    assert cli.main(["history", "prune", "--days", "0.000001"], env=env) == 0  # 86 ms
    out, err = capsys.readouterr()
    assert out.split() == [done.id] and err == "removed 1 finished execution(s) older than 1e-06 days\n"
    assert [ex.id for ex in store.executions()] == [paused.id]


def test_cli_explains_bad_input(redis_url: str, namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace}
    assert cli.main(["history", "prune", "--days", "-1"], env=env) == 2
    assert capsys.readouterr().err == "clarity: --days must not be negative, got -1\n"
    assert cli.main(["history", "prune"], env={**env, "CLARITY_HISTORY_RETENTION_DAYS": "soon"}) == 2
    assert "CLARITY_HISTORY_RETENTION_DAYS must be a number, got 'soon'" in capsys.readouterr().err
    assert cli.main(["history", "forget"], env=env) == 2
