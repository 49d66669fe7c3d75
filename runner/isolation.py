"""Bubblewrap isolation for the local sandbox: whether bwrap works here, and its argv as data.

A run under bwrap sees the host's root read-only, a private /tmp, /dev and /proc of its own, its
workspace and the other `writable` paths read-write, empty stand-ins for the `hide` paths, no
network unless asked for, only its own processes, and no capabilities even when the worker is root
(without `--cap-drop ALL` a root worker's sandbox could simply remount / read-write).

No `--new-session`: that flag exists against TIOCSTI injection into a controlling terminal, and the
sandbox starts bwrap in a session of its own with pipes for every stream, so there is no terminal
to inject into. Staying in bwrap's process group keeps the sandbox's SIGTERM-then-SIGKILL of the
group reaching every sandboxed process; `--die-with-parent` with `--unshare-pid` guarantees the rest:
when bwrap dies, the namespace's pid 1 dies and the kernel kills everything in the namespace, even a
process that called setsid.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

BWRAP = "bwrap"
PROBE_TIMEOUT = 10.0

# Where tools keep credentials under a home directory: never shown to a sandboxed run.
HOME_SECRETS = (
    ".ssh",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".config/gh",
    ".config/hub",
    ".config/gcloud",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".pypirc",
    ".npmrc",
    ".cargo/credentials.toml",
)
# Sockets that hand out control of the machine (a container runtime, the user's agents).
SYSTEM_SECRETS = (
    Path("/run/docker.sock"),
    Path("/run/containerd"),
    Path("/run/podman"),
    Path("/run/user"),
)


class MountKind(StrEnum):
    """What bwrap puts at a path."""

    HIDE_DIR = "hide_dir"  # an empty tmpfs over a directory
    HIDE_FILE = "hide_file"  # /dev/null over a file
    WRITABLE = "writable"  # the host path itself, read-write
    READONLY = "readonly"  # a host path (`source`) shown read-only at `path`


@dataclass(frozen=True, slots=True)
class Mount:
    """One path that differs from the read-only host root."""

    path: Path
    kind: MountKind
    source: Path | None = None  # READONLY: what is shown at `path`


@dataclass(frozen=True, slots=True)
class Isolation:
    """What one run may see and touch besides the read-only root and its workspace.

    `readonly` pairs (source, destination) show a host path read-only at another place, e.g. the
    worker's git directory at `<workspace>/.git`: the run can read history but never write it.
    """

    hide: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    network: bool = False
    readonly: tuple[tuple[Path, Path], ...] = ()


def secret_paths(homes: Iterable[Path]) -> tuple[Path, ...]:
    """The credential paths under each home, then the system sockets: hidden from every run."""
    paths = [home / name for home in homes for name in HOME_SECRETS]
    return tuple(dict.fromkeys([*paths, *SYSTEM_SECRETS]))


def _mount_order(mount: Mount) -> tuple[int, int, str]:
    # Shallow before deep, so a writable workspace inside a hidden data directory shows through, and a
    # read-only view inside the workspace lies over it; at the same path the later kind wins.
    rank = {MountKind.HIDE_DIR: 0, MountKind.HIDE_FILE: 0, MountKind.WRITABLE: 1, MountKind.READONLY: 2}
    return (len(mount.path.parts), rank[mount.kind], str(mount.path))


def _mount_args(mount: Mount) -> list[str]:
    path = str(mount.path)
    if mount.kind is MountKind.HIDE_DIR:
        return ["--tmpfs", path]
    if mount.kind is MountKind.HIDE_FILE:
        return ["--ro-bind", "/dev/null", path]
    if mount.kind is MountKind.READONLY:
        return ["--ro-bind", str(mount.source), path]
    return ["--bind", path, path]


def bwrap_argv(
    workdir: Path, mounts: Sequence[Mount] = (), network: bool = False, bwrap: str = BWRAP
) -> list[str]:
    """The bwrap command line that precedes the sandboxed argv; paths must already be resolved."""
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not network:
        argv.append("--unshare-net")
    argv += ["--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    every = {Mount(Path("/tmp"), MountKind.HIDE_DIR), Mount(workdir, MountKind.WRITABLE), *mounts}
    for mount in sorted(every, key=_mount_order):
        argv += _mount_args(mount)
    return [*argv, "--chdir", str(workdir), "--"]


def _existing(path: Path) -> Path | None:
    real = Path(path).resolve()
    return real if real.exists() else None


def plan_mounts(isolation: Isolation) -> tuple[Mount, ...]:
    """The isolation's paths with symlinks resolved and files told from folders; missing ones dropped.

    A missing hidden path has nothing to hide; a missing writable path cannot be created inside the
    read-only root anyway, so neither is an error.
    """
    mounts: list[Mount] = []
    for path in isolation.hide:
        real = _existing(path)
        if real is not None:
            mounts.append(Mount(real, MountKind.HIDE_DIR if real.is_dir() else MountKind.HIDE_FILE))
    for path in isolation.writable:
        real = _existing(path)
        if real is not None:
            mounts.append(Mount(real, MountKind.WRITABLE))
    for source, destination in isolation.readonly:
        real = _existing(source)
        if real is not None:
            # The destination is not resolved: inside a writable workspace the run could have made it a
            # link; bwrap mounts over the path it is given, after the workspace, so the view wins.
            mounts.append(Mount(Path(os.path.abspath(destination)), MountKind.READONLY, real))
    return tuple(dict.fromkeys(mounts))


def command_prefix(isolation: Isolation, workdir: Path, bwrap: str = BWRAP) -> list[str]:
    """The bwrap argv for a run in workdir under this isolation."""
    return bwrap_argv(Path(workdir).resolve(), plan_mounts(isolation), isolation.network, bwrap)


@functools.cache
def unavailable_reason(bwrap: str = BWRAP) -> str | None:
    """None when bwrap can isolate a command on this machine, else why not; asked once per process.

    bwrap can be installed and still fail, e.g. in a container that forbids new namespaces or
    mounting /proc, so a trial run with the flags real runs use decides.
    """
    path = shutil.which(bwrap)
    if path is None:
        return f"`{bwrap}` is not installed"
    with tempfile.TemporaryDirectory(prefix="clarity-bwrap-probe-") as scratch:
        argv = [*bwrap_argv(Path(scratch).resolve(), bwrap=path), "true"]
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the trial run of {path} failed: {exc}"
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return f"the trial run of {path} failed: {lines[-1] if lines else f'exit code {done.returncode}'}"
    return None
