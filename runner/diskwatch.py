"""What a run may keep on disk: its workspace and writable folders hold at most a cap while it runs.

RLIMIT_FSIZE caps one file; nothing capped the sum, so a check could write 1.2 GB into the workspace
in files under the per-file limit (or into files it unlinked and held open, which no walk of the
folders finds). The watch looks at the file systems' used space every time the sandbox looks at the
run (a `statvfs`, microseconds), and only when they grew by more than the run could still add does it
count for real: the folders' allocated blocks, plus the deleted files the run's processes hold open.
A neighbour's writes on the same file system make it count, never kill: the count decides.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

BLOCK = 512  # st_blocks unit


def _used(path: Path) -> int:
    vfs = os.statvfs(path)
    return (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize


def allocated(paths: Iterable[Path]) -> int:
    """Bytes allocated under the paths: every file and folder once (hard links once), links never followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(path) for path in paths]
    while stack:
        top = stack.pop()
        try:
            info = os.lstat(top)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        total += info.st_blocks * BLOCK
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError), os.scandir(top) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    with contextlib.suppress(OSError):
                        found = entry.stat(follow_symlinks=False)
                        key = (found.st_dev, found.st_ino)
                        if key not in seen:
                            seen.add(key)
                            total += found.st_blocks * BLOCK
    return total


def held_deleted(pids: Iterable[int], devices: set[int]) -> int:
    """Bytes of regular files on `devices` that the processes hold open after they were deleted."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                with contextlib.suppress(OSError):
                    info = os.stat(f"{folder}/{name}")  # the open file itself, whatever its name was
                    key = (info.st_dev, info.st_ino)
                    if (stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and info.st_dev in devices
                            and key not in seen):
                        seen.add(key)
                        total += info.st_blocks * BLOCK
    return total


class DiskWatch:
    """The cap on what one run's folders hold, checked cheaply and often, counted only when it may bite."""

    def __init__(self, paths: Sequence[Path], cap: int, members: Callable[[], Iterable[int]] = tuple) -> None:
        self.paths = tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in paths if os.path.isdir(p)))
        self.cap = cap
        self.members = members
        self.devices = {os.stat(p).st_dev: p for p in self.paths}
        self.held = allocated(self.paths)
        self._arm()

    def _arm(self) -> None:
        """Remember the file systems' use now and how much more the run may add before a count."""
        self.base = {dev: _used(path) for dev, path in self.devices.items()}
        self.room = self.cap - self.held

    def grown(self) -> int:
        """How much the watched file systems grew since the last count (anyone's writes, not only the run's)."""
        return sum(_used(path) - self.base[dev] for dev, path in self.devices.items())

    def over(self) -> bool:
        """True when the run's folders (and the deleted files it holds open) hold more than the cap."""
        if self.grown() <= self.room:
            return False
        self.held = allocated(self.paths) + held_deleted(self.members(), set(self.devices))
        if self.held > self.cap:
            return True
        self._arm()  # a neighbour wrote, or the run freed space: count again after the next stretch
        return False

    def describe(self) -> str:
        """The note a run killed by the watch gets on its stderr."""
        return (f"[clarity: the workspace and the run's folders held {self.held / 2**20:.0f} MiB, over the "
                f"disk limit of {self.cap / 2**20:.0f} MiB]")
