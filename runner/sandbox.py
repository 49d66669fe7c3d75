"""Run untrusted commands: a process group with rlimits, a wall clock, a scrubbed environment, bwrap."""

from __future__ import annotations

import functools
import logging
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

from clarity import metrics
from runner.isolation import BWRAP, Isolation, command_prefix, secret_paths, unavailable_reason

log = logging.getLogger(__name__)

IsolationMode = Literal["auto", "bwrap", "none"]
ISOLATION_MODES: tuple[IsolationMode, ...] = ("auto", "bwrap", "none")
DEFAULT_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
WAIT_POLL = 0.05  # seconds between looks at the deadline and the cancel event while a run goes on
OUTPUT_GRACE = 5.0  # seconds to read what is left of the output once the run's group is killed


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one run.

    `processes` sets RLIMIT_NPROC, which counts every process of the user and is ignored for root:
    it only means something when the worker runs as a dedicated non-root user. `memory_bytes` limits
    the address space (RLIMIT_AS), which runtimes that reserve large virtual areas (JVM, Go) dislike.
    `output_bytes` caps each of stdout and stderr; the tail is kept. `network` lets an isolated run
    keep the host's network (and loopback); without isolation the network is always there.
    """

    timeout: float = 900.0
    cpu_seconds: int | None = 600
    memory_bytes: int | None = 2 * 1024**3
    file_size_bytes: int | None = 512 * 1024**2
    open_files: int | None = 1024
    processes: int | None = None
    output_bytes: int = 1_000_000
    network: bool = False
    core_files: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """What a run produced: exit code (128+N when killed by signal N), output tails, timing, usage.

    `isolation` says how the command ran: "bwrap" or "none"; `usage` is empty under bwrap.
    """

    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    killed_by: str | None = None
    usage: dict[str, float] = field(default_factory=dict)
    isolation: str = "none"

    @property
    def ok(self) -> bool:
        """True when the command exited 0 on its own."""
        return self.exit_code == 0 and not self.timed_out and self.killed_by is None

    def output_tail(self, chars: int = 4000) -> str:
        """The last `chars` characters of stdout then stderr, with a note when the run was killed."""
        parts = [part.rstrip("\n") for part in (self.stdout, self.stderr) if part.strip()]
        if self.killed_by:
            parts.append(f"[killed: {self.killed_by} after {self.duration:.1f}s, exit code {self.exit_code}]")
        text = "\n".join(parts)
        if len(text) <= chars:
            return text
        return "[...]\n" + text[len(text) - chars :]


class Sandbox(Protocol):
    """Something that runs a command in a directory under limits and reports a Result."""

    def run(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        stdin: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run argv in workdir; never raise for a failing or missing command."""
        ...


def scrub_env(
    parent: Mapping[str, str], allowlist: Sequence[str], explicit: Mapping[str, str]
) -> dict[str, str]:
    """The child's environment: allowlisted parent variables, then the explicit ones on top."""
    child = {name: parent[name] for name in allowlist if name in parent}
    child.update(explicit)
    child.setdefault("PATH", FALLBACK_PATH)
    return child


def rlimits_for(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    """(resource, (soft, hard)) pairs for the limits, never above the current hard limit."""
    wanted: list[tuple[int, int | None, int]] = [
        (resource.RLIMIT_CPU, limits.cpu_seconds, 5),  # hard > soft: SIGXCPU first, SIGKILL later
        (resource.RLIMIT_AS, limits.memory_bytes, 0),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, 0),
        (resource.RLIMIT_NOFILE, limits.open_files, 0),
        (resource.RLIMIT_NPROC, limits.processes, 0),
        (resource.RLIMIT_CORE, None if limits.core_files else 0, 0),  # no core files in the workspace
    ]
    pairs = []
    for res, value, headroom in wanted:
        if value is None:
            continue
        _, current_hard = resource.getrlimit(res)
        hard = value + headroom
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
        pairs.append((res, (min(value, hard), hard)))
    return pairs


_PRLIMIT_OPTIONS = {resource.RLIMIT_CPU: "cpu", resource.RLIMIT_AS: "as", resource.RLIMIT_FSIZE: "fsize",
                    resource.RLIMIT_NOFILE: "nofile", resource.RLIMIT_NPROC: "nproc", resource.RLIMIT_CORE: "core"}


@functools.cache
def _prlimit() -> str | None:
    return shutil.which("prlimit")


