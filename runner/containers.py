"""What the docker sandbox needs around a container: its cgroup meter, its owner, leftovers to remove.

Pure decisions (which cgroup files, which containers are leftovers) with thin readers beside them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
LABEL_OWNER = "clarity.owner"
SAMPLE_EVERY = 0.002  # seconds between cgroup reads while a container runs


@dataclass(frozen=True, slots=True)
class CgroupFiles:
    """Where one container's counters live on this host; None where this kernel has no such file."""

    cpu: Path | None  # cumulative CPU time: cpuacct.usage (ns, v1) or cpu.stat usage_usec (v2)
    memory_peak: Path | None  # memory.max_usage_in_bytes (v1) or memory.peak (v2, Linux 5.19+)
    pids_events: Path | None  # "max N": how many forks the pids limit refused


def cgroup_files(proc_cgroup: str, root: Path = CGROUP_ROOT) -> CgroupFiles:
    """The counter files for a process, from its /proc/<pid>/cgroup (v1, v2 or hybrid hierarchies)."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            v2 = path
        for controller in controllers.split(","):
            v1[controller] = f"{controllers}{path}"
    unified = root if (root / "cgroup.controllers").exists() else root / "unified"

    def pick(controller: str, v1_name: str, v2_name: str) -> Path | None:
        candidates = []
        if controller in v1:
            candidates.append(root / v1[controller] / v1_name)
        if v2 is not None:
            candidates.append(unified / v2.lstrip("/") / v2_name)
        return next((path for path in candidates if path.exists()), None)

    return CgroupFiles(
        cpu=pick("cpuacct", "cpuacct.usage", "cpu.stat"),
        memory_peak=pick("memory", "memory.max_usage_in_bytes", "memory.peak"),
        pids_events=pick("pids", "pids.events", "pids.events"),
    )


def cgroup_lines(path: str) -> str:
    """/proc/<pid>/cgroup as a process in `path` of every hierarchy would show it."""
    return "".join(f"0:{name}:{path}\n" for name in ("cpuacct", "memory", "pids")) + f"0::{path}\n"


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError:
        return None  # the cgroup goes away with the container


def _field(text: str, name: str) -> int | None:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


class CgroupSampler:
    """Samples a container's cgroup from a thread while it runs; keeps what it last read.

    The cgroup goes with the container, and a run can hit its pids limit and exit within milliseconds,
    so the files are opened once and read every SAMPLE_EVERY seconds (a few cheap preads).
    """

    __slots__ = ("_fds", "_stop", "_thread", "cpu_seconds", "files", "memory_peak", "pids_refused")

    def __init__(self, files: CgroupFiles) -> None:
        self.files = files
        self.cpu_seconds: float | None = None
        self.memory_peak: int | None = None
        self.pids_refused = 0
        self._fds: dict[str, int] = {}
        for name, path in (("cpu", files.cpu), ("memory_peak", files.memory_peak), ("pids", files.pids_events)):
            if path is not None:
                with contextlib.suppress(OSError):
                    self._fds[name] = os.open(path, os.O_RDONLY)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_container(cls, container_id: str, pid: Callable[[], int], root: Path = CGROUP_ROOT) -> CgroupSampler:
        """A meter for a running container's cgroup; one that reads nothing when it cannot be found.

        The usual places (cgroupfs and systemd drivers) are tried first, without a round trip to the
        engine; then `pid()` (its init's host pid) and /proc tell where a custom cgroup parent put it.
        """
        for layout in (f"/docker/{container_id}", f"/system.slice/docker-{container_id}.scope"):
            files = cgroup_files(cgroup_lines(layout), root)
            if files != CgroupFiles(None, None, None):
                return cls(files)
        host_pid = pid()
        text = _read(Path(f"/proc/{host_pid}/cgroup")) if host_pid > 0 else None
        if not text or container_id not in text:
            return cls(CgroupFiles(None, None, None))  # it has gone already, and its pid with it
        return cls(cgroup_files(text, root))

    def start(self) -> None:
        """Sample from a thread until stop()."""
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="clarity-meter", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def stop(self) -> None:
        """Stop sampling, read once more (if the cgroup is still there) and close the files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _text(self, name: str) -> str | None:
        fd = self._fds.get(name)
        if fd is None:
            return None
        try:
            return os.pread(fd, 4096, 0).decode("ascii", "replace")
        except OSError:
            return None  # ENODEV: the cgroup went with the container

    def sample(self) -> None:
        """Read the counters once; unreadable ones keep their last value."""
        cpu = self._text("cpu")
        if cpu is not None:
            if self.files.cpu is not None and self.files.cpu.name == "cpu.stat":
                usec = _field(cpu, "usage_usec")
                self.cpu_seconds = usec / 1e6 if usec is not None else self.cpu_seconds
            elif cpu.strip().isdigit():
                self.cpu_seconds = int(cpu) / 1e9
        peak = self._text("memory_peak")
        if peak is not None and peak.strip().isdigit():
            self.memory_peak = max(int(peak), self.memory_peak or 0)
        events = self._text("pids")
        if events is not None:
            self.pids_refused = max(self.pids_refused, _field(events, "max") or 0)

    def usage(self) -> dict[str, float]:
        """What was measured, under the names the Result carries."""
        usage: dict[str, float] = {}
        if self.cpu_seconds is not None:
            usage["cpu_seconds"] = self.cpu_seconds
        if self.memory_peak is not None:
            usage["memory_peak_bytes"] = float(self.memory_peak)
        if self.pids_refused:
            usage["pids_refused"] = float(self.pids_refused)
        return usage


# -- owners and leftovers ------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, which tells it from a later one with its pid."""
    text = _read(Path(f"/proc/{pid}/stat"))
    if text is None:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def owner_label(pid: int | None = None) -> str:
    """`host:pid:start` of the process that starts containers (a work horse), for the leftover sweep."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}"


def owner_alive(label: str, host: str, start_of: Mapping[int, str | None] | None = None) -> bool:
    """Whether the process a container's owner label names is still running.

    Owners on other hosts are taken to be alive: only their own host can tell. `start_of` maps pids
    to start times for tests; by default /proc is read.
    """
    parts = label.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not a label we wrote: nobody owns it
    owner_host, pid, start = parts[0], int(parts[1]), parts[2]
    if owner_host != host:
        return True
    now = start_of.get(pid) if start_of is not None else _start_time(pid)
    return now is not None and now == start


def leftovers(containers: Iterable[tuple[str, Mapping[str, str]]], host: str,
              start_of: Mapping[int, str | None] | None = None) -> list[str]:
    """The ids of the (id, labels) containers whose owner on this host is gone."""
    return [cid for cid, labels in containers if not owner_alive(labels.get(LABEL_OWNER, ""), host, start_of)]


def this_host() -> str:
    """The name owner labels use for this machine."""
    return socket.gethostname()


def hand_over(paths: Iterable[Path], uid: int, gid: int) -> None:
    """Give every file under paths (symlinks themselves, never their targets) to uid:gid."""
    for top in paths:
        with contextlib.suppress(FileNotFoundError):
            os.lchown(top, uid, gid)
        for folder, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                with contextlib.suppress(FileNotFoundError):
                    os.lchown(os.path.join(folder, name), uid, gid)
