"""The fair choice of the next step: priorities first, then customers round-robin, then the longest wait."""

from __future__ import annotations

import collections
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clarity.ready import Ready, ReadySet, choose, order, schedule
from clarity.store import Store


def r(execution_id: str, priority: int = 5, installation: int = 1, since: float = 0.0) -> Ready:
    return Ready(execution_id, priority, installation, since)


@pytest.mark.parametrize(("entries", "served", "expected"), [
    ([], {}, None),
    ([r("a", since=2), r("b", since=1)], {}, "b"),                                  # longest wait
    ([r("a", 5, since=1), r("b", 9, since=2)], {}, "b"),                            # priority beats wait
    ([r("a", 5, 1, since=1), r("b", 5, 2, since=2)], {1: 7, 2: 3}, "b"),            # customer served longest ago
    ([r("a", 5, 1, since=1), r("b", 5, 2, since=2)], {1: 7}, "b"),                  # never served goes first
    ([r("a", 9, 1, since=1), r("b", 5, 2, since=0)], {1: 100}, "a"),                # priority beats the turn
    ([r("a", 5, 1, since=3), r("b", 5, 1, since=1), r("c", 5, 2, since=0)], {2: 5, 1: 4}, "b"),
], ids=["empty", "oldest", "priority", "turn", "never-served", "priority-over-turn", "turn-then-wait"])
def test_choose_table(entries, served, expected) -> None:
    picked = choose(entries, served)
    assert (picked.execution_id if picked else None) == expected


def test_a_customer_with_many_repositories_does_not_crowd_out_one_with_one() -> None:
    # Installation 1 runs six repositories, 2 runs three, 3 runs one: FIFO would give 1 most turns.
    entries = [r(f"one-{i}", installation=1, since=i) for i in range(6)]
    entries += [r(f"two-{i}", installation=2, since=10 + i) for i in range(3)]
    entries += [r("three-0", installation=3, since=20)]
    picks = [e.installation_id for e in schedule(entries, {})]
    assert picks == [1, 2, 3, 1, 2, 1, 2, 1, 1, 1]


def test_order_is_only_a_ranking_and_schedule_rotates() -> None:
    entries = [r("a", installation=1, since=0), r("b", installation=1, since=1), r("c", installation=2, since=2)]
    assert [e.execution_id for e in order(entries, {})] == ["a", "b", "c"]
    assert [e.execution_id for e in schedule(entries, {})] == ["a", "c", "b"]


ENTRY = st.builds(Ready, st.text("abcdefghij", min_size=1, max_size=3), st.integers(1, 10),
                  st.integers(1, 4), st.floats(0, 100))


@given(st.lists(ENTRY, max_size=30, unique_by=lambda e: e.execution_id),
       st.dictionaries(st.integers(1, 4), st.integers(0, 50)))
def test_schedule_is_fair_within_each_priority(entries, served) -> None:
    ranked = schedule(entries, served)
    assert sorted(ranked, key=lambda e: e.execution_id) == sorted(entries, key=lambda e: e.execution_id)
    assert [e.priority for e in ranked] == sorted((e.priority for e in entries), reverse=True)
    for priority in {e.priority for e in entries}:
        picks = [e.installation_id for e in ranked if e.priority == priority]
        left = collections.Counter(e.installation_id for e in entries if e.priority == priority)
        # Round-robin: while two customers both have work left, neither gets two turns ahead of the other.
        taken: collections.Counter[int] = collections.Counter()
        for installation in picks:
            others = [i for i in left if i != installation and taken[i] < left[i]]
            assert all(taken[installation] <= taken[i] for i in others), (picks, left)
            taken[installation] += 1


def test_take_is_atomic_under_concurrent_workers(store: Store) -> None:
    ready: ReadySet = store.ready
    for i in range(60):
        ready.add(f"ex-{i}", 5, i % 4)
    taken: list[str] = []

    def worker(n: int) -> None:
        while (picked := ready.take(f"job-{n}-{len(taken)}")) is not None:
            taken.append(picked)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(f"ex-{i}" for i in range(60))  # each exactly once
    assert ready.entries() == []


def test_take_rotates_customers_and_records_the_pick(store: Store) -> None:
    ready = store.ready
    ready.add("a1", 5, 1)
    ready.add("a2", 5, 1)
    ready.add("b1", 5, 2)
    assert ready.take("j1") == "a1"
    assert ready.take("j2") == "b1"  # installation 1 had its turn
    assert ready.slots(["j1", "j2", "j3"]) == {"j1": "a1", "j2": "b1"}
    ready.done("j1")
    assert ready.slot("j1") is None and ready.slot("j2") == "b1"
    assert ready.take("j3") == "a2"
    assert ready.take("j4") is None


def test_reprioritised_execution_jumps_ahead(store: Store) -> None:
    ready = store.ready
    ready.add("early", 5, 1)
    ready.add("late", 5, 2)
    assert ready.reprioritise("late", 8) and not ready.reprioritise("unknown", 8)
    assert [e.execution_id for e in order(ready.entries(), ready.served())] == ["late", "early"]
    assert ready.take("j") == "late"
