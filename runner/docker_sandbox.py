"""The docker sandbox (DESIGN §10): every run in a fresh, locked-down container of the repo's image.

The workspace (and the other writable paths, e.g. the task's artifacts) is bind-mounted read-write at
its own path, so the paths the engine hands an agent (CLARITY_WORKDIR, the prompt file) mean the same
inside; the docker engine must therefore run on the worker's host. Everything else is the image, read
only, with a private tmpfs /tmp, no network (`network_mode none`: a networked run reaches its model
endpoints only through the egress proxy's unix socket, bound in read-only, and a relay run by the
image's `python3`; see runner.egress), no capabilities, no new privileges, a non-root user, cgroup
limits for memory, CPU and processes, and rlimits for CPU time, file size and open files. `docker-init` (tini) is pid 1, so the command is killable by the rlimit
signals (a pid 1 ignores them) and reports death by signal N as exit 128+N, as bwrap does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit
from docker.utils.socket import frames_iter

from clarity import metrics
from runner import containers, egress
from runner.containers import LABEL_OWNER, CgroupSampler
from runner.egress import Rules
from runner.sandbox import (
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    IsolationError,
    Limits,
    Result,
    _describe_signal,
    _TailBuffer,
)

log = logging.getLogger(__name__)

LABEL_SANDBOX = "clarity.sandbox"  # on every container Clarity starts: what the leftover sweep looks at
LABEL_EXECUTION = "clarity.execution"
LABEL_TASK = "clarity.task"
LABEL_ATTEMPT = "clarity.attempt"
NOBODY = 65534
POLL = 0.05
RELAY_PYTHON = "python3"  # the image's, which runs runner.egress_relay for networked runs
NO_RELAY_PYTHON = f"command not found: {RELAY_PYTHON}\n"
TINI_EXEC_FAILED = re.compile(r"\[FATAL tini \(\d+\)\] exec (.*) failed: (.*)\n?")
TRANSPORT_ERRORS = (DockerException, requests.RequestException, OSError)


class DockerError(IsolationError):
    """The docker sandbox cannot run here (no engine, no image); the message says what to do."""


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The sandbox's settings that `Limits` does not carry."""

    image: str = "python:3.12-slim"
    cpus: float = 1.0  # CPU bandwidth, in cores
    pids: int = 512  # processes and threads at once, unless Limits.processes says otherwise
    tmpfs_bytes: int = 256 * 1024**2  # /tmp, counted in the container's memory
    labels: Mapping[str, str] = field(default_factory=dict)  # e.g. execution and task, on every container


@dataclass(frozen=True, slots=True)
class RunAs:
    """The user a container runs as; `hand_over` when the workspace must be lent to it for the run."""

    uid: int
    gid: int
    hand_over: bool = False

    @property
    def user(self) -> str:
        """docker's `user` value."""
        return f"{self.uid}:{self.gid}"


def run_as(owner_uid: int, owner_gid: int) -> RunAs:
    """The workspace owner, so its files stay writable; never root: a root-owned workspace is lent to nobody."""
    if owner_uid != 0:
        return RunAs(owner_uid, owner_gid)
    return RunAs(NOBODY, NOBODY, hand_over=True)


def container_spec(
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str],
    limits: Limits,
    config: DockerConfig,
    user: RunAs,
    writable: Sequence[Path] = (),
    labels: Mapping[str, str] | None = None,
    stdin: bool = False,
    readonly: Sequence[tuple[Path, Path]] = (),
) -> dict[str, Any]:
    """The keyword arguments of `containers.create` for one run (paths already resolved)."""
    ulimits = [Ulimit(name="core", soft=0, hard=0)]
    if limits.cpu_seconds is not None:  # hard > soft: SIGXCPU first, SIGKILL later, as locally
        ulimits.append(Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 5))
    if limits.file_size_bytes is not None:
        ulimits.append(Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes))
    if limits.open_files is not None:
        ulimits.append(Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files))
    spec: dict[str, Any] = {
        "image": config.image,
        "command": list(argv),
        "user": user.user,
        "working_dir": str(workdir),
        "environment": {"HOME": "/tmp", "TMPDIR": "/tmp", **env},
        "labels": {LABEL_SANDBOX: "1", **config.labels, **(labels or {})},
        "network_mode": "none",  # a networked run's way out is the egress proxy's socket (runner.egress)
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,exec,nosuid,nodev,size={config.tmpfs_bytes}"},
        "volumes": {**{str(path): {"bind": str(path), "mode": "rw"} for path in (workdir, *writable)},
                    **{str(source): {"bind": str(dest), "mode": "ro"} for source, dest in readonly}},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": limits.processes or config.pids,
        "nano_cpus": int(config.cpus * 1e9),
        "ulimits": ulimits,
        "init": True,
        # Output is read from the attached streams, capped; the engine keeps no log file to fill a disk.
        "log_config": LogConfig(type="none"),
        "stdin_open": stdin,
        "detach": False,  # only sets the attach flags (and closes stdin after it is fed); create never runs
    }
    if limits.memory_bytes is not None:
        spec["mem_limit"] = limits.memory_bytes
        spec["memswap_limit"] = limits.memory_bytes  # no swap on top
    return spec


