"""Bubblewrap isolation for the local sandbox: whether bwrap works here, and its argv as data.

A run under bwrap sees only what it needs, read-only: the system folders (/usr, /bin, /sbin, /lib*,
/etc without its secrets such as /etc/shadow), the worker's interpreter and the operator's tools
where they are installed (`tools`, see `install_dirs`); read-write its workspace and the other
`writable` paths; a private /tmp (a tmpfs of `tmp_bytes`, HOME in it), /dev and /proc of its own.
Nothing else of the host exists for it: no /run, /var/run or /var/lib (the unix sockets of databases
and container runtimes), no home folders, no other customer's files. `hide` paths get empty stand-ins
wherever they are. It has a network namespace of its own (only its own loopback: a networked run's
way out is the egress proxy's socket, see runner.egress), only its own processes, and no
capabilities even when the worker is root (without `--cap-drop ALL` a root worker's sandbox could
simply remount / read-write). A root worker's runs are not root either: `run_as` (nobody) is taken by
setpriv inside the sandbox, with no way back (no_new_privs, empty bounding set).

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
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

BWRAP = "bwrap"
SETPRIV = "setpriv"
PROBE_TIMEOUT = 10.0
NOBODY = (65534, 65534)  # who a root worker's sandboxed runs are
SANDBOX_HOME = Path("/tmp/home")  # HOME inside the sandbox: in the capped /tmp, gone with the run
# What every run sees of the host, read-only (a folder that is a link on the host is the same link).
SYSTEM_DIRS = tuple(Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"))
# Secrets under /etc, shown empty: password hashes, sudo rules, host keys, services' own credentials.
ETC_SECRETS = tuple(Path("/etc") / name for name in (
    "shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private", "security/opasswd",
    "mysql", "postgresql", "redis", "clarity", "credstore", "credstore.encrypted", "docker", "containerd",
    "NetworkManager/system-connections", "wireguard"))

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
    SCRATCH = "scratch"  # a private tmpfs anyone in the run may write (of `size` bytes when given)
    FOLDER = "folder"  # an empty folder anyone in the run may write (inside a scratch)
    PARENT = "parent"  # an empty folder on the way to another mount, which anyone may pass through


@dataclass(frozen=True, slots=True)
class Mount:
    """One path that differs from the empty root: shown, hidden, made."""

    path: Path
    kind: MountKind
    source: Path | None = None  # READONLY: what is shown at `path`
    size: int | None = None  # SCRATCH: its cap in bytes


@dataclass(frozen=True, slots=True)
class Isolation:
    """What one run may see and touch besides the read-only root and its workspace.

    `readonly` pairs (source, destination) show a host path read-only at another place, e.g. the
    worker's git directory at `<workspace>/.git`: the run can read history but never write it.
    """

    hide: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    readonly: tuple[tuple[Path, Path], ...] = ()
    tools: tuple[Path, ...] = ()  # folders shown read-only where they are: the interpreter's, the tools' installs
    tmp_bytes: int | None = None  # the size of the run's /tmp (HOME is in it); None: no cap
    run_as: tuple[int, int] | None = None  # (uid, gid) the command runs as (a root worker only); None: the worker


def reachable(path: Path, run_as: tuple[int, int] | None) -> bool:
    """Whether a run as `run_as` could read `path` (a folder: list or pass it) if it were shown; True
    when in doubt or when the run is the worker. A secret nobody may read needs no empty stand-in."""
    if run_as is None:
        return True
    try:
        info = os.stat(path)
    except OSError:
        return False  # not there: nothing to hide
    shift = 6 if info.st_uid == run_as[0] else 3 if info.st_gid == run_as[1] else 0
    bits = (info.st_mode >> shift) & 0o7
    return bool(bits & 0o5) if os.path.isdir(path) else bool(bits & 0o4)


def secret_paths(homes: Iterable[Path]) -> tuple[Path, ...]:
    """The credential paths under each home, the system sockets and /etc's secrets: hidden from every run."""
    paths = [home / name for home in homes for name in HOME_SECRETS]
    return tuple(dict.fromkeys([*paths, *SYSTEM_SECRETS, *ETC_SECRETS]))


