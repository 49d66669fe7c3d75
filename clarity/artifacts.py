"""The artifacts folder: one owner of its layout, its size cap, its retention and safe reading.

Layout (under Settings.artifacts_dir): `<execution id>/<task id>/attempt-<n>/` holding `prompt.md`,
`prompt.previous_error.txt`, `agent.log`, `diff.patch`, `checks.json`, `timings.json` and
`result.json`. Everything written through `write_text` is redacted and capped; the dashboard serves
files only through `resolve`, which keeps a path inside its execution's folder.
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


def resolve(root: Path, execution_id: str, relpath: str = "") -> Path | None:
    """The file or folder `relpath` inside the execution's folder, or None.

    None for anything that leaves the folder: `..`, absolute paths, and symlinks (an agent can write
    into its task's folder, so a link to a key file must never be followed).
    """
    if not execution_id or "/" in execution_id or execution_id in (".", ".."):
        return None
    base = execution_dir(root, execution_id)
    if not base.is_dir() or base.is_symlink():
        return None
    target = base
    for part in Path(relpath).parts if relpath else ():
        if part in ("", ".", "..", "/") or "\\" in part:
            return None
        target = target / part
        if target.is_symlink() or not target.exists():
            return None
    real_base = base.resolve()
    real = target.resolve()
    if real != real_base and real_base not in real.parents:
        return None
    return target


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a listing: a path relative to the execution's folder."""

    path: str
    is_dir: bool
    size: int


def listing(folder: Path, base: Path) -> list[Entry]:
    """Every file and folder under `folder` (symlinks left out, never followed), relative to `base`, sorted."""
    found: list[Entry] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        here = Path(top)
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        found += [Entry((here / d).relative_to(base).as_posix(), True, 0) for d in dirs]
        found += [Entry((here / f).relative_to(base).as_posix(), False, (here / f).stat().st_size)
                  for f in files if not (here / f).is_symlink()]
    return sorted(found, key=lambda e: e.path)


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