def classify(exit_code: int, reason: str | None, oom_killed: bool, pids_refused: int, limits: Limits) -> str | None:
    """Why a run ended badly, in LocalSandbox's words plus `memory` (the OOM killer) and `pids`.

    `pids` names a failed run that the process limit refused forks to; a run that coped and exited 0
    is left alone. Exit 128+N reads as death by signal N, as under bwrap.
    """
    if reason is not None:
        return reason
    if oom_killed:
        return "memory"
    if exit_code != 0 and pids_refused:
        return "pids"
    if 128 < exit_code < 128 + signal.NSIG:
        return _describe_signal(exit_code - 128, limits, {})
    return None


def connect(base_url: str | None = None) -> docker.DockerClient:
    """A client of the engine (DOCKER_HOST or the local socket) that answers; DockerError when none does."""
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except TRANSPORT_ERRORS as exc:
        where = base_url or "DOCKER_HOST or unix:///var/run/docker.sock"
        raise DockerError(
            f"the docker sandbox needs a docker engine, and none answers at {where}: {exc}. "
            "Start dockerd (or set CLARITY_SANDBOX=local)."
        ) from None
    return client


def remove_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove the sandbox containers of processes on this host that are gone; return their ids."""
    found = client.containers.list(all=True, filters={"label": LABEL_SANDBOX})
    gone = containers.leftovers(((c.id, c.labels) for c in found), containers.this_host())
    for cid in gone:
        try:
            client.api.remove_container(cid, force=True)
        except NotFound:
            pass
    if gone:
        log.warning("removed %d leftover sandbox container(s) of workers that are gone", len(gone))
    return gone


@contextmanager
def lent(paths: Sequence[Path], user: RunAs, owner: tuple[int, int]) -> Iterator[None]:
    """Lend the paths to the container's user for the run; give everything back to the owner after."""
    if not user.hand_over:
        yield
        return
    containers.hand_over(paths, user.uid, user.gid)
    try:
        yield
    finally:
        containers.hand_over(paths, *owner)


