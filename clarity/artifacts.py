"""The artifacts folder: one owner of its layout, its size cap, its retention and safe reading.

Layout (under Settings.artifacts_dir): `<execution id>/<task id>/attempt-<n>/` holding `prompt.md`,
`prompt.previous_error.txt`, `agent.log`, `diff.patch`, `checks.json`, `timings.json` and
`result.json`. Everything written through `write_text` is redacted and capped; the dashboard reads
files and folders only through `lookup`, which never follows a link or opens a FIFO or device, and keeps
to its execution's folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from clarity.redaction import redact

DEFAULT_MAX_BYTES = 1_000_000
TRUNCATED = "\n[truncated]\n"
DAY = 24 * 3600


def cap(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, keeping the head and ending with a `[truncated]` marker."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    marker = TRUNCATED.encode("utf-8")
    head = data[: max(0, max_bytes - len(marker))]
    return head.decode("utf-8", "ignore") + TRUNCATED


_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def write_text(path: Path, text: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Write an artifact: redacted first (a cut must not leave half a secret), then capped.

    Only the worker writes artifacts, into a folder no sandbox can write; still, the file is opened
    without following a link and without waiting on a FIFO, and anything but a regular file is refused.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cap(redact(text), max_bytes).encode("utf-8")
    fd = os.open(path, _WRITE_FLAGS, 0o644)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"artifact {path.name} is not a regular file")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return path


def execution_dir(root: Path, execution_id: str) -> Path:
    """The folder of one execution's artifacts."""
    return root / execution_id


# Opening what a sandbox may have touched: no link followed, no FIFO waited on, no terminal taken.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
MAX_LISTED = 5000  # entries one listing shows: a check that makes a million files does not make a million rows
MAX_DEPTH = 16  # folders a listing descends into


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a listing: a path relative to the execution's folder."""

    path: str
    is_dir: bool
    size: int


def parts_of(execution_id: str, relpath: str = "") -> list[str] | None:
    """The names to open, execution folder first; None for anything that could leave it (`..`, `\\`, NUL)."""
    names = [execution_id, *(p for p in relpath.split("/") if p)]
    if any(name in (".", "..") or "\\" in name or "\0" in name for name in names) or not execution_id:
        return None
    return names if "/" not in execution_id else None


def lookup(root: Path, execution_id: str, relpath: str = "", max_bytes: int = DEFAULT_MAX_BYTES,
           ) -> bytes | list[Entry] | None:
    """What `relpath` is in the execution's folder: a regular file's first `max_bytes` + 1 bytes, a folder's
    listing, or None (missing, outside, a link, a FIFO, a device).

    A check can write into its task's folder and swap a file for a link at any moment, so nothing is
    checked by path and then opened: each name is opened relative to its parent's descriptor with
    O_NOFOLLOW (a link anywhere fails) and O_NONBLOCK (a FIFO never waits for a writer), and what was
    opened is judged by `fstat`, the very file that would be read.
    """
    names = parts_of(execution_id, relpath)
    if names is None:
        return None
    try:
        fd = _open_beneath(root, names)
    except (OSError, ValueError):
        return None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            found: list[Entry] = []
            _walk(fd, "/".join(names[1:]), found, 0)
            return sorted(found, key=lambda e: e.path)
        return read_at_most(fd, max_bytes + 1) if stat.S_ISREG(mode) else None
    finally:
        os.close(fd)


def _open_beneath(root: Path, names: list[str]) -> int:
    """A descriptor of root/names[0]/…/names[-1], no link followed; only a last name inside may be a file."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the operator's folder
    try:
        for index, name in enumerate(names):
            last = index == len(names) - 1
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if not (stat.S_ISDIR(mode) or (last and index and stat.S_ISREG(mode))):
                raise FileNotFoundError(name)  # never even open a link, FIFO, socket or device
            child = os.open(name, READ_FLAGS | (0 if last else os.O_DIRECTORY), dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_at_most(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from an open file, however the reads come back."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _walk(fd: int, prefix: str, found: list[Entry], depth: int) -> None:
    """Add the folders and regular files under the open folder `fd` (links, FIFOs and devices left out)."""
    with os.scandir(fd) as entries:
        named = sorted(entries, key=lambda e: e.name)
    for entry in named:
        if len(found) >= MAX_LISTED:
            return
        path = f"{prefix}/{entry.name}" if prefix else entry.name
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:  # gone meanwhile
            continue
        if stat.S_ISREG(info.st_mode):
            found.append(Entry(path, False, info.st_size))
        elif stat.S_ISDIR(info.st_mode):
            found.append(Entry(path, True, 0))
            if depth < MAX_DEPTH:
                _walk_into(fd, entry.name, path, found, depth + 1)


def _walk_into(parent: int, name: str, path: str, found: list[Entry], depth: int) -> None:
    try:
        child = os.open(name, READ_FLAGS | os.O_DIRECTORY, dir_fd=parent)
    except OSError:  # swapped for a link or removed since it was listed
        return
    try:
        _walk(child, path, found, depth)
    finally:
        os.close(child)


def newest_mtime(folder: Path) -> float:
    """The newest modification time of the folder or anything in it (symlinks not followed)."""
    newest = folder.lstat().st_mtime
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            newest = max(newest, (Path(top) / name).lstat().st_mtime)
    return newest


def expired(mtimes: dict[str, float], now: float, retention_days: float) -> list[str]:
    """Pure retention rule: the execution folders whose newest file is older than `retention_days`."""
    cutoff = now - retention_days * DAY
    return sorted(name for name, mtime in mtimes.items() if mtime < cutoff)


def prune(root: Path, retention_days: float, now: float | None = None) -> list[str]:
    """Delete the artifact folders of executions untouched for `retention_days`; return their ids.

    Age is the newest file's, so a long execution that still writes keeps its early attempts.
    """
    if retention_days <= 0 or not root.is_dir():
        return []
    mtimes = {p.name: newest_mtime(p) for p in root.iterdir() if p.is_dir() and not p.is_symlink()}
    gone = expired(mtimes, time.time() if now is None else now, retention_days)
    for name in gone:
        shutil.rmtree(root / name, ignore_errors=True)
    return gone
