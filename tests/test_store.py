"""The Redis store: records, transitions with events and audit, task tables, leases, dedupe."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis

from clarity.models import Execution, TaskProgress
from clarity.status import ExecutionStatus as E
from clarity.status import IllegalTransition
from clarity.status import TaskStatus as T
from clarity.store import NotFound, Store


def make(store: Store, repo: str = "acme/widgets", installation: int = 1) -> Execution:
    return store.create(Execution(id="", installation_id=installation, repo=repo, account=repo.split("/")[0],
                                  issue_number=3, is_pull_request=False, branch="clarity/issue-3",
                                  base_branch="main", requester="ada", stop_point="1.2"), actor="ada")


def test_create_and_read_back(store: Store) -> None:
    ex = make(store)
    again = store.get(ex.id)
    assert again == ex
    assert again.status is E.QUEUED and again.stop_point == "1.2" and again.pr_number is None
    assert store.executions() == [ex]
    assert store.executions(repo="acme/widgets") == [ex]
    assert store.executions(installation_id=2) == []


def test_unknown_execution_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get("nope")


def test_transition_writes_publishes_and_audits(store: Store) -> None:
    ex = make(store)
    pubsub = store.r.pubsub()
    pubsub.subscribe(store.events_channel)
    pubsub.get_message(timeout=1)
    updated = store.transition(ex.id, E.INITIALIZING, "ada", "started")
    assert updated.status is E.INITIALIZING and store.get(ex.id).status is E.INITIALIZING
    message = pubsub.get_message(timeout=2)
    event = json.loads(message["data"])
    assert event["kind"] == "execution.status" and event["from"] == "queued" and event["to"] == "initializing"
    assert store.audit(1)[0]["actor"] == "ada"
    assert [e["kind"] for e in store.log_lines(ex.id)] == ["execution.created", "execution.status"]


def test_illegal_transition_changes_nothing(store: Store) -> None:
    ex = make(store)
    with pytest.raises(IllegalTransition):
        store.transition(ex.id, E.COMPLETED, "engine")
    assert store.get(ex.id).status is E.QUEUED


def test_task_table_keeps_order_and_checks_transitions(store: Store) -> None:
    ex = make(store)
    store.put_task(ex.id, TaskProgress("1.2", "second"))
    store.put_task(ex.id, TaskProgress("1.1", "first"))
    store.set_task_status(ex.id, "1.2", T.IN_PROGRESS, attempts=1)
    assert list(store.tasks(ex.id)) == ["1.2", "1.1"]
    assert store.task(ex.id, "1.2").attempts == 1
    with pytest.raises(IllegalTransition):
        store.set_task_status(ex.id, "1.1", T.COMPLETED.__class__("verifying"))


def test_lease_is_exclusive_renewable_and_released_only_by_holder(store: Store) -> None:
    assert store.acquire_lease("acme/widgets", "a", 5)
    assert not store.acquire_lease("acme/widgets", "b", 5)
    assert store.keep_lease("acme/widgets", "a", "", 5) == "renewed"
    assert store.keep_lease("acme/widgets", "b", "", 5) == "lost"
    assert not store.release_lease("acme/widgets", "b")
    assert store.lease_holder("acme/widgets") == "a"
    assert store.release_lease("acme/widgets", "a")
    assert store.acquire_lease("acme/widgets", "b", 5)


def test_lease_of_a_dead_holder_expires(store: Store) -> None:
    assert store.acquire_lease("acme/x", "dead", 0.05)
    import time
    time.sleep(0.1)
    assert store.acquire_lease("acme/x", "alive", 5)


def test_log_lines_are_redacted(store: Store) -> None:
    ex = make(store)
    store.log(ex.id, "token ghs_abcdefghijklmnopqrstuvwxyz0123456789 leaked")
    assert "ghs_" not in json.dumps(store.log_lines(ex.id))


def test_settle_tasks_moves_the_table_the_counter_and_the_status_together(store: Store) -> None:
    ex = make(store)
    store.transition(ex.id, E.INITIALIZING, "engine")
    store.transition(ex.id, E.AUTONOMOUS, "engine")
    store.transition(ex.id, E.TASK_EXECUTING, "engine")
    store.put_task(ex.id, TaskProgress("1.1", "first", status=T.PENDING))
    store.set_task_status(ex.id, "1.1", T.IN_PROGRESS)
    store.set_task_status(ex.id, "1.1", T.VERIFYING)
    before = len(store.log_lines(ex.id))

    done = store.settle_tasks(ex.id, [dataclasses.replace(store.task(ex.id, "1.1"), status=T.COMPLETED, commit="abc")],
                              new=E.AUTONOMOUS, reason="task 1.1 completed", current_task=None)

    assert (done.status, done.tasks_completed, done.reason) == (E.AUTONOMOUS, 1, "task 1.1 completed")
    assert store.get(ex.id) == done
    assert (store.task(ex.id, "1.1").status, store.task(ex.id, "1.1").commit) == (T.COMPLETED, "abc")
    events = store.log_lines(ex.id)[before:]
    assert [(e["kind"], e.get("to")) for e in events] == [("task.status", "completed"),
                                                        ("execution.status", "autonomous")]
    assert events[1]["tasks_completed"] == 1


def test_settle_tasks_applies_a_chain_and_counts_only_what_became_completed(store: Store) -> None:
    ex = make(store)
    store.put_task(ex.id, TaskProgress("1", "one", status=T.PENDING))
    store.set_task_status(ex.id, "1", T.IN_PROGRESS)
    store.set_task_status(ex.id, "1", T.FAILED)
    store.put_task(ex.id, TaskProgress("2", "two", status=T.PENDING))
    failed = store.task(ex.id, "1")
    writes = [dataclasses.replace(failed, status=T.PENDING), dataclasses.replace(failed, status=T.COMPLETED),
              TaskProgress("2", "two", status=T.SKIPPED), TaskProgress("3", "three", status=T.COMPLETED)]

    settled = store.settle_tasks(ex.id, writes, actor="ada")

    assert settled.tasks_completed == 2 and settled.status is E.QUEUED
    assert {t.task_id: t.status for t in store.tasks(ex.id).values()} == {
        "1": T.COMPLETED, "2": T.SKIPPED, "3": T.COMPLETED}
    assert list(store.tasks(ex.id)) == ["1", "2", "3"]  # a task new to the table joins its order once


def test_settle_tasks_writes_nothing_when_any_part_is_illegal(store: Store) -> None:
    ex = make(store)
    store.put_task(ex.id, TaskProgress("1", "one", status=T.PENDING))
    with pytest.raises(IllegalTransition):
        store.settle_tasks(ex.id, [TaskProgress("1", "one", status=T.COMPLETED)], new=E.COMPLETED)  # queued ↛ completed
    with pytest.raises(IllegalTransition):
        store.settle_tasks(ex.id, [TaskProgress("1", "one", status=T.COMPLETED),
                                   TaskProgress("2", "two", status=T.VERIFYING)])  # pending ↛ verifying
    assert store.task(ex.id, "1").status is T.PENDING and store.get(ex.id).tasks_completed == 0
    assert list(store.tasks(ex.id)) == ["1"]


def test_settle_tasks_lost_before_exec_leaves_both_untouched(store: Store, monkeypatch) -> None:
    """A worker killed mid-write: the transaction either happened whole or not at all."""
    ex = make(store)
    store.put_task(ex.id, TaskProgress("1", "one", status=T.PENDING))

    def killed(self, *args, **kwargs):  # stands in for Pipeline.execute
        raise ConnectionError("the worker died")

    monkeypatch.setattr(redis.client.Pipeline, "execute", killed)
    with pytest.raises(ConnectionError):
        store.settle_tasks(ex.id, [TaskProgress("1", "one", status=T.COMPLETED)])
    monkeypatch.undo()
    assert store.task(ex.id, "1").status is T.PENDING and store.get(ex.id).tasks_completed == 0
