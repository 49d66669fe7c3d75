"""Where a running demo's forge is: a small per-user file the demo writes, and `python -m forge` reads.

The file (`$XDG_RUNTIME_DIR/clarity/demo.json`, else `$XDG_CACHE_HOME` or `~/.cache`) holds URLs and the
writer's pid, never a secret. A file whose writer is gone or whose forge does not answer is stale: the
reader ignores it and says why, so a crashed demo never sends commands to a port someone else now holds.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_NAME = "demo.json"


@dataclass(frozen=True, slots=True)
class Found:
    """What a look for the demo's file found: the forge URL, or why there is none (`note`, for people)."""

    url: str | None
    note: str | None = None


def state_path(env: Mapping[str, str] | None = None) -> Path:
    """The per-user file a running demo announces itself in."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "clarity" / FILE_NAME
    cache = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(cache) / "clarity" / FILE_NAME


def announce(path: Path, info: Mapping[str, Any]) -> None:
    """Write the file (with this process's pid) atomically, readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps({**info, "pid": os.getpid()}, indent=2) + "\n")
    partial.chmod(0o600)
    os.replace(partial, path)


def withdraw(path: Path) -> None:
    """Remove the file if this process wrote it (a newer demo's file stays)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def discover(path: Path, timeout: float = 2.0) -> Found:
    """The forge URL from the demo's file if its writer runs and its forge answers; else why not."""
    try:
        info = json.loads(path.read_text())
        url, pid = str(info["forge"]), int(info["pid"])
    except FileNotFoundError:
        return Found(None)
    except (OSError, ValueError, TypeError, KeyError) as err:
        return Found(None, f"ignoring {path}: it is not a demo's file ({err!r})")
    if not _running(pid):
        return Found(None, f"ignoring {path}: the demo that wrote it (pid {pid}) is no longer running")
    if not _answers(url, timeout):
        return Found(None, f"ignoring {path}: its forge {url} does not answer")
    return Found(url)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds the pid: not our demo, but alive
        return True
    return True


def _answers(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/_forge/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