_RANK = {MountKind.HIDE_DIR: 0, MountKind.HIDE_FILE: 0, MountKind.SCRATCH: 0, MountKind.FOLDER: 0,
         MountKind.PARENT: 0, MountKind.WRITABLE: 1, MountKind.READONLY: 2}
_HIDDEN = (MountKind.HIDE_DIR, MountKind.HIDE_FILE)


def _mount_order(mount: Mount) -> tuple[int, int, str]:
    # Shallow before deep, so a writable workspace inside a hidden data directory shows through, and a
    # read-only view inside the workspace lies over it; at the same path the later kind wins.
    return (len(mount.path.parts), _RANK[mount.kind], str(mount.path))


def _mount_args(mount: Mount) -> list[str]:
    path = str(mount.path)
    if mount.kind is MountKind.HIDE_DIR:
        return ["--tmpfs", path]
    if mount.kind is MountKind.HIDE_FILE:
        return ["--ro-bind", "/dev/null", path]
    if mount.kind is MountKind.READONLY:
        return ["--ro-bind", str(mount.source), path]
    if mount.kind is MountKind.SCRATCH:
        return ["--perms", "1777", *(["--size", str(mount.size)] if mount.size else []), "--tmpfs", path]
    if mount.kind is MountKind.FOLDER:
        return ["--perms", "0777", "--dir", path]
    if mount.kind is MountKind.PARENT:
        return ["--perms", "0755", "--dir", path]
    return ["--bind", path, path]


@functools.cache
def system_args() -> tuple[str, ...]:
    """The system folders, read-only; a merged-/usr host's /bin, /lib... are links, and so they are inside."""
    args: list[str] = []
    for folder in SYSTEM_DIRS:
        if folder.is_symlink():
            args += ["--symlink", os.readlink(folder), str(folder)]
        elif folder.is_dir():
            args += ["--ro-bind", str(folder), str(folder)]
    return tuple(args)


def setpriv_argv(run_as: tuple[int, int]) -> list[str]:
    """What takes the command from root to `run_as` inside the sandbox, for good: no groups, no capabilities
    to inherit or regain (bwrap sets no_new_privs, so setuid binaries stay powerless)."""
    uid, gid = run_as
    return [shutil.which(SETPRIV) or f"/usr/bin/{SETPRIV}", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def bwrap_argv(workdir: Path, mounts: Sequence[Mount] = (), bwrap: str = BWRAP, *, tmp_bytes: int | None = None,
               run_as: tuple[int, int] | None = None, fds: tuple[int, int] | None = None) -> list[str]:
    """The bwrap command line that precedes the sandboxed argv; paths must already be resolved.

    Always `--unshare-net`: sharing the host's network would share its loopback, where the worker's
    Redis (whose jobs a worker runs as itself), the web app and databases listen. `fds` (info, block):
    bwrap says its child's pid on the first and waits for a byte on the second before the command
    starts, so the sandbox can put the run in its cgroup first (see runner.sandbox).
    """
    argv = [bwrap, *(("--info-fd", str(fds[0]), "--block-fd", str(fds[1])) if fds else ())]
    argv += ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
             "--cap-drop", "ALL"]
    if run_as is not None:
        # setpriv needs these to leave root (it drops them, and the bounding set, itself); until then bwrap
        # must get into a workspace lent to `run_as` (its own folder, perhaps mode 0700).
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP",
                 "--cap-add", "CAP_DAC_READ_SEARCH"]
    # /var/tmp is the run's /tmp (some tools write there); nothing else of /var is there unless shown.
    argv += [*system_args(), "--dev", "/dev", "--proc", "/proc", "--perms", "0755", "--dir", "/var",
             "--symlink", "../tmp", "/var/tmp"]
    every = {Mount(Path("/tmp"), MountKind.SCRATCH, size=tmp_bytes), Mount(SANDBOX_HOME, MountKind.FOLDER),
             Mount(workdir, MountKind.WRITABLE), *mounts}
    # A hidden path matters only where something is shown: under a shown folder, or above one (the data
    # folder holding the workspace). Elsewhere there is nothing to hide, and no empty /run to make.
    shown = [*SYSTEM_DIRS, *(m.path for m in every if m.kind in (MountKind.WRITABLE, MountKind.READONLY))]
    every = {m for m in every if m.kind not in _HIDDEN or _under(m.path, shown) or _holds(m.path, shown)}
    every |= _parents(every, shown)
    for mount in sorted(every, key=_mount_order):
        argv += _mount_args(mount)
    return [*argv, "--chdir", str(workdir), "--", *(setpriv_argv(run_as) if run_as is not None else ())]


