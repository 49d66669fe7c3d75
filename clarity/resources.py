"""CPU and memory of running executions and of the host, read from /proc (Linux; nothing elsewhere).

A running step's heartbeat (jobs.heartbeat) samples the process tree under its RQ work horse (the
agent, its checks, git: everything the step started, not the horse itself) about twice a second
and writes the result to Redis under `usage:<execution id>` with a short TTL, so the numbers of a
lost worker vanish on their own. The Resources page reads them for the executions its viewer sees
(never by scanning keys) and measures the web host's CPU share from two readings of /proc/stat.
Processes in a docker container are not in the horse's tree: a docker step reports no usage.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
PROC = Path("/proc")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
USAGE_TTL = 5  # seconds a sample outlives its step's last heartbeat
HOST_MIN_INTERVAL = 0.25  # seconds: viewers asking closer together than this share one reading


@dataclass(frozen=True, slots=True)
class Proc:
    """One process as /proc/<pid>/stat describes it."""

    pid: int
    ppid: int
    start: int  # clock ticks after boot: with the pid, names the process even when pids are reused
    ticks: int  # user + system CPU time, in clock ticks
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class Usage:
    """What an execution's processes use now."""

    cpu_percent: float  # of one core (a tree busy on two cores shows 200)
    memory_bytes: int  # resident set size, summed over the processes (shared pages count in each)
    processes: int
    sampled_at: float  # wall clock, seconds
    host: str  # where the step runs

    def to_json(self) -> str:
        """The Redis value."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Usage | None:
        """The value read back; None when it is not one (an older or foreign writer)."""
        try:
            data = json.loads(text)
            return cls(float(data["cpu_percent"]), int(data["memory_bytes"]), int(data["processes"]),
                       float(data["sampled_at"]), str(data["host"]))
        except (ValueError, TypeError, KeyError):
            return None


# -- pure: reading the texts -----------------------------------------------------------------------
def parse_stat(text: str) -> Proc | None:
    """A process from the text of /proc/<pid>/stat (None when it is not one).

    The command name sits in parentheses and may itself hold spaces and parentheses, so the fields
    are counted from the last ")".
    """
    head, paren, tail = text.rpartition(")")
    fields = tail.split()
    if not paren or len(fields) < 22:
        return None
    try:
        pid = int(head.split("(", 1)[0])
        return Proc(pid, int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]),
                    int(fields[21]) * PAGE_BYTES)
    except ValueError:
        return None


def descendants(procs: Iterable[Proc], root: int) -> list[Proc]:
    """Every process below `root` (children, their children, ...), `root` itself excluded."""
    children: dict[int, list[Proc]] = {}
    for proc in procs:
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child.pid != root:
                found.append(child)
                todo.append(child.pid)
    return found


def cpu_percent(before: Mapping[tuple[int, int], int], after: Mapping[tuple[int, int], int],
                seconds: float) -> float:
    """CPU used between two readings of a tree, in percent of one core.

    A process new in `after` started within the interval, so all its time counts; one gone since
    `before` took its last slice with it (processes are sampled, not accounted).
    """
    if seconds <= 0:
        return 0.0
    used = sum(max(ticks - before.get(key, 0), 0) for key, ticks in after.items())
    return round(100.0 * used / TICKS_PER_SECOND / seconds, 1)


def parse_cpu_times(text: str) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs from /proc/stat's text; (0, 0) when it has no "cpu" line."""
    for line in text.splitlines():
        words = line.split()
        if words and words[0] == "cpu":
            values = [int(v) for v in words[1:9] if v.isdigit()]
            idle = sum(values[3:5])  # idle + iowait
            return sum(values) - idle, sum(values)
    return 0, 0


def host_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all CPUs busy between two /proc/stat readings, in percent (0 to 100)."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return round(100.0 * busy / total, 1) if total > 0 else 0.0


