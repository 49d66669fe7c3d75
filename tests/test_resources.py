"""clarity.resources: reading /proc, CPU shares, and the heartbeat that records a step's usage in Redis."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clarity import resources
from clarity.models import Execution
from clarity.resources import Proc, Usage
from clarity.settings import Settings
from clarity.store import Store
from jobs import context, heartbeat

TICK = resources.TICKS_PER_SECOND
PAGE = resources.PAGE_BYTES


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, start: int, rss_pages: int) -> str:
    # The fields of proc(5) after the name: state, ppid, ..., utime (14th), stime, ..., starttime (22nd), vsize, rss.
    after = ["S", ppid, pid, pid, 0, -1, 4194304, 100, 0, 0, 0, utime, stime, 0, 0, 20, 0, 1, 0, start, 3133440,
             rss_pages, 18446744073709551615]
    return f"{pid} ({comm}) " + " ".join(map(str, after)) + "\n"


def test_a_stat_line_is_read_even_when_the_name_holds_spaces_and_parentheses() -> None:
    assert resources.parse_stat(stat_line(42, "my (odd) name", 7, 30, 12, 9000, 390)) == Proc(
        42, 7, 9000, 42, 390 * PAGE)
    assert resources.parse_stat("") is None
    assert resources.parse_stat("42 (short) S 7") is None


def test_the_tree_is_every_descendant_and_not_the_root() -> None:
    procs = [Proc(1, 0, 0, 0, 0), Proc(10, 1, 0, 0, 0), Proc(11, 10, 0, 0, 0), Proc(12, 11, 0, 0, 0),
             Proc(13, 10, 0, 0, 0), Proc(20, 1, 0, 0, 0)]
    assert sorted(p.pid for p in resources.descendants(procs, 10)) == [11, 12, 13]
    assert resources.descendants(procs, 12) == []


def test_cpu_counts_each_process_since_the_last_sample_and_new_ones_whole() -> None:
    before = {(11, 5): 100, (12, 6): 50, (13, 7): 10}
    after = {(11, 5): 100 + TICK // 2, (12, 6): 50, (14, 9): TICK // 4}  # 13 ended, 14 started
    assert resources.cpu_percent(before, after, 1.0) == 75.0
    assert resources.cpu_percent(before, after, 0.0) == 0.0
    assert resources.cpu_percent({(11, 5): 100}, {(11, 8): 3}, 1.0) == round(300 / TICK, 1)  # a reused pid


@given(st.dictionaries(st.tuples(st.integers(1, 99), st.integers(0, 9)), st.integers(0, 10**6)),
       st.dictionaries(st.tuples(st.integers(1, 99), st.integers(0, 9)), st.integers(0, 10**6)),
       st.floats(0.01, 10))
def test_cpu_is_never_negative(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int],
                               seconds: float) -> None:
    assert resources.cpu_percent(before, after, seconds) >= 0


def test_host_cpu_comes_from_two_readings_of_proc_stat() -> None:
    first = resources.parse_cpu_times("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 100 0 50 800 50 0 0 0 0 0\n")
    second = resources.parse_cpu_times("cpu  160 0 90 880 70 0 0 0 0 0\n")
    assert first == (150, 1000)
    assert resources.host_percent(first, second) == 50.0  # 100 busy of 200
    assert resources.parse_cpu_times("intr 1 2 3\n") == (0, 0)
    assert resources.host_percent((5, 10), (5, 10)) == 0.0


def test_tree_meter_reads_a_proc_folder(tmp_path: Path) -> None:
    def write(pid: int, ppid: int, ticks: int, rss_pages: int) -> None:
        (tmp_path / str(pid)).mkdir(exist_ok=True)
        (tmp_path / str(pid) / "stat").write_text(stat_line(pid, "sh", ppid, ticks, 0, 500 + pid, rss_pages))

    write(100, 1, 999, 1000)  # the work horse itself: not counted
    write(101, 100, 10, 256)
    write(102, 101, 20, 512)
    write(200, 1, 5000, 4096)  # another tree
    (tmp_path / "self").mkdir()  # not a pid
    clock = iter([0.0, 2.0])
    meter = resources.TreeMeter(100, tmp_path, clock=lambda: next(clock))
    first = meter.sample()
    assert (first.cpu_percent, first.memory_bytes, first.processes) == (0.0, 768 * PAGE, 2)
    write(101, 100, 10 + TICK, 256)  # one core-second in two seconds
    write(102, 101, 20, 512)
    assert meter.sample().cpu_percent == 50.0


def test_the_host_meter_shares_a_recent_reading(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 0 100 0 0 0 0\n")
    now = [0.0]
    meter = resources.HostMeter(stat, clock=lambda: now[0])
    assert meter.cpu_percent() == 50.0  # since boot
    stat.write_text("cpu  200 0 0 100 0 0 0 0\n")
    now[0] = 0.1
    assert meter.cpu_percent() == 50.0  # too soon: the same reading
    now[0] = 1.0
    assert meter.cpu_percent() == 100.0
    assert resources.HostMeter(tmp_path / "missing").cpu_percent() == 0.0


def test_a_sample_round_trips_through_redis_and_expires(store: Store) -> None:
    usage = Usage(12.5, 2**20, 3, time.time(), "worker-a")
    resources.record(store.r, store.namespace, "e1", usage)
    store.r.set(resources.usage_key(store.namespace, "e2"), "not json")
    assert resources.recorded(store.r, store.namespace, ["e1", "e2", "e3"]) == {"e1": usage}
    assert 0 < store.r.ttl(resources.usage_key(store.namespace, "e1")) <= resources.USAGE_TTL
    assert resources.recorded(store.r, store.namespace, []) == {}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_steps_heartbeat_records_its_processes_while_it_works_and_clears_them_after(
        settings: Settings, store: Store) -> None:
    eng = context.build(settings)
    ex = store.create(Execution(id="", installation_id=1, repo="acme/widgets", account="acme", issue_number=1,
                                is_pull_request=False, branch="clarity/issue-1", base_branch="main",
                                requester="ada"), actor="ada")
    busy = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", busy])  # the "agent": a child of this process, spinning
    try:
        with heartbeat.beating(eng, ex, threading.Event()):
            deadline = time.monotonic() + 5
            found: dict[str, Usage] = {}
            while time.monotonic() < deadline:
                found = resources.recorded(store.r, store.namespace, [ex.id])
                if ex.id in found and found[ex.id].cpu_percent > 20:
                    break
                time.sleep(0.1)
            usage = found[ex.id]
            assert usage.processes >= 1 and usage.memory_bytes > 1_000_000, usage
            assert usage.cpu_percent > 20, usage  # a spinning process, measured between two samples
            assert time.time() - usage.sampled_at < 2
    finally:
        child.kill()
        child.wait()
    assert resources.recorded(store.r, store.namespace, [ex.id]) == {}  # the step ended: nothing runs