def prlimit_argv(pairs: Sequence[tuple[int, tuple[int, int]]]) -> list[str] | None:
    """`prlimit --cpu=soft:hard ... --`, which sets `pairs` on itself and execs the rest; None without it."""
    program = _prlimit()
    if program is None or any(res not in _PRLIMIT_OPTIONS for res, _ in pairs):
        return None
    return [program, *(f"--{_PRLIMIT_OPTIONS[res]}={soft}:{hard}" for res, (soft, hard) in pairs), "--"]


class _TailBuffer:
    """Keeps the last `cap` bytes written to it and counts what it dropped."""

    __slots__ = ("cap", "data", "dropped")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        """Append a chunk, trimming the front once it holds well over the cap."""
        self.data += chunk
        if len(self.data) > 2 * self.cap + 65536:
            self._trim()

    def _trim(self) -> None:
        excess = len(self.data) - self.cap
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        """The kept tail as text, with a note saying how much was cut."""
        self._trim()
        body = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            return f"[clarity: {self.dropped} earlier bytes of output truncated]\n{body}"
        return body


class _Pipes:
    """A run's output pipes, read as data comes, from the thread that supervises the run."""

    def __init__(self, sinks: dict[int, _TailBuffer]) -> None:
        self.sinks = dict(sinks)
        self.poller = select.poll()
        for fd in self.sinks:
            self.poller.register(fd, select.POLLIN)

    def read(self, seconds: float) -> None:
        """Wait up to `seconds` for output (or anything else registered), and take what came."""
        for fd, _ in self.poller.poll(max(0, int(seconds * 1000)) or 1):
            sink = self.sinks.get(fd)
            if sink is None:
                continue  # the leader's exit: the caller looks
            chunk = os.read(fd, 65536)
            if chunk:
                sink.add(chunk)
            else:  # end of file: every writer has gone
                self.poller.unregister(fd)
                del self.sinks[fd]

    def drain(self, deadline: float) -> bool:
        """Read until every pipe has ended; False if a writer still held one open at the deadline."""
        while self.sinks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.read(left)
        return True

    def close(self) -> None:
        """Stop watching (the pipes themselves belong to the Popen)."""
        for fd in list(self.sinks):
            self.poller.unregister(fd)
        self.sinks.clear()