# -- reading /proc ---------------------------------------------------------------------------------
def read_procs(proc_dir: Path = PROC) -> list[Proc]:
    """Every process on the machine (those that end while being read are left out)."""
    found: list[Proc] = []
    try:
        entries = [e for e in os.listdir(proc_dir) if e.isdigit()]
    except OSError:
        return found
    for entry in entries:
        try:
            text = (proc_dir / entry / "stat").read_text()
        except OSError:
            continue
        proc = parse_stat(text)
        if proc is not None:
            found.append(proc)
    return found


class TreeMeter:
    """Samples the processes below one process: CPU since the previous sample, memory now."""

    def __init__(self, root: int, proc_dir: Path = PROC, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.proc_dir = proc_dir
        self.clock = clock
        self.host = socket.gethostname()
        self._ticks: dict[tuple[int, int], int] = {}
        self._at: float | None = None

    def sample(self) -> Usage:
        """The tree now; its CPU share is 0 on the first sample (there is nothing to compare with)."""
        tree = descendants(read_procs(self.proc_dir), self.root)
        now = self.clock()
        ticks = {(p.pid, p.start): p.ticks for p in tree}
        cpu = cpu_percent(self._ticks, ticks, now - self._at) if self._at is not None else 0.0
        self._ticks, self._at = ticks, now
        return Usage(cpu, sum(p.rss_bytes for p in tree), len(tree), time.time(), self.host)


class HostMeter:
    """The web host's CPU share since the previous reading (one per web process, shared by viewers)."""

    def __init__(self, stat_path: Path = PROC / "stat", clock: Callable[[], float] = time.monotonic) -> None:
        self.stat_path = stat_path
        self.clock = clock
        self._last: tuple[int, int] | None = None
        self._at = 0.0
        self._percent = 0.0

    def cpu_percent(self) -> float:
        """Percent of all CPUs busy lately: since boot at the first call, then since the previous reading."""
        now = self.clock()
        if self._last is not None and now - self._at < HOST_MIN_INTERVAL:
            return self._percent
        try:
            reading = parse_cpu_times(self.stat_path.read_text())
        except OSError:
            return 0.0
        self._percent = host_percent(self._last or (0, 0), reading)
        self._last, self._at = reading, now
        return self._percent


# -- Redis: a step writes, the page reads -------------------------------------------------------------
def usage_key(namespace: str, execution_id: str) -> str:
    """Where an execution's latest sample is kept."""
    return f"{namespace}:usage:{execution_id}"


def record(client: Any, namespace: str, execution_id: str, usage: Usage, ttl: int = USAGE_TTL) -> None:
    """Keep an execution's latest sample for `ttl` seconds."""
    client.set(usage_key(namespace, execution_id), usage.to_json(), ex=ttl)


def recorded(client: Any, namespace: str, execution_ids: list[str]) -> dict[str, Usage]:
    """The latest samples of some executions (those without a live one are left out)."""
    if not execution_ids:
        return {}
    values = client.mget([usage_key(namespace, i) for i in execution_ids])
    found = {i: Usage.from_json(v) for i, v in zip(execution_ids, values, strict=True) if v}
    return {i: u for i, u in found.items() if u is not None}


class StepMeter:
    """The heartbeat's sampler: the work horse's process tree, written under the execution's key."""

    def __init__(self, client: Any, namespace: str, execution_id: str, root: int | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.execution_id = execution_id
        self.tree = TreeMeter(os.getpid() if root is None else root)

    def tick(self) -> Usage | None:
        """Sample and record; a sample that cannot be taken is skipped (it must never stop a heartbeat).

        Redis errors are the caller's: the heartbeat logs them and goes on.
        """
        try:
            usage = self.tree.sample()
        except (OSError, ValueError) as exc:
            log.debug("execution %s: no usage sample: %s", self.execution_id, exc)
            return None
        record(self.client, self.namespace, self.execution_id, usage)
        return usage

    def clear(self) -> None:
        """The step ended: its execution runs nothing now."""
        self.client.delete(usage_key(self.namespace, self.execution_id))