def _parents(mounts: Iterable[Mount], shown: Sequence[Path]) -> set[Mount]:
    """The folders bwrap would make on the way to the mounts (mode 0700, so a run that is not root
    could not pass), made first instead, passable: those no shown folder already holds."""
    points = {str(m.path) for m in mounts}
    folders: set[str] = set()
    for mount in mounts:
        path = str(mount.path)
        while (path := path.rsplit("/", 1)[0]) and path not in folders:
            folders.add(path)
    return {Mount(Path(f), MountKind.PARENT) for f in folders if f not in points and not _under(Path(f), shown)}


def _existing(path: Path) -> Path | None:
    real = os.path.realpath(path)
    return Path(real) if os.path.exists(real) else None


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
    hidden = [m.path for m in mounts if m.kind in (MountKind.HIDE_DIR, MountKind.HIDE_FILE)]
    for path in isolation.tools:
        real = _existing(path)
        shown = Path(os.path.abspath(path))
        if real is None or _under(shown, SYSTEM_DIRS) or any(_under(p, hidden) for p in (real, shown)):
            continue  # a tool inside a hidden folder (another customer's workspace, say) is never shown
        mounts.append(Mount(shown, MountKind.READONLY, real))
    return tuple(dict.fromkeys(mounts))


def command_prefix(isolation: Isolation, workdir: Path, bwrap: str = BWRAP,
                   fds: tuple[int, int] | None = None) -> list[str]:
    """The bwrap argv for a run in workdir under this isolation."""
    return bwrap_argv(Path(workdir).resolve(), plan_mounts(isolation), bwrap, tmp_bytes=isolation.tmp_bytes,
                      run_as=isolation.run_as, fds=fds)


def _under(path: Path, roots: Iterable[Path]) -> bool:
    """Whether `path` is one of the roots or inside one (as strings: paths are absolute and normal)."""
    text = str(path)
    return any(text == str(root) or text.startswith(str(root).rstrip("/") + "/") for root in roots)


def _holds(path: Path, roots: Iterable[Path]) -> bool:
    """Whether some root is inside `path`."""
    return any(_under(root, [path]) for root in roots)


class View:
    """What a run under an isolation sees of the host, to ask before it starts whether a program is there."""

    def __init__(self, isolation: Isolation, workdir: Path) -> None:
        self.isolation = isolation
        self.workdir = Path(workdir).resolve()
        self.plan = plan_mounts(isolation)
        shown = [Mount(folder, MountKind.READONLY) for folder in SYSTEM_DIRS]
        shown.append(Mount(self.workdir, MountKind.WRITABLE))
        self.mounts = [*shown, *self.plan]

    def command_prefix(self, bwrap: str = BWRAP, fds: tuple[int, int] | None = None) -> list[str]:
        """The bwrap argv for a run in the workdir under this isolation (`command_prefix`, planned once)."""
        return bwrap_argv(self.workdir, self.plan, bwrap, tmp_bytes=self.isolation.tmp_bytes,
                          run_as=self.isolation.run_as, fds=fds)

    def shows(self, program: Path) -> bool:
        """Whether `program` is there, as named and as resolved: the deepest mount holding each is one that
        shows (the system folders, the workspace, a writable, read-only or tool folder), not a hidden one."""
        for path in (Path(os.path.abspath(program)), Path(os.path.realpath(program))):
            holding = [m for m in self.mounts if _under(path, [m.path])]
            if not holding or max(holding, key=_mount_order).kind in _HIDDEN:
                return False
        return True

    def finds(self, name: str, search_path: str) -> bool:
        """Whether a lookup of `name` on `search_path` inside the sandbox finds an executable."""
        for entry in search_path.split(os.pathsep):
            candidate = Path(entry) / name if os.path.isabs(entry) else self.workdir / entry / name
            if candidate.is_file() and os.access(candidate, os.X_OK) and self.shows(candidate):
                return True
        return False