def _feed(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
    except OSError:
        pass  # the child closed its stdin; what it did not read it did not want
    finally:
        try:
            stream.close()
        except OSError:
            pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie, so its pid (the group id) cannot be reused before we kill the group.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _describe_signal(sig: int, limits: Limits, usage: Mapping[str, float]) -> str:
    if sig == signal.SIGXCPU:
        return "cpu"
    if sig == signal.SIGXFSZ:
        return "file_size"
    cpu_used = usage.get("ru_utime", 0.0) + usage.get("ru_stime", 0.0)
    if sig == signal.SIGKILL and limits.cpu_seconds is not None and cpu_used >= limits.cpu_seconds:
        return "cpu"
    try:
        return f"signal:{signal.Signals(sig).name}"
    except ValueError:
        return f"signal:{sig}"


class IsolationError(RuntimeError):
    """Isolation was demanded but cannot be had on this machine; the message says how to fix it."""


@functools.cache
def _warn_unisolated(reason: str) -> None:
    # Cached: said once per process (and reason), not before every agent run.
    log.warning("bubblewrap unavailable (%s): running agents without filesystem/network isolation", reason)


def _worker_homes(parent_env: Mapping[str, str]) -> list[Path]:
    homes = [Path(pwd.getpwuid(os.getuid()).pw_dir)]
    if parent_env.get("HOME"):
        homes.append(Path(parent_env["HOME"]))
    return homes


def _locate(program: str, workdir: Path, search_path: str) -> Result | None:
    """None when program can be executed, else the Result a failed exec would give (127 or 126).

    Under bwrap the exec happens inside bwrap, which would report any failure as its own exit 1.
    """
    if os.sep in program:
        candidates = [workdir / program]
    else:
        candidates = [workdir / entry / program for entry in search_path.split(os.pathsep)]
    found = [path for path in candidates if path.is_file()]
    if not found:
        return Result(EXIT_NOT_FOUND, "", f"command not found: {program}\n", 0.0, isolation="bwrap")
    if not any(os.access(path, os.X_OK) for path in found):
        return Result(EXIT_NOT_EXECUTABLE, "", f"permission denied: {program}\n", 0.0, isolation="bwrap")
    return None


class LocalSandbox:
    """Subprocess in its own session; rlimits; a wall clock that kills the whole group; scrubbed env;
    bubblewrap around it when it works (`isolation="auto"`), always (`"bwrap"`) or never (`"none"`).

    Under bwrap the run sees the root read-only, its workdir, `writable` and a temporary HOME
    read-write, the `hide` paths (and the worker's credential files) empty, no network unless
    `Limits.network`, and only its own processes. Without bwrap, processes that leave the group on
    purpose (setsid, double fork into a new session) escape the clean-up.
    """

    def __init__(
        self,
        env_allowlist: Sequence[str] = DEFAULT_ENV_ALLOWLIST,
        kill_grace: float = 2.0,
        parent_env: Mapping[str, str] | None = None,
        *,
        isolation: IsolationMode = "auto",
        hide: Sequence[Path] = (),
        writable: Sequence[Path] = (),
        readonly: Sequence[tuple[Path, Path]] = (),
        bwrap: str = BWRAP,
    ) -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_MODES)}, not {isolation!r}")
        self.env_allowlist = tuple(env_allowlist)
        self.kill_grace = kill_grace
        self._parent_env = parent_env
        self.isolation = isolation
        parent = os.environ if parent_env is None else parent_env
        self.hide = (*secret_paths(_worker_homes(parent)), *(Path(path) for path in hide))
        self.writable = tuple(Path(path) for path in writable)
        self.readonly = tuple((Path(source), Path(dest)) for source, dest in readonly)
        self.bwrap = bwrap
        if isolation == "bwrap":
            reason = unavailable_reason(bwrap)
            if reason is not None:
                raise IsolationError(
                    f"isolation='bwrap' was asked for, but bubblewrap cannot run here: {reason}. "
                    "Install it (apt-get install bubblewrap) or use isolation='auto'."
                )

    def isolated(self) -> bool:
        """Whether runs go through bwrap; "auto" asks once per process and says so when it cannot."""
        if self.isolation == "none":
            return False
        reason = unavailable_reason(self.bwrap)
        if reason is not None:
            _warn_unisolated(reason)
            return False
        return True

    def run(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        stdin: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run argv in workdir under limits; a missing executable is exit code 127, never an exception."""
        if not argv:
            raise ValueError("empty argv")
        isolated = self.isolated()
        kind = "bwrap" if isolated else "none"
        if not Path(workdir).is_dir():
            return Result(
                EXIT_NOT_EXECUTABLE, "", f"working directory does not exist: {workdir}\n", 0.0, isolation=kind
            )
        child_env = scrub_env(
            os.environ if self._parent_env is None else self._parent_env, self.env_allowlist, env
        )
        if isolated:
            if "TMPDIR" not in env:
                child_env["TMPDIR"] = "/tmp"  # the run's private /tmp; the worker's TMPDIR is read-only
            missing = _locate(argv[0], Path(workdir), child_env["PATH"])
            if missing is not None:
                return missing
        temp_home = None
        if "HOME" not in child_env:
            temp_home = tempfile.mkdtemp(prefix="clarity-home-")
            child_env["HOME"] = temp_home
        prefix: list[str] = []
        if isolated:
            writable = (*self.writable, *([Path(temp_home)] if temp_home else []))
            prefix = command_prefix(Isolation(self.hide, writable, limits.network, self.readonly), Path(workdir),
                                    self.bwrap)
        try:
            return self._run(prefix, list(argv), Path(workdir), child_env, limits, stdin, cancel)
        finally:
            if temp_home:
                shutil.rmtree(temp_home, ignore_errors=True)

    def _run(
        self,
        prefix: list[str],
        argv: list[str],
        workdir: Path,
        env: dict[str, str],
        limits: Limits,
        stdin: str | None,
        cancel: threading.Event | None,
    ) -> Result:
        pairs = rlimits_for(limits)
        # Under bwrap, util-linux's prlimit sets the limits on itself and execs bwrap: the same limits
        # on the same process, and no Python hook in the child, so Python can vfork (a fork of a large
        # worker plus the hook cost 10 to 40 ms a run here). Without bwrap the hook stays, so a missing
        # program is still reported by Popen (127, "command not found") rather than by prlimit.
        wrapper = prlimit_argv(pairs) if prefix and pairs else None

        def apply_limits() -> None:  # runs in the child between fork and exec: keep it tiny
            for res, pair in pairs:
                resource.setrlimit(res, pair)

        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [*(wrapper or ()), *prefix, *argv],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # bwrap's --die-with-parent fires when the thread that started it ends: run() blocks
                # in that thread until the run is over, so it outlives the child.
                start_new_session=True,
                # Python 3.11 has no other way to set rlimits in the child before exec. The hook only calls
                # setrlimit with values computed beforehand: no imports, no logging, no locks to deadlock on.
                # Under bwrap the limits are set on bwrap and inherited by everything it starts.
                # Without limits to set (or with prlimit setting them), no hook: then Python can vfork.
                preexec_fn=apply_limits if pairs and wrapper is None else None,  # noqa: PLW1509
                close_fds=True,
            )
        except FileNotFoundError:
            return Result(EXIT_NOT_FOUND, "", f"command not found: {argv[0]}\n", time.monotonic() - started)
        except PermissionError:
            return Result(
                EXIT_NOT_EXECUTABLE, "", f"permission denied: {argv[0]}\n", time.monotonic() - started
            )
        except OSError as exc:
            return Result(
                EXIT_NOT_EXECUTABLE,
                "",
                f"cannot execute {argv[0]}: {exc.strerror}\n",
                time.monotonic() - started,
            )
        return self._supervise(proc, started, limits, stdin, cancel, bool(prefix))

    def _supervise(
        self,
        proc: subprocess.Popen[bytes],
        started: float,
        limits: Limits,
        stdin: str | None,
        cancel: threading.Event | None,
        isolated: bool,
    ) -> Result:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = _TailBuffer(limits.output_bytes), _TailBuffer(limits.output_bytes)
        feeder = None
        if stdin is not None and proc.stdin is not None:
            feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True)
            feeder.start()
        # Both pipes and the leader's exit are watched from this thread (one poll): two pump threads
        # started and joined for every run cost more than a short git call itself.
        pipes = _Pipes({proc.stdout.fileno(): out, proc.stderr.fileno(): err})
        try:
            reason = self._wait(proc.pid, started + limits.timeout, cancel, pipes)
            if reason is not None:
                self._terminate(proc.pid, pipes)
            _killpg(proc.pid, signal.SIGKILL)  # leftovers (a background `sleep &`) die with the run
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            duration = time.monotonic() - started
            held = not pipes.drain(time.monotonic() + OUTPUT_GRACE)
        finally:
            pipes.close()
        if feeder is not None:
            feeder.join(timeout=OUTPUT_GRACE)
        proc.stdout.close()
        proc.stderr.close()

        # bwrap exits as soon as the command does, before its pid 1 has reaped it: what wait4 counts
        # under bwrap is bwrap's own, so no usage is better than a wrong one.
        usage = (
            {}
            if isolated
            else {
                "ru_utime": rusage.ru_utime,
                "ru_stime": rusage.ru_stime,
                "ru_maxrss": float(rusage.ru_maxrss),
            }
        )
        code = proc.returncode
        killed_by = reason
        if code < 0:
            killed_by = killed_by or _describe_signal(-code, limits, usage)
            code = 128 - code
        elif isolated and 128 < code < 128 + signal.NSIG:
            # bwrap reports a command killed by signal N as exit 128+N, like a shell; a command that
            # exits 128+N of its own accord reads the same, with the same exit code either way.
            killed_by = killed_by or _describe_signal(code - 128, limits, usage)
        if killed_by:
            metrics.sandbox_killed(killed_by)
        stderr = err.text()
        if held:
            stderr += (
                "\n[clarity: a process outside the group kept the output open; output may be incomplete]\n"
            )
        kind = "bwrap" if isolated else "none"
        return Result(code, out.text(), stderr, duration, reason == "timeout", killed_by, usage, kind)

    @staticmethod
    def _wait(pid: int, deadline: float, cancel: threading.Event | None, pipes: _Pipes) -> str | None:
        """Read the output while the leader runs; "timeout" or "cancelled" when we must stop it, None
        when it exited.

        A pidfd wakes us the moment the leader exits, in the same poll as its output; sleeping between
        looks added up to half a run to every short one (a git call took 5 ms here instead of 1.6). The
        cancel event is looked at every WAIT_POLL seconds then; without pidfds (old kernels) the looks
        at the leader start 1 ms apart and back off.
        """
        try:
            exit_fd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            exit_fd = None
        if exit_fd is not None:
            pipes.poller.register(exit_fd, select.POLLIN)
        delay = 0.001
        try:
            while not _has_exited(pid):
                now = time.monotonic()
                if now >= deadline:
                    return "timeout"
                if cancel is not None and cancel.is_set():
                    return "cancelled"
                pause = min(WAIT_POLL if exit_fd is not None else delay, deadline - now)
                pipes.read(pause)
                delay = min(delay * 2, WAIT_POLL)
            return None
        finally:
            if exit_fd is not None:
                pipes.poller.unregister(exit_fd)
                os.close(exit_fd)

    def _terminate(self, pid: int, pipes: _Pipes) -> None:
        """SIGTERM the group, give the leader a short grace to exit; the caller SIGKILLs what is left."""
        _killpg(pid, signal.SIGTERM)
        self._wait(pid, time.monotonic() + self.kill_grace, None, pipes)
