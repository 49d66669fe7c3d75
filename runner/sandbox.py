"""Run untrusted commands: a process group with rlimits, a wall clock, a scrubbed environment, bwrap,
and a cgroup of its own for processes, memory and CPU (runner.confine), with a watch on its disk use."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pwd
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Literal, Protocol

from clarity import metrics
from runner import cgroups, egress
from runner.cgroups import DEFAULT_PARENT, Spec
from runner.confine import EXIT_ATTACH_FAILED, Confinement
from runner.egress import Endpoint, Rules
from runner.isolation import (
    BWRAP,
    NOBODY,
    SANDBOX_HOME,
    Isolation,
    View,
    broad,
    install_dirs,
    reachable,
    secret_paths,
    unavailable_reason,
)

log = logging.getLogger(__name__)

IsolationMode = Literal["auto", "bwrap", "none"]
ISOLATION_MODES: tuple[IsolationMode, ...] = ("auto", "bwrap", "none")
DEFAULT_ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
WAIT_POLL = 0.05  # seconds between looks at the deadline and the cancel event while a run goes on
OUTPUT_GRACE = 5.0  # seconds to read what is left of the output once the run's group is killed
CgroupMode = Literal["auto", "required", "off"]
# What bwrap or setpriv say, alone, when the command cannot be started inside the sandbox.
START_FAILED = re.compile(r"(?:bwrap: execvp|setpriv: failed to execute) (?P<program>.+): (?P<why>[^\n]+)\n?")


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one run.

    `processes` (processes and threads at once) and `memory_bytes` (with no swap on top) are the run's
    cgroup limits, which hold for root too; `processes` None leaves it to the sandbox's `LocalConfig.pids`.
    Memory is never limited by address space (RLIMIT_AS): Bun, the JVM and Go reserve far more than
    they use. `cpu_seconds`, `file_size_bytes` and `open_files` are rlimits. `output_bytes` caps each
    of stdout and stderr; the tail is kept. `network` gives an isolated run a way out through the worker's egress proxy (runner.egress) to the `egress` endpoints only, never
    the host's network or loopback; without isolation the network is always there.
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
    egress: tuple[Endpoint, ...] = ()  # with `network`: the model endpoints the run may reach


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """The local sandbox's settings that `Limits` does not carry: the operator's, for every run.

    The defaults limit nothing more than `Limits` does (the worker's own git runs in such a sandbox);
    `jobs.sandboxes` fills them from CLARITY_SANDBOX_* for tasks. `tools` are program files or folders
    the operator configured (agents and their interpreters), shown read-only where they are installed.
    `cgroups`: "required" refuses to run where no cgroup can be made, "auto" runs without one and says
    so once, "off" never makes one.
    """

    pids: int | None = None  # processes and threads at once, unless Limits.processes says otherwise
    memory_bytes: int | None = None  # every run's memory limit when set (else Limits.memory_bytes)
    cpus: float | None = None  # CPU bandwidth, in cores
    tmp_bytes: int | None = 256 * 1024**2  # the run's /tmp (and HOME in it), under bwrap
    disk_bytes: int | None = None  # what the workspace and writable folders may hold while a run goes on
    tools: tuple[Path, ...] = ()
    cgroups: CgroupMode = "auto"
    cgroup_parent: str = DEFAULT_PARENT


@dataclass(frozen=True, slots=True)
class Result:
    """What a run produced: exit code (128+N when killed by signal N), output tails, timing, usage.

    `isolation` says how the command ran: "bwrap" or "none". `usage` holds the run's cgroup counters
    (cpu_seconds, memory_peak_bytes, pids_refused, oom_kills) when it had one, and without bwrap also
    the leader's rusage (ru_utime, ru_stime, ru_maxrss).
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
        (resource.RLIMIT_FSIZE, limits.file_size_bytes, 0),
        (resource.RLIMIT_NOFILE, limits.open_files, 0),
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


@functools.cache
def _warn_unlimited(reason: str) -> None:
    log.warning("no cgroup for sandboxed runs (%s): processes, memory and CPU are not limited", reason)


def cgroup_layout(config: LocalConfig) -> cgroups.Layout | None:
    """Where the runs' cgroups go; IsolationError when they are required and cannot be made."""
    if config.cgroups == "off":
        return None
    found = cgroups.layout(config.cgroup_parent)
    if isinstance(found, cgroups.Layout):
        return found
    if config.cgroups == "required":
        raise IsolationError(
            f"the local sandbox limits every run with a cgroup (processes, memory, CPU), and none can be made "
            f"here: {found}. Run the worker as root on a host whose /sys/fs/cgroup is writable, or give it a "
            "delegated cgroup v2 subtree (CLARITY_CGROUP_PARENT), or use CLARITY_SANDBOX=docker."
        )
    _warn_unlimited(found)
    return None


def _worker_homes(parent_env: Mapping[str, str]) -> list[Path]:
    homes = [Path(pwd.getpwuid(os.getuid()).pw_dir)]
    if parent_env.get("HOME"):
        homes.append(Path(parent_env["HOME"]))
    return homes


def _locate(program: str, workdir: Path, search_path: str, kind: str) -> Path | Result:
    """The file program names (on the host), else the Result a failed exec would give (127 or 126).

    Under bwrap the exec happens inside bwrap, which would report any failure as its own exit 1; a run
    without bwrap starts through the cgroup's shell, which would say it in its own words.
    """
    if os.sep in program:
        candidates = [workdir / program]
    else:
        candidates = [workdir / entry / program for entry in search_path.split(os.pathsep)]
    found = [path for path in candidates if path.is_file()]
    if not found:
        return Result(EXIT_NOT_FOUND, "", f"command not found: {program}\n", 0.0, isolation=kind)
    runnable = [path for path in found if os.access(path, os.X_OK)]
    if not runnable:
        return Result(EXIT_NOT_EXECUTABLE, "", f"permission denied: {program}\n", 0.0, isolation=kind)
    return runnable[0]


def _cannot_start(program: str, why: str) -> IsolationError:
    return IsolationError(
        f"the sandbox cannot start `{program}`: {why}. It is not shown inside the sandbox, which sees only "
        "the system folders, the workspace and the tools the operator configured: install it under /usr, "
        "put it on the worker's PATH, or name it in CLARITY_AGENT_COMMAND or CLARITY_SANDBOX_TOOLS."
    )


class _Looks:
    """Asks `over` (the run's cgroup and disk watch) at most every WAIT_POLL / 2 seconds, however fast
    output comes: each look is a file read and a statvfs."""

    __slots__ = ("last", "over")

    def __init__(self, over: Callable[[], str | None]) -> None:
        self.over = over
        self.last = 0.0

    def now(self, when: float) -> str | None:
        """What `over` says, or None when it was asked too recently."""
        if when - self.last < WAIT_POLL / 2:
            return None
        self.last = when
        return self.over()


class LocalSandbox:
    """Subprocess in its own session; rlimits; a wall clock that kills the whole group; scrubbed env;
    bubblewrap around it when it works (`isolation="auto"`), always (`"bwrap"`) or never (`"none"`).

    Under bwrap the run sees the system folders, the worker's interpreter and the configured tools
    read-only (runner.isolation), its workdir and `writable` read-write, a private /tmp of
    `LocalConfig.tmp_bytes` with HOME in it, the `hide` paths (and the worker's credential files)
    empty, a network namespace of its own (with `Limits.network`, the egress proxy to `Limits.egress`
    under the operator's `egress` rules is its only way out), and only its own processes; a root
    worker's run is nobody, with its folders lent to it for the run. With or without bwrap, every run
    with a process, memory or CPU limit is in a cgroup of its own, whose members all die with the run
    (a process that left the session too), and its folders may hold `LocalConfig.disk_bytes` at most.
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
        egress: Rules = Rules(),  # noqa: B008 - frozen, so one shared default is safe
        config: LocalConfig = LocalConfig(),
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
        self.egress = egress
        self.config = config
        # The worker's interpreter (an egress relay runs on it; so may agents and checks) and the
        # operator's tools, where they are installed: a worker living under /tmp or in a venv still works.
        tools = [prefix for prefix in (Path(sys.prefix), Path(sys.base_prefix)) if not broad(prefix)]
        for tool in config.tools:
            tools += install_dirs(tool) if Path(tool).is_file() else [Path(tool)]
        self.tools = tuple(dict.fromkeys(tools))
        self.run_as = NOBODY if os.geteuid() == 0 else None  # under bwrap; a non-root worker's runs are itself
        self.hide = tuple(path for path in self.hide if reachable(path, self.run_as))  # /etc/shadow: no mount needed
        if isolation == "bwrap":
            reason = unavailable_reason(bwrap)
            if reason is not None:
                raise IsolationError(
                    f"isolation='bwrap' was asked for, but bubblewrap cannot run here: {reason}. "
                    "Install it (apt-get install bubblewrap) or use isolation='auto'."
                )
        # Required cgroups are looked for now, so a task is refused before it starts; otherwise only
        # when a run has a limit for one (the worker's own git has none, and no warning to give).
        self._layout = cgroup_layout(config) if config.cgroups == "required" else None
        self._looked = config.cgroups == "required"

    @property
    def layout(self) -> cgroups.Layout | None:
        """Where this sandbox's runs get their cgroups (None: they get none)."""
        if not self._looked:
            self._layout, self._looked = cgroup_layout(self.config), True
        return self._layout

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
        """Run argv in workdir under limits; a missing executable is exit code 127, never an exception.

        IsolationError when the sandbox cannot start the program at all (it is not shown inside, or
        the run's cgroup cannot be made): the machinery's failure, not the command's.
        """
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
                child_env["TMPDIR"] = "/tmp"  # the run's private /tmp; the worker's TMPDIR is not there
            if "HOME" not in env:
                child_env["HOME"] = str(SANDBOX_HOME)  # in the run's capped /tmp; the worker's is not there
            if self.run_as is not None and "GIT_CONFIG_COUNT" not in child_env:
                # The workspace's git directory is the worker's (shown read-only): git run as nobody
                # would call it "dubious ownership" and refuse even `git log`.
                child_env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory",
                                 GIT_CONFIG_VALUE_0=str(Path(workdir).resolve()))
        found = _locate(argv[0], Path(workdir), child_env["PATH"], kind)
        if isinstance(found, Result):
            return found
        temp_home = None
        if "HOME" not in child_env:
            temp_home = tempfile.mkdtemp(prefix="clarity-home-")
            child_env["HOME"] = temp_home
        # A networked run reaches the egress proxy's socket (bound in read-only) through a relay that
        # starts the command; its own network namespace holds nothing else.
        gate = egress.Gate(limits.egress, self.egress) if isolated and limits.network else None
        try:
            extra = ((gate.folder, gate.folder),) if gate else ()
            view = self._view(argv[0], found, Path(workdir), child_env["PATH"], extra) if isolated else None
            command = list(argv)
            if gate is not None:
                command = gate.relay_argv(sys.executable, command)
            result = self._run(view, command, Path(workdir), child_env, limits, stdin, cancel)
        finally:
            if gate is not None:
                gate.close()
            if temp_home:
                shutil.rmtree(temp_home, ignore_errors=True)
        started = START_FAILED.fullmatch(result.stderr) if isolated and result.exit_code in (1, 126, 127) else None
        if started is not None and result.killed_by is None:
            raise _cannot_start(started["program"], started["why"])
        return result

    def _view(self, program: str, found: Path, workdir: Path, search_path: str,
              readonly: tuple[tuple[Path, Path], ...]) -> View:
        """What the run will see; IsolationError when that does not hold the program it is to start.

        A program found on the operator's PATH, and not inside, is shown where it is installed. One
        named by a path is never added: a repository may name any path of the host.
        """
        isolation = Isolation(self.hide, self.writable, (*self.readonly, *readonly), self.tools,
                              self.config.tmp_bytes, self.run_as)
        view = View(isolation, workdir)
        if os.sep in program:
            if not view.shows(found):
                raise _cannot_start(program, f"{found} is outside what it shows")
            return view
        if not view.finds(program, search_path):
            view = View(replace(isolation, tools=(*self.tools, *install_dirs(found, search_path))), workdir)
            if not view.finds(program, search_path):
                raise _cannot_start(program, f"{found} is outside what it shows")
        return view

    def _confine(self, workdir: Path, limits: Limits, isolated: bool) -> Confinement:
        """The run's cgroup (with its limits), disk watch and, for a nobody run, its lent folders."""
        spec = Spec(pids=limits.processes or self.config.pids,
                    memory_bytes=self.config.memory_bytes or limits.memory_bytes, cpus=self.config.cpus)
        watched = [workdir, *(path for path in self.writable if path.exists())]
        wanted = (spec.pids, spec.memory_bytes, spec.cpus) != (None, None, None)
        try:
            return Confinement.start(self.layout if wanted else None, spec, watched, self.config.disk_bytes,
                                     self.run_as if isolated else None)
        except OSError as exc:
            raise IsolationError(f"the sandbox cannot make the run's cgroup: {exc}") from None

    def _run(
        self,
        view: View | None,
        argv: list[str],
        workdir: Path,
        env: dict[str, str],
        limits: Limits,
        stdin: str | None,
        cancel: threading.Event | None,
    ) -> Result:
        pairs = rlimits_for(limits)
        # No Python hook in the child, so Python can vfork (a fork of a large worker plus the hook cost
        # 10 to 40 ms a run here): under bwrap the limits are set on bwrap's child while it waits to be
        # let go (prlimit(2) from here), so everything it starts inherits them; without bwrap,
        # util-linux's prlimit sets them on itself and execs the command. A missing program was found
        # out before (_locate), so prlimit's own words for it are never needed.
        wrapper = prlimit_argv(pairs) if pairs and view is None else None

        def apply_limits() -> None:  # runs in the child between fork and exec: keep it tiny
            for res, pair in pairs:
                resource.setrlimit(res, pair)

        made: list[Confinement] = []

        def confine() -> Confinement:
            if not made:
                made.append(self._confine(workdir, limits, view is not None))
            return made[0]

        if view is None:
            confine()  # its shell joins the cgroup as it starts: the cgroup must be there first
        ends: list[int] = []  # pipe ends to close whatever happens
        try:
            prefix: list[str] = []
            passed: tuple[int, ...] = ()
            if view is not None:
                # bwrap announces its child on `info` and holds the command until `block` is written:
                # the run joins its cgroup before anything of it executes.
                info, info_w = os.pipe()
                block_r, block = os.pipe()
                ends += [info, info_w, block_r, block]
                passed = (info_w, block_r)
                prefix = view.command_prefix(self.bwrap, fds=passed)
            full = [*(confine().wrapper() if view is None else ()), *(wrapper or ()), *prefix, *argv]
            hook = apply_limits if pairs and wrapper is None and view is None else None
            return self._start(confine, full, argv[0], passed, ends, workdir, env, limits, stdin, cancel,
                               hook, pairs if view is not None else None)
        finally:
            for fd in ends:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if made and not made[0].ended:
                made[0].end()

    def _start(self, confine: Callable[[], Confinement], full: list[str], program: str, passed: tuple[int, ...],
               ends: list[int], workdir: Path, env: dict[str, str], limits: Limits, stdin: str | None,
               cancel: threading.Event | None, hook: Callable[[], None] | None,
               held: Sequence[tuple[int, tuple[int, int]]] | None) -> Result:
        """Start the run and supervise it to its end. Under bwrap the run's cgroup, disk watch and lent
        folders are made (`confine`) while bwrap sets up, then `held` (the rlimits) are set and the cgroup
        joined while its child waits to start the command."""
        isolated = held is not None
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                full,
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
                preexec_fn=hook,  # noqa: PLW1509
                close_fds=True,
                pass_fds=passed,
            )
        except FileNotFoundError:
            return Result(EXIT_NOT_FOUND, "", f"command not found: {program}\n", time.monotonic() - started)
        except PermissionError:
            return Result(
                EXIT_NOT_EXECUTABLE, "", f"permission denied: {program}\n", time.monotonic() - started
            )
        except OSError as exc:
            return Result(
                EXIT_NOT_EXECUTABLE,
                "",
                f"cannot execute {program}: {exc.strerror}\n",
                time.monotonic() - started,
            )
        if not isolated:
            return self._supervise(proc, started, limits, stdin, cancel, isolated, confine())
        info, info_w, block_r, block = ends
        for fd in (info_w, block_r):  # the child has them; bwrap's end of file is ours to see
            os.close(fd)
        ends[:] = [info, block]
        try:
            confinement = confine()
            if not confinement.join(info, held or ()):
                raise IsolationError("the sandboxed run could not be put under its limits, so it was not started")
        except BaseException:
            _killpg(proc.pid, signal.SIGKILL)  # before its command starts, outside the limits
            proc.communicate()
            raise
        with contextlib.suppress(OSError):
            os.write(block, b"\0")
        return self._supervise(proc, started, limits, stdin, cancel, isolated, confinement)

    def _supervise(
        self,
        proc: subprocess.Popen[bytes],
        started: float,
        limits: Limits,
        stdin: str | None,
        cancel: threading.Event | None,
        isolated: bool,
        confinement: Confinement,
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
            reason = self._wait(proc.pid, started + limits.timeout, cancel, pipes, _Looks(confinement.over))
            if reason is not None:
                self._terminate(proc.pid, pipes)
            _killpg(proc.pid, signal.SIGKILL)  # leftovers (a background `sleep &`) die with the run
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            duration = time.monotonic() - started
            counted = confinement.end()  # and so does every other member of its cgroup
            held = not pipes.drain(time.monotonic() + OUTPUT_GRACE)
        finally:
            pipes.close()
        if feeder is not None:
            feeder.join(timeout=OUTPUT_GRACE)
        proc.stdout.close()
        proc.stderr.close()

        # bwrap exits as soon as the command does, before its pid 1 has reaped it: what wait4 counts
        # under bwrap is bwrap's own, so only the cgroup's counters are kept then.
        usage = (
            dict(counted)
            if isolated
            else {
                "ru_utime": rusage.ru_utime,
                "ru_stime": rusage.ru_stime,
                "ru_maxrss": float(rusage.ru_maxrss),
                **counted,
            }
        )
        code = proc.returncode
        killed_by = reason if reason in ("timeout", "cancelled") else None
        if confinement.reason is not None:  # the OOM killer took a process, or the folders grew over the cap
            killed_by = killed_by or confinement.reason
        if code == EXIT_ATTACH_FAILED and not isolated and confinement.cgroup is not None and killed_by is None \
                and err.text().startswith("clarity: cannot enter the cgroup"):
            raise IsolationError(f"the run could not enter its cgroup: {err.text().strip()}")
        if code != 0 and killed_by is None and usage.get("pids_refused"):
            killed_by = "pids"  # a failed run that the process limit refused forks to
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
        if killed_by == "pids":
            stderr += f"\n[clarity: the process limit refused {int(usage['pids_refused'])} fork(s)]\n"
        if killed_by == "disk" and confinement.note:
            stderr += f"\n{confinement.note}\n"
        if held:
            stderr += (
                "\n[clarity: a process outside the group kept the output open; output may be incomplete]\n"
            )
        kind = "bwrap" if isolated else "none"
        return Result(code, out.text(), stderr, duration, reason == "timeout", killed_by, usage, kind)

    @staticmethod
    def _wait(pid: int, deadline: float, cancel: threading.Event | None, pipes: _Pipes,
              looks: _Looks | None = None) -> str | None:
        """Read the output while the leader runs; "timeout", "cancelled" (or what `looks` found: "disk",
        "memory") when we must stop it, None when it exited.

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
                found = looks.now(now) if looks is not None else None
                if found is not None:
                    return found
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
