"""The exchange folder: the one place besides its workspace where a sandboxed run may write.

The worker hands a run its prompt there and takes back what the run leaves (a usage report, an
agent's chat history). Everything in it is the run's: the worker never writes through what it finds
(it empties the folder itself before a run) and reads only regular files, opened without following
links and without blocking (a FIFO or a device is refused, never waited on), up to a cap. The task's
artifacts folder is the worker's alone: no sandbox can write it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from clarity.artifacts import READ_FLAGS, read_at_most


class NotRegular(OSError):
    """The path is a link, a folder, a FIFO, a socket or a device: nothing the worker reads."""


def remove(path: Path) -> None:
    """Remove a file, link or folder without following links; nothing when it is not there."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)  # fd-based on Linux: a link inside is removed, never followed


def fresh(path: Path) -> Path:
    """An empty folder at `path`, made by the worker whatever a run left there before; returns it."""
    remove(path)
    path.mkdir(parents=True)
    return path


def read_regular(path: Path, max_bytes: int) -> tuple[bytes, bool]:
    """(the first `max_bytes` bytes, whether there were more) of a regular file a sandbox may have made.

    Raises FileNotFoundError when nothing is there, NotRegular for a link, folder, FIFO or device.
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegular(errno.ELOOP, f"{path.name} is a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(errno.EINVAL, f"{path.name} is not a regular file")
        data = read_at_most(fd, max_bytes + 1)
    finally:
        os.close(fd)
    return data[:max_bytes], len(data) > max_bytes


def take_text(path: Path, max_bytes: int) -> str | None:
    """A regular file's text (cut at `max_bytes`), or None when it is missing or anything but a regular file."""
    try:
        data, more = read_regular(path, max_bytes)
    except (FileNotFoundError, NotRegular):
        return None
    text = data.decode("utf-8", "replace")
    return text + "\n[truncated]\n" if more else text