@functools.cache
def _homes() -> frozenset[Path]:
    return frozenset(Path(entry.pw_dir) for entry in pwd.getpwall() if entry.pw_dir not in ("", "/"))


def broad(folder: Path) -> bool:
    """A folder too wide to show for one tool: /, a top-level one, a home folder or its .local."""
    return len(folder.parts) <= 2 or folder in _homes() or (folder.name == ".local" and folder.parent in _homes())


def _prefix(program: Path) -> Path:
    """Where a program is installed: `<prefix>` for `<prefix>/bin/<name>` (a virtualenv, a node or a JDK
    folder, so its libraries come along), else the program's own folder."""
    folder = program.parent
    if folder.name in ("bin", "sbin") and not broad(folder.parent):
        return folder.parent
    return folder


def _interpreter(program: Path, search_path: str) -> Path | None:
    """The interpreter a script's `#!` line names (through `/usr/bin/env NAME`, found on `search_path`)."""
    try:
        with open(program, "rb") as handle:
            head = handle.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        found = shutil.which(words[1], path=search_path)
        return Path(found) if found else None
    return Path(words[0])


def install_dirs(program: Path, search_path: str = "") -> tuple[Path, ...]:
    """The folders a program needs to start inside the sandbox: where it is installed, as named and as
    resolved, and the same for the interpreter its `#!` line names (one level: enough for a venv)."""
    found: list[Path] = []
    for path in (Path(os.path.abspath(program)), Path(os.path.realpath(program))):
        found.append(_prefix(path))
    interpreter = _interpreter(Path(program), search_path)
    if interpreter is not None:
        for path in (Path(os.path.abspath(interpreter)), Path(os.path.realpath(interpreter))):
            found.append(_prefix(path))
    return tuple(p for p in dict.fromkeys(found) if not broad(p))


@functools.cache
def unavailable_reason(bwrap: str = BWRAP) -> str | None:
    """None when bwrap can isolate a command on this machine, else why not; asked once per process.

    bwrap can be installed and still fail, e.g. in a container that forbids new namespaces or
    mounting /proc, so a trial run with the flags real runs use decides: a capped /tmp (bubblewrap
    0.8 or later) and, for a root worker, leaving root through setpriv (util-linux).
    """
    path = shutil.which(bwrap)
    if path is None:
        return f"`{bwrap}` is not installed"
    with tempfile.TemporaryDirectory(prefix="clarity-bwrap-probe-") as scratch:
        run_as = NOBODY if os.geteuid() == 0 else None
        argv = [*bwrap_argv(Path(scratch).resolve(), bwrap=path, tmp_bytes=1024**2, run_as=run_as), "true"]
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the trial run of {path} failed: {exc}"
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        last = lines[-1] if lines else f"exit code {done.returncode}"
        if "--size" in last:
            last += " (bubblewrap 0.8 or later is needed to cap the run's /tmp)"
        elif SETPRIV in last:
            last += " (setpriv, from util-linux, takes a root worker's runs to an unprivileged user)"
        return f"the trial run of {path} failed: {last}"
    return None
