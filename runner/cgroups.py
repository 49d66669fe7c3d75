"""A cgroup for every sandboxed run: processes, memory (no swap) and CPU limits that hold for root too.

RLIMIT_NPROC means nothing to root and RLIMIT_AS breaks runtimes that reserve address space (Bun, the
JVM, Go), so the local sandbox limits a run by the cgroup it starts in: `pids.max`, the memory limit
with no swap on top, a CPU quota. The cgroup is made before the run starts, its processes are put in
it before the command execs, it is read for usage (peak memory, CPU time, refused forks, OOM kills)
when the run ends, everything left in it is killed, and it is removed.

Both kernel interfaces: cgroup v2 (one hierarchy; run cgroups go under a parent whose
`cgroup.subtree_control` enables pids, memory and cpu) and v1 (one hierarchy per controller, run
cgroups under `<controller>/clarity`). Where neither can be written, `layout()` says why in words an
operator can act on: that is an isolation shortfall, which the product refuses to run tasks with.

Pure decisions (which hierarchy, which files, what to write, what the counters mean) with thin I/O
beside them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")
NEEDED = ("pids", "memory", "cpu")  # the controllers that limit; cpuacct (v1) only reports
DEFAULT_PARENT = "clarity"
CFS_PERIOD_US = 100_000
KILL_SECONDS = 2.0  # how long to keep killing what is left in a run's cgroup
REMOVE_SECONDS = 1.0  # how long to retry removing a run's cgroup whose last processes are exiting
_RUN_PREFIX = "run-"


@dataclass(frozen=True, slots=True)
class Spec:
    """What one run's cgroup limits; None leaves that resource unlimited."""

    pids: int | None = None
    memory_bytes: int | None = None
    cpus: float | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """Where this host's run cgroups go: one parent folder per hierarchy (one in all under v2).

    `hierarchies` maps the controllers of a hierarchy ("pids", "cpu,cpuacct", or under v2
    "pids,memory,cpu") to the folder run cgroups are made in.
    """

    version: int
    hierarchies: tuple[tuple[str, Path], ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """What a run's cgroup counted; None where this kernel has no such counter."""

    cpu_seconds: float | None = None
    memory_peak_bytes: int | None = None
    pids_refused: int = 0
    oom_kills: int = 0

    def as_dict(self) -> dict[str, float]:
        """The counters under the names `Result.usage` carries (the docker sandbox's names)."""
        found: dict[str, float] = {}
        if self.cpu_seconds is not None:
            found["cpu_seconds"] = round(self.cpu_seconds, 4)
        if self.memory_peak_bytes is not None:
            found["memory_peak_bytes"] = float(self.memory_peak_bytes)
        if self.pids_refused:
            found["pids_refused"] = float(self.pids_refused)
        if self.oom_kills:
            found["oom_kills"] = float(self.oom_kills)
        return found


# -- pure: the mounts, the files, the numbers ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mounts:
    """The cgroup file systems of /proc/self/mountinfo: v1 controller sets and the v2 mount point."""

    v1: Mapping[str, Path] = field(default_factory=dict)  # "cpu,cpuacct" → its mount point
    v2: Path | None = None


def parse_mountinfo(text: str) -> Mounts:
    """The cgroup mounts in a mountinfo text (a hierarchy mounted twice counts once, first wins)."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = Path(fields[4].replace("\\040", " "))
        if tail[0] == "cgroup2" and v2 is None:
            v2 = point
        elif tail[0] == "cgroup":
            names = ",".join(sorted(o for o in tail[2].split(",") if o in (*NEEDED, "cpuacct")))
            if names and names not in v1:
                v1[names] = point
    return Mounts(v1, v2)


def v1_hierarchies(mounts: Mounts, parent: str) -> tuple[tuple[str, Path], ...] | str:
    """(controllers, parent folder) for every v1 hierarchy a run joins, or why v1 cannot limit a run."""
    chosen = [(names, point / parent) for names, point in sorted(mounts.v1.items())]
    have = {name for names, _ in chosen for name in names.split(",")}
    missing = [name for name in NEEDED if name not in have]
    if missing:
        return f"the cgroup v1 controller(s) {', '.join(missing)} are not mounted"
    return tuple(chosen)


def v2_parent(mounts: Mounts, parent: str) -> Path | None:
    """The v2 folder run cgroups go in: `parent` as given when absolute, else under the v2 mount."""
    if Path(parent).is_absolute():
        return Path(parent)
    return mounts.v2 / parent if mounts.v2 is not None else None


def limit_writes(version: int, controllers: str, spec: Spec, files: Iterable[str]) -> list[tuple[str, str]]:
    """(file, value) to write in a new run cgroup of one hierarchy, in order; `files` are those it has.

    Memory comes with no swap on top (v1: memsw when swap is accounted, else swappiness 0; v2:
    swap.max 0), and under v2 an OOM kill takes the whole run (memory.oom.group), as it would a container.
    """
    have = set(files)
    names = set(controllers.split(","))
    writes: list[tuple[str, str]] = []
    if "pids" in names and spec.pids is not None:
        writes.append(("pids.max", str(spec.pids)))
    if "memory" in names and spec.memory_bytes is not None:
        if version == 2:
            writes += [("memory.max", str(spec.memory_bytes)), ("memory.swap.max", "0"),
                       ("memory.oom.group", "1")]
        else:
            writes.append(("memory.limit_in_bytes", str(spec.memory_bytes)))
            writes.append(("memory.memsw.limit_in_bytes", str(spec.memory_bytes)) if
                          "memory.memsw.limit_in_bytes" in have else ("memory.swappiness", "0"))
    if "cpu" in names and spec.cpus is not None:
        quota = max(1000, int(spec.cpus * CFS_PERIOD_US))
        if version == 2:
            writes.append(("cpu.max", f"{quota} {CFS_PERIOD_US}"))
        else:
            writes += [("cpu.cfs_period_us", str(CFS_PERIOD_US)), ("cpu.cfs_quota_us", str(quota))]
    return [(name, value) for name, value in writes if name in have]


def _field(text: str | None, name: str) -> int | None:
    for line in (text or "").splitlines():
        key, _, value = line.strip().partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def _number(text: str | None) -> int | None:
    value = (text or "").strip()
    return int(value) if value.isdigit() else None


def read_usage(version: int, read: Mapping[str, str | None]) -> Usage:
    """The Usage from the counter files' texts (`read` maps a file name to its text, None when absent)."""
    if version == 2:
        usec = _field(read.get("cpu.stat"), "usage_usec")
        peak = _number(read.get("memory.peak"))
        oom = _field(read.get("memory.events"), "oom_kill") or 0
    else:
        nsec = _number(read.get("cpuacct.usage"))
        usec = nsec // 1000 if nsec is not None else None
        peak = _number(read.get("memory.max_usage_in_bytes"))
        oom = _field(read.get("memory.oom_control"), "oom_kill") or 0
    return Usage(cpu_seconds=usec / 1e6 if usec is not None else None, memory_peak_bytes=peak,
                 pids_refused=_field(read.get("pids.events"), "max") or 0, oom_kills=oom)


COUNTERS = {1: ("cpuacct.usage", "memory.max_usage_in_bytes", "memory.oom_control", "pids.events"),
            2: ("cpu.stat", "memory.peak", "memory.events", "pids.events")}


def run_name(pid: int | None = None, pid_ns: int | None = None) -> str:
    """A new run cgroup's name: the worker's pid namespace and pid first, so a sweep can tell a dead
    worker's leftovers (and never takes a worker of another container, whose pids it cannot see, for one)."""
    ns = _pid_ns() if pid_ns is None else pid_ns
    return f"{_RUN_PREFIX}{ns}-{os.getpid() if pid is None else pid}-{next(_serial)}-{secrets.token_hex(3)}"


_serial = itertools.count(1)


def _pid_ns() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner(name: str) -> tuple[int, int] | None:
    """(pid namespace, worker pid) a run cgroup's name carries, None for a name that is not ours."""
    parts = name.split("-")
    if len(parts) == 5 and name.startswith(_RUN_PREFIX) and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


# -- I/O: set-up, one run's cgroup ---------------------------------------------------------------


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _enable_v2(folder: Path) -> None:
    """Let `folder`'s children have the needed controllers (a no-op when they already can)."""
    enabled = set((_read(folder / "cgroup.subtree_control") or "").split())
    wanted = [name for name in NEEDED if name not in enabled]
    if wanted:
        _write(folder / "cgroup.subtree_control", " ".join(f"+{name}" for name in wanted))


def delegated(v2: Path, own: str, writable: Callable[[Path], bool]) -> Path | None:
    """The highest ancestor of the worker's own v2 cgroup (`own`, from /proc/self/cgroup) it may manage:
    a subtree delegated to it (a user's `user@UID.service`, a service with systemd's `Delegate=`)."""
    parts = [part for part in own.strip("/").split("/") if part]
    for depth in range(1, len(parts)):  # never the worker's own leaf: it holds the worker's processes
        folder = v2.joinpath(*parts[:depth])
        if writable(folder):
            return folder
    return None


def _manageable(folder: Path) -> bool:
    return all(os.access(folder / name, os.W_OK) for name in ("cgroup.procs", "cgroup.subtree_control"))


def _own_v2() -> str:
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


def _setup_v2(mounts: Mounts, parent: str) -> Layout | str:
    folder = v2_parent(mounts, parent)
    if folder is None or mounts.v2 is None:
        return "no cgroup v2 file system is mounted"
    candidates = [folder]
    if not Path(parent).is_absolute() and (subtree := delegated(mounts.v2, _own_v2(), _manageable)) is not None:
        candidates.append(subtree / parent)
    reasons = []
    for candidate in candidates:
        found = _prepare_v2(candidate)
        if isinstance(found, Layout):
            return found
        reasons.append(found)
    return "; ".join(reasons)


def _prepare_v2(folder: Path) -> Layout | str:
    available = set((_read(folder.parent / "cgroup.controllers") or "").split())
    missing = [name for name in NEEDED if name not in available]
    if missing:
        return (f"cgroup v2 at {folder.parent} does not offer the {', '.join(missing)} controller(s) "
                "(they are bound to cgroup v1 or not delegated)")
    try:
        _enable_v2(folder.parent)
        folder.mkdir(exist_ok=True)
        _enable_v2(folder)
    except OSError as exc:
        return f"cannot prepare the cgroup v2 folder {folder}: {exc.strerror or exc}"
    return Layout(2, ((",".join(NEEDED), folder),))


def _setup_v1(mounts: Mounts, parent: str) -> Layout | str:
    if Path(parent).is_absolute():
        return f"a cgroup parent given as a path ({parent}) is for cgroup v2 only"
    chosen = v1_hierarchies(mounts, parent)
    if isinstance(chosen, str):
        return chosen
    try:
        for _, folder in chosen:
            folder.mkdir(exist_ok=True)
    except OSError as exc:
        return f"cannot make the cgroup v1 folders ({exc.filename}): {exc.strerror or exc}"
    return Layout(1, chosen)


@functools.cache
def layout(parent: str = DEFAULT_PARENT) -> Layout | str:
    """Where run cgroups go on this host, or why none can be made; worked out once per process.

    cgroup v2 first (the interface of modern hosts), then v1. A trial cgroup with a pids limit is
    made and removed, so "writable" means writable, not merely mounted. Leftovers of workers on this
    host that are gone are removed on the way.
    """
    mounts = parse_mountinfo(_read(MOUNTINFO) or "")
    reasons = []
    for setup in (_setup_v2, _setup_v1):
        found = setup(mounts, parent)
        if isinstance(found, str):
            reasons.append(found)
            continue
        trial = _trial(found)
        if trial is None:
            _sweep(found)
            return found
        reasons.append(trial)
    return "; ".join(reasons)


def _trial(found: Layout) -> str | None:
    try:
        group = RunCgroup.create(found, Spec(pids=64, memory_bytes=64 * 1024**2, cpus=1.0))
    except OSError as exc:
        return f"cannot make a cgroup under {exc.filename or found.hierarchies[0][1]}: {exc.strerror or exc}"
    group.remove()
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(found: Layout) -> None:
    """Remove run cgroups left by workers of this host that are gone (killing what is left in them)."""
    for _, folder in found.hierarchies:
        with contextlib.suppress(OSError):
            for entry in folder.iterdir():
                found_owner = owner(entry.name)
                if found_owner is None or found_owner[0] != _pid_ns():
                    continue
                pid = found_owner[1]
                if pid != os.getpid() and not _alive(pid):
                    RunCgroup(found, entry.name).kill()
                    RunCgroup(found, entry.name).remove()


class RunCgroup:
    """One run's cgroup, in every hierarchy of the layout: made with its limits, joined, read, emptied, removed."""

    def __init__(self, found: Layout, name: str) -> None:
        self.layout = found
        self.name = name
        self.folders = tuple((names, parent / name) for names, parent in found.hierarchies)

    @classmethod
    def create(cls, found: Layout, spec: Spec) -> RunCgroup:
        """Make the cgroup and write its limits; OSError (after removing what was made) when that fails."""
        group = cls(found, run_name())
        try:
            for names, folder in group.folders:
                folder.mkdir()
                for name, value in limit_writes(found.version, names, spec, os.listdir(folder)):
                    _write(folder / name, value)
        except OSError:
            group.remove()
            raise
        return group

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """The `cgroup.procs` file of every hierarchy: writing a pid there moves that process in."""
        return tuple(folder / "cgroup.procs" for _, folder in self.folders)

    def attach(self, pid: int) -> None:
        """Move a process (and so everything it starts from now on) into the cgroup."""
        for path in self.procs_files:
            _write(path, str(pid))

    def pids(self) -> list[int]:
        """The processes in the cgroup now (host pids)."""
        text = _read(self.procs_files[0]) or ""
        return [int(line) for line in text.split() if line.isdigit()]

    def usage(self) -> Usage:
        """The counters, read before the cgroup goes."""
        texts: dict[str, str | None] = {}
        for _, folder in self.folders:
            for name in COUNTERS[self.layout.version]:
                if texts.get(name) is None:
                    texts[name] = _read(folder / name)
        return read_usage(self.layout.version, texts)

    def oom_kills(self) -> int:
        """How many of the run's processes the OOM killer has taken so far (one small read)."""
        name = "memory.events" if self.layout.version == 2 else "memory.oom_control"
        for names, folder in self.folders:
            if "memory" in names.split(","):
                return _field(_read(folder / name), "oom_kill") or 0
        return 0

    def kill(self) -> None:
        """SIGKILL everything in the cgroup, including processes that left the run's session or pid tree.

        cgroup.kill (v2, Linux 5.14+) does it at once; otherwise the members are killed through pidfds
        (so a pid reused meanwhile is never hit) until none is left; forks meanwhile are bounded by pids.max.
        """
        first = self.folders[0][1]
        if self.layout.version == 2 and (first / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(first / "cgroup.kill", "1")
        deadline = time.monotonic() + KILL_SECONDS
        pause = 0.0002  # a killed process is gone within a fraction of a millisecond, mostly
        while time.monotonic() < deadline:
            members = self.pids()
            if not members:
                return
            for pid in members:
                _kill_member(pid, self.name)
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        log.warning("cgroup %s still has processes after %.0fs of killing", self.name, KILL_SECONDS)

    def remove(self) -> None:
        """Remove the cgroup's folders; retried while its last processes finish exiting."""
        deadline = time.monotonic() + REMOVE_SECONDS
        for _, folder in self.folders:
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("cannot remove cgroup %s: %s", folder, exc.strerror or exc)
                        break
                    time.sleep(0.001)


def _kill_member(pid: int, name: str) -> None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        if name in (_read(Path(f"/proc/{pid}/cgroup")) or ""):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)