class DockerSandbox:
    """Runs each command in a new container; implements the Sandbox protocol."""

    def __init__(
        self,
        client: docker.DockerClient,
        config: DockerConfig | None = None,
        writable: Sequence[Path] = (),
        kill_grace: float = 2.0,
        readonly: Sequence[tuple[Path, Path]] = (),
        egress: Rules = Rules(),  # noqa: B008 - frozen, so one shared default is safe
    ) -> None:
        self.client = client
        self.config = config or DockerConfig()
        self.writable = tuple(Path(path) for path in writable)
        self.readonly = tuple((Path(source), Path(dest)) for source, dest in readonly)  # e.g. the git dir at .git
        self.kill_grace = kill_grace
        self.egress = egress
        self.attempt: str | None = None  # the agent's CLARITY_ATTEMPT, kept for the checks that follow
        self._image_ready = False

    def ensure_image(self) -> None:
        """Pull the image when the engine lacks it; DockerError when it cannot be had."""
        if self._image_ready:
            return
        image = self.config.image
        try:
            try:
                self.client.images.get(image)
            except ImageNotFound:
                log.info("pulling sandbox image %s", image)
                self.client.images.pull(image)
        except TRANSPORT_ERRORS as exc:
            raise DockerError(
                f"the sandbox image `{image}` is not on the docker engine and cannot be pulled: {exc}. "
                "Pull or build it on the docker host, or name another `image:` in .github/clarity.yml."
            ) from None
        self._image_ready = True

    def run(
        self,
        argv: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        limits: Limits,
        stdin: str | None = None,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Run argv in a container with workdir mounted; a missing command is exit 127, never an exception."""
        if not argv:
            raise ValueError("empty argv")
        # Mounted where the engine's paths (CLARITY_WORKDIR, the prompt file) say, symlinks and all.
        workdir = Path(os.path.abspath(workdir))
        if not workdir.is_dir():
            return Result(EXIT_NOT_EXECUTABLE, "", f"working directory does not exist: {workdir}\n", 0.0,
                          isolation="docker")
        self.ensure_image()
        self.attempt = env.get("CLARITY_ATTEMPT", self.attempt)
        labels = {LABEL_OWNER: containers.owner_label(), **({LABEL_ATTEMPT: self.attempt} if self.attempt else {})}
        stat = workdir.stat()
        user = run_as(stat.st_uid, stat.st_gid)
        writable = tuple(Path(os.path.abspath(path)) for path in self.writable if path.exists())
        readonly = tuple((Path(os.path.abspath(source)), Path(os.path.abspath(dest)))
                         for source, dest in self.readonly if source.is_dir())
        gate = egress.Gate(limits.egress, self.egress) if limits.network else None
        try:
            if gate is not None:
                readonly = (*readonly, (gate.folder, gate.folder))
                argv = gate.relay_argv(RELAY_PYTHON, argv)
            spec = container_spec(argv, workdir, env, limits, self.config, user, writable, labels,
                                  stdin is not None, readonly)
            with lent((workdir, *writable), user, (stat.st_uid, stat.st_gid)):
                try:
                    result = self._run(spec, limits, stdin, cancel)
                except TRANSPORT_ERRORS as exc:
                    raise DockerError(f"the docker engine failed the sandbox run: {exc}") from None
        finally:
            if gate is not None:
                gate.close()
        if gate is not None and result.exit_code == EXIT_NOT_FOUND and result.stderr == NO_RELAY_PYTHON:
            return dataclasses.replace(result, stderr=(
                f"the sandbox image `{self.config.image}` has no {RELAY_PYTHON} (3.8 or later), which a networked "
                "agent needs to reach its model through Clarity's egress proxy\n"))
        return result

    def _run(self, spec: dict[str, Any], limits: Limits, stdin: str | None,
             cancel: threading.Event | None) -> Result:
        started = time.monotonic()
        container = self.client.containers.create(**spec)
        try:
            out, err = _TailBuffer(limits.output_bytes), _TailBuffer(limits.output_bytes)
            stream = self.client.api.attach_socket(
                container.id, params={"stdout": 1, "stderr": 1, "stream": 1, "stdin": int(stdin is not None)})
            reader = threading.Thread(target=_pump_frames, args=(stream, out, err), daemon=True)
            reader.start()
            container.start()
            if stdin is not None:
                threading.Thread(target=_feed, args=(stream, stdin.encode()), daemon=True).start()
            meter = CgroupSampler.for_container(container.id, lambda: _pid(container))
            meter.start()
            try:
                reason = self._supervise(container, started + limits.timeout, cancel)
            finally:
                meter.stop()
            state = _state(container)
            duration = time.monotonic() - started
            reader.join(timeout=5.0)
            _close(stream)
        finally:
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass
        code = int(state.get("ExitCode", 0))
        killed_by = classify(code, reason, bool(state.get("OOMKilled")), meter.pids_refused, limits)
        stderr = err.text()
        missing = TINI_EXEC_FAILED.fullmatch(stderr)
        if missing and code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
            stderr = f"{'command not found' if code == EXIT_NOT_FOUND else 'permission denied'}: {missing[1]}\n"
        if killed_by:
            metrics.sandbox_killed(killed_by)
        if killed_by == "pids":
            stderr += f"\n[clarity: the process limit refused {meter.pids_refused} fork(s)]\n"
        return Result(code, out.text(), stderr, duration, reason == "timeout", killed_by, meter.usage(), "docker")

    def _supervise(self, container: Container, deadline: float, cancel: threading.Event | None) -> str | None:
        """Wait for the container; "timeout" or "cancelled" when it had to be killed, else None."""
        exited = threading.Event()

        def wait() -> None:
            try:
                container.wait()
            except TRANSPORT_ERRORS:
                log.warning("lost the wait on sandbox container %s", container.short_id)
            finally:
                exited.set()

        threading.Thread(target=wait, daemon=True).start()
        reason = None
        while not exited.wait(POLL):
            if time.monotonic() >= deadline:
                reason = "timeout"
            elif cancel is not None and cancel.is_set():
                reason = "cancelled"
            else:
                continue
            _kill(container, "SIGTERM")
            if not exited.wait(self.kill_grace):
                _kill(container, "SIGKILL")
            exited.wait(10.0)
            break
        return reason


def _pid(container: Container) -> int:
    container.reload()
    return int(container.attrs.get("State", {}).get("Pid") or 0)


def _state(container: Container) -> dict[str, Any]:
    container.reload()
    return dict(container.attrs.get("State", {}))


def _kill(container: Container, sig: str) -> None:
    try:
        container.kill(signal=sig)
    except APIError:
        pass  # it exited meanwhile


def _raw(stream: Any) -> socket.socket:
    return getattr(stream, "_sock", stream)


def _pump_frames(stream: Any, out: _TailBuffer, err: _TailBuffer) -> None:
    try:
        for kind, data in frames_iter(stream, tty=False):
            (err if kind == 2 else out).add(data)
    except OSError:
        pass  # the stream closed under us: the container is gone


def _feed(stream: Any, data: bytes) -> None:
    raw = _raw(stream)
    try:
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the command closed its stdin; what it did not read it did not want


def _close(stream: Any) -> None:
    try:
        stream.close()
    except OSError:
        pass
