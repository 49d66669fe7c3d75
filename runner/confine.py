"""What holds one local run besides bubblewrap: its cgroup, the disk watch, the folders lent to its user.

The local sandbox (runner.sandbox) starts a run in three steps around Popen: `Confinement.start`
makes the run's cgroup (runner.cgroups) with its limits, starts the disk watch (runner.diskwatch) and,
when the run is to be another user than the worker (nobody, for a root worker), lends it its
workspace and writable folders; the run's processes join the cgroup before the command execs (bwrap
blocks until `join` has put its child in, a run without bwrap starts through a two-line shell that
puts itself in first); `end` kills whatever is left in the cgroup (a process that left the session
too), reads the usage, removes the cgroup and gives the folders back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import stat
from collections.abc import Sequence
from pathlib import Path

from runner import cgroups
from runner.cgroups import RunCgroup, Spec
from runner.diskwatch import DiskWatch

log = logging.getLogger(__name__)

SH = "/bin/sh"
# Put this shell in every cgroup.procs file named first, then become the command: nothing it starts
# runs outside the cgroup. Exit 125 (and a line on stderr) when a file cannot be written.
ATTACH = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || { echo "clarity: cannot enter the cgroup" >&2; '
          'exit 125; }; shift; n=$((n - 1)); done; exec "$@"')
EXIT_ATTACH_FAILED = 125


def lend(paths: Sequence[Path], uid: int, gid: int) -> None:
    """Give every entry under the paths to uid:gid for a run: links themselves, never their targets.

    A regular file with more than one link is left alone (it may be a link to a file outside the
    folders), and so is anything on another file system (a mount inside the folders).
    """
    for top in paths:
        with contextlib.suppress(FileNotFoundError):
            device = os.lstat(top).st_dev
            os.chown(top, uid, gid, follow_symlinks=False)
            for _, dirs, files, fd in os.fwalk(top, follow_symlinks=False):
                for name in (*dirs, *files):
                    _chown_at(fd, name, uid, gid, device)


def _chown_at(fd: int, name: str, uid: int, gid: int, device: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if info.st_dev != device or (stat.S_ISREG(info.st_mode) and info.st_nlink > 1):
            return
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)


class Confinement:
    """One run's cgroup, disk watch and lent folders."""

    def __init__(self, cgroup: RunCgroup | None, watch: DiskWatch | None,
                 lent: Sequence[tuple[Path, int, int]] = ()) -> None:
        self.cgroup = cgroup
        self.watch = watch
        self.lent = tuple(lent)
        self.reason: str | None = None  # "disk" or "memory" once the run has to end for it
        self.note = ""
        self.ended = False

    @classmethod
    def start(cls, layout: cgroups.Layout | None, spec: Spec, watched: Sequence[Path], disk_bytes: int | None,
              run_as: tuple[int, int] | None) -> Confinement:
        """Make the cgroup (when there are limits for it and a layout), watch the folders, lend them.

        OSError when the cgroup cannot be made: the caller turns that into an IsolationError.
        """
        wanted = (spec.pids, spec.memory_bytes, spec.cpus) != (None, None, None)
        cgroup = RunCgroup.create(layout, spec) if layout is not None and wanted else None
        try:
            lent = []
            if run_as is not None:
                for path in watched:
                    with contextlib.suppress(FileNotFoundError):
                        owner = os.lstat(path)
                        lent.append((Path(path), owner.st_uid, owner.st_gid))
                lend([path for path, _, _ in lent], *run_as)
            members = cgroup.pids if cgroup is not None else tuple
            watch = DiskWatch(watched, disk_bytes, members) if disk_bytes is not None else None
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        return cls(cgroup, watch, lent)

    def wrapper(self) -> list[str]:
        """The argv prefix that puts a run started without bwrap in its cgroup before the command execs."""
        if self.cgroup is None:
            return []
        files = [str(path) for path in self.cgroup.procs_files]
        return [SH, "-c", ATTACH, "clarity-cgroup", str(len(files)), *files]

    def join(self, info_fd: int, rlimits: Sequence[tuple[int, tuple[int, int]]] = ()) -> bool:
        """Put the child bwrap announces on `info_fd` (the sandbox's pid 1, which starts the command only
        once it is let go) under the rlimits and in the cgroup; False when that could not be done, and
        the run must not start."""
        data = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(info_fd, 4096):
                data += chunk
        try:
            child = int(json.loads(data.decode() or "{}")["child-pid"])
            for res, pair in rlimits:
                resource.prlimit(child, res, pair)
            if self.cgroup is not None:
                self.cgroup.attach(child)
        except (ValueError, TypeError, KeyError, OSError) as exc:
            log.warning("a sandboxed run could not be put under its limits: %s", exc)
            return False
        return True

    def members(self) -> list[int]:
        """The run's processes now (empty without a cgroup)."""
        return self.cgroup.pids() if self.cgroup is not None else []

    def over(self) -> str | None:
        """"memory" once the OOM killer took one of the run's processes, "disk" once its folders hold more
        than the cap; None while neither (looked at every time the sandbox looks at the run)."""
        if self.reason is None and self.cgroup is not None and self.cgroup.oom_kills():
            self.reason = "memory"
        if self.reason is None and self.watch is not None and self.watch.over():
            self.reason, self.note = "disk", self.watch.describe()
        return self.reason

    def end(self) -> dict[str, float]:
        """Kill what is left of the run, read its usage, remove its cgroup, give the folders back."""
        usage: dict[str, float] = {}
        self.ended = True
        try:
            if self.cgroup is not None:
                self.cgroup.kill()
                counted = self.cgroup.usage()
                usage = counted.as_dict()
                if counted.oom_kills and self.reason is None:
                    self.reason = "memory"
                self.cgroup.remove()
        finally:
            for path, uid, gid in self.lent:
                lend([path], uid, gid)
        return usage
