"""Bubblewrap around the local sandbox: the argv as data, then what a run inside can and cannot do."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.checks import run_checks
from runner.isolation import (
    Isolation,
    Mount,
    MountKind,
    bwrap_argv,
    plan_mounts,
    secret_paths,
    system_args,
    unavailable_reason,
)
from runner.sandbox import IsolationError, Limits, LocalConfig, LocalSandbox

FAST = Limits(timeout=20)
BASE = [
    "bwrap",
    "--die-with-parent",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-net",
    "--cap-drop",
    "ALL",
    *system_args(),  # /usr, /etc and the /bin, /lib... of this host, read-only; never all of /
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--perms", "0755", "--dir", "/var", "--symlink", "../tmp", "/var/tmp",
]

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install bubblewrap)"
)


# -- the argv as data ----------------------------------------------------------------------------


def test_argv_shows_the_system_folders_a_private_tmp_with_home_and_a_writable_workdir() -> None:
    assert bwrap_argv(Path("/srv/ws")) == [
        *BASE,
        "--perms", "0755", "--dir", "/srv",  # made passable for a run that is not root
        "--perms", "1777", "--tmpfs", "/tmp",
        "--perms", "0777", "--dir", "/tmp/home",
        "--bind", "/srv/ws", "/srv/ws",
        "--chdir", "/srv/ws",
        "--",
    ]  # fmt: skip


def test_a_root_workers_run_is_nobody_in_a_capped_tmp_and_waits_to_join_its_cgroup() -> None:
    argv = bwrap_argv(Path("/w"), tmp_bytes=1000, run_as=(65534, 65534), fds=(5, 6))
    assert argv[:5] == ["bwrap", "--info-fd", "5", "--block-fd", "6"]
    tmp = argv.index("/tmp")
    assert argv[tmp - 5:tmp + 1] == ["--perms", "1777", "--size", "1000", "--tmpfs", "/tmp"]
    caps = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--cap-add"]
    assert caps == ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH"]
    assert argv[argv.index("--") + 1:] == [shutil.which("setpriv"), "--reuid=65534", "--regid=65534",
                                           "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--"]


def test_every_run_has_a_network_namespace_of_its_own() -> None:
    # A networked run too: its way out is the egress proxy (tests/test_attacks_network.py), never the host's
    # network, whose loopback holds the worker's Redis.
    assert "--unshare-net" in bwrap_argv(Path("/srv/ws"))


def test_mounts_go_shallow_to_deep_so_a_workspace_shows_through_a_hidden_data_dir() -> None:
    mounts = [
        Mount(Path("/data/artifacts/e1/1.2"), MountKind.WRITABLE),
        Mount(Path("/etc/clarity/key.pem"), MountKind.HIDE_FILE),
        Mount(Path("/data"), MountKind.HIDE_DIR),
    ]
    argv = bwrap_argv(Path("/data/workspaces/o/r"), mounts, bwrap="/usr/bin/bwrap")
    assert argv[0] == "/usr/bin/bwrap"
    assert argv[len(BASE) :] == [
        "--tmpfs", "/data",
        "--perms", "1777", "--tmpfs", "/tmp",
        "--perms", "0755", "--dir", "/data/artifacts",
        "--perms", "0755", "--dir", "/data/workspaces",
        "--perms", "0777", "--dir", "/tmp/home",
        "--perms", "0755", "--dir", "/data/artifacts/e1",
        "--perms", "0755", "--dir", "/data/workspaces/o",
        "--ro-bind", "/dev/null", "/etc/clarity/key.pem",
        "--bind", "/data/artifacts/e1/1.2", "/data/artifacts/e1/1.2",
        "--bind", "/data/workspaces/o/r", "/data/workspaces/o/r",
        "--chdir", "/data/workspaces/o/r",
        "--",
    ]  # fmt: skip


def test_a_hidden_path_where_nothing_is_shown_makes_no_mount() -> None:
    argv = bwrap_argv(Path("/w"), [Mount(Path("/run/docker.sock"), MountKind.HIDE_FILE)])
    assert "/run/docker.sock" not in argv and "/run" not in argv


def test_a_path_both_hidden_and_writable_ends_up_writable() -> None:
    mounts = [Mount(Path("/srv/x"), MountKind.WRITABLE), Mount(Path("/srv/x"), MountKind.HIDE_DIR)]
    assert bwrap_argv(Path("/w"), mounts)[len(BASE) :] == [
        "--perms", "0755", "--dir", "/srv",
        "--perms", "1777", "--tmpfs", "/tmp",
        "--bind", "/w", "/w",
        "--tmpfs", "/srv/x",
        "--perms", "0777", "--dir", "/tmp/home",
        "--bind", "/srv/x", "/srv/x",
        "--chdir", "/w",
        "--",
    ]  # fmt: skip


def test_plan_resolves_symlinks_tells_files_from_folders_and_drops_missing_paths(tmp_path: Path) -> None:
    folder, key = tmp_path / "secrets", tmp_path / "key.pem"
    folder.mkdir()
    key.write_text("k")
    (tmp_path / "link").symlink_to(folder)
    isolation = Isolation(
        hide=(tmp_path / "link", key, tmp_path / "missing", folder),
        writable=(tmp_path / "artifacts", tmp_path),
    )
    assert plan_mounts(isolation) == (
        Mount(folder.resolve(), MountKind.HIDE_DIR),
        Mount(key.resolve(), MountKind.HIDE_FILE),
        Mount(tmp_path.resolve(), MountKind.WRITABLE),
    )


def test_credentials_under_every_home_and_runtime_sockets_are_secret() -> None:
    paths = secret_paths([Path("/root"), Path("/home/w"), Path("/root")])
    assert Path("/root/.ssh") in paths and Path("/home/w/.config/gh") in paths
    assert Path("/run/docker.sock") in paths
    assert len(paths) == len(set(paths))


# -- choosing isolation ----------------------------------------------------------------------------


def test_auto_without_bwrap_runs_unisolated_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "no-bwrap-here")  # a unique name: the reason is new to this process
    caplog.set_level(logging.WARNING, logger="runner.sandbox")
    for _ in range(2):
        result = LocalSandbox(bwrap=missing).run(["sh", "-c", "echo ran"], tmp_path, {}, FAST)
        assert result.ok and result.stdout == "ran\n" and result.isolation == "none"
    warnings = [r.getMessage() for r in caplog.records if "bubblewrap unavailable" in r.getMessage()]
    reason = f"`{missing}` is not installed"
    assert warnings == [
        f"bubblewrap unavailable ({reason}): running agents without filesystem/network isolation"
    ]


def test_demanding_bwrap_where_it_is_missing_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(IsolationError, match=r"not installed.*apt-get install bubblewrap"):
        LocalSandbox(isolation="bwrap", bwrap=str(tmp_path / "no-bwrap"))


def test_unknown_isolation_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="isolation must be one of auto, bwrap, none"):
        LocalSandbox(isolation="docker")  # type: ignore[arg-type]


def test_none_runs_the_same_command_without_bwrap(tmp_path: Path) -> None:
    result = LocalSandbox(isolation="none").run(["sh", "-c", "touch made && echo $$"], tmp_path, {}, FAST)
    assert result.ok and result.isolation == "none" and (tmp_path / "made").exists()
    assert int(result.stdout) > 2  # a host pid, not a namespace's


# -- inside bwrap ------------------------------------------------------------------------------------


@pytest.fixture
def jail() -> LocalSandbox:
    return LocalSandbox(isolation="bwrap")


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A folder outside /tmp (which bwrap replaces), so the run sees the host's copy read-only."""
    path = Path(tempfile.mkdtemp(prefix="clarity-iso-", dir="/var/tmp")).resolve()
    path.chmod(0o755)  # as a folder of the host's normally is: a run that is not root may pass where shown
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _marker() -> str:
    """A `sleep` duration no other process has: its command line finds the process from the host."""
    return f"60.{uuid.uuid4().int % 10**9:09d}"


def _live_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _gone(marker: str, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _live_pids(marker):
            return True
        time.sleep(0.02)
    return False


@needs_bwrap
def test_bwrap_is_available_on_this_machine() -> None:
    assert unavailable_reason() is None


@needs_bwrap
def test_only_the_workspace_is_writable(jail: LocalSandbox, tmp_path: Path, host_dir: Path) -> None:
    name = f"clarity-escape-{uuid.uuid4().hex}"
    script = (
        f"touch /etc/{name}; echo etc=$?; touch {host_dir}/{name}; echo host=$?; "
        f"touch $HOME/../{name}; touch made-here; echo work=$?"
    )
    result = jail.run(["sh", "-c", script], tmp_path, {}, FAST)
    assert result.isolation == "bwrap"
    assert "etc=1" in result.stdout and "host=1" in result.stdout and "work=0" in result.stdout
    assert "Read-only file system" in result.stderr
    assert (tmp_path / "made-here").exists()
    assert not Path(f"/etc/{name}").exists() and not (host_dir / name).exists()
    assert not (Path(tempfile.gettempdir()) / name).exists()  # $HOME/.. is the run's own /tmp


@needs_bwrap
def test_a_root_run_cannot_remount_the_root_writable(jail: LocalSandbox, tmp_path: Path) -> None:
    name = f"clarity-remount-{uuid.uuid4().hex}"
    result = jail.run(["sh", "-c", f"mount -o remount,rw / ; touch /etc/{name}"], tmp_path, {}, FAST)
    assert not result.ok and not Path(f"/etc/{name}").exists()


@needs_bwrap
def test_home_and_tmpdir_are_writable_and_private(jail: LocalSandbox, tmp_path: Path) -> None:
    sandbox = LocalSandbox(env_allowlist=("PATH",), isolation="bwrap")
    script = 'touch "$HOME/probe" "$TMPDIR/probe" && echo "$HOME $TMPDIR"'
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, FAST)
    assert result.ok, result.stderr
    home, tmpdir = result.stdout.split()
    assert tmpdir == "/tmp" and home.startswith("/tmp/")
    assert not Path(home).exists()  # removed after the run


@needs_bwrap
def test_the_network_is_out_of_reach_even_on_loopback(jail: LocalSandbox, tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    program = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')"
    try:
        closed = jail.run([sys.executable, "-c", program], tmp_path, {}, FAST)
        networked = jail.run([sys.executable, "-c", program], tmp_path, {}, Limits(timeout=20, network=True))
    finally:
        server.close()
    assert not closed.ok and "ConnectionRefusedError" in closed.stderr and "connected" not in closed.stdout
    assert not networked.ok and "ConnectionRefusedError" in networked.stderr and "connected" not in networked.stdout


@needs_bwrap
def test_hidden_folders_read_as_empty_and_hidden_files_cannot_be_read(tmp_path: Path, host_dir: Path) -> None:
    data = host_dir / "data"
    (data / "keys").mkdir(parents=True)
    (data / "keys" / "app.pem").write_text("-----BEGIN PRIVATE KEY-----")
    key = host_dir / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----")
    # The folder holding them is shown (as a tool folder the operator named), so hiding has work to do.
    sandbox = LocalSandbox(isolation="bwrap", hide=(data, key), config=LocalConfig(tools=(host_dir,)))
    script = f"ls -A {data}; cat {data}/keys/app.pem; echo missing=$?; cat {key}; echo unreadable=$?"
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, FAST)
    assert result.stdout == "missing=1\nunreadable=1\n"
    assert (
        f"{data}/keys/app.pem: No such file" in result.stderr and f"{key}: Permission denied" in result.stderr
    )
    assert "PRIVATE KEY" not in result.stdout + result.stderr


@needs_bwrap
def test_the_worker_credentials_are_hidden_without_being_asked(tmp_path: Path, host_dir: Path) -> None:
    (host_dir / ".ssh").mkdir()
    (host_dir / ".ssh" / "id_ed25519").write_text("secret ssh key")
    (host_dir / ".git-credentials").write_text("https://x:token@github.com")
    (host_dir / "notes.txt").write_text("visible")
    parent = {"HOME": str(host_dir), "PATH": os.environ["PATH"]}
    # The worker's home is not there at all: the run's HOME is its own, in its /tmp.
    unseen = LocalSandbox(isolation="bwrap", parent_env=parent).run(
        ["sh", "-c", f"echo $HOME; cat {host_dir}/notes.txt {host_dir}/.git-credentials"], tmp_path, {}, FAST)
    assert unseen.stdout == "/tmp/home\n" and "No such file" in unseen.stderr
    # Shown on purpose (a tool folder), its credentials still are not.
    sandbox = LocalSandbox(isolation="bwrap", parent_env=parent, config=LocalConfig(tools=(host_dir,)))
    script = f"ls -A {host_dir}/.ssh; cat {host_dir}/.git-credentials; cat {host_dir}/notes.txt"
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, FAST)
    assert result.ok and result.stdout == "visible"


@needs_bwrap
def test_writable_paths_show_through_a_hidden_data_dir(tmp_path: Path, host_dir: Path) -> None:
    data = host_dir / "data"
    workdir, mine, other = data / "workspaces" / "o-r", data / "artifacts" / "e1", data / "artifacts" / "e2"
    for folder in (workdir, mine, other):
        folder.mkdir(parents=True)
    (mine / "prompt.md").write_text("do it")
    (other / "prompt.md").write_text("someone else's")
    sandbox = LocalSandbox(isolation="bwrap", hide=(data,), writable=(mine,))
    script = (
        f"cat {mine}/prompt.md; echo; echo log > {mine}/agent.log; echo x > file; ls {other}; echo other=$?"
    )
    result = sandbox.run(["sh", "-c", script], workdir, {}, FAST)
    assert result.stdout == "do it\nother=2\n"
    assert (mine / "agent.log").read_text() == "log\n" and (workdir / "file").exists()


@needs_bwrap
def test_the_run_sees_only_its_own_processes(jail: LocalSandbox, tmp_path: Path) -> None:
    script = f"ls /proc | grep -c '^[0-9]'; kill -0 {os.getpid()}; echo kill=$?"
    result = jail.run(["sh", "-c", script], tmp_path, {}, FAST)
    count, kill = result.stdout.split()
    assert int(count) <= 5 and kill == "kill=1"


@needs_bwrap
def test_timeout_kills_the_whole_tree_inside_bwrap(jail: LocalSandbox, tmp_path: Path) -> None:
    marker = _marker()
    started = time.monotonic()
    result = jail.run(["sh", "-c", f"sleep {marker} & sleep {marker}"], tmp_path, {}, Limits(timeout=1))
    assert time.monotonic() - started < 3.5
    assert result.timed_out and result.killed_by == "timeout" and not result.ok
    assert _gone(marker)


@needs_bwrap
def test_members_that_ignore_sigterm_or_leave_the_session_die_too(tmp_path: Path) -> None:
    marker = _marker()
    sandbox = LocalSandbox(kill_grace=0.5, isolation="bwrap")
    script = f"trap '' TERM; sleep {marker} & setsid sleep {marker} & wait"
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=0.5))
    assert result.timed_out and time.monotonic() - started < 3
    assert _gone(marker)


@needs_bwrap
def test_background_leftovers_die_when_the_command_exits_inside_bwrap(
    jail: LocalSandbox, tmp_path: Path
) -> None:
    marker = _marker()
    started = time.monotonic()
    result = jail.run(
        ["sh", "-c", f"sleep {marker} & setsid sleep {marker} & echo started"], tmp_path, {}, FAST
    )
    assert result.ok and time.monotonic() - started < 3
    assert _gone(marker)


@needs_bwrap
def test_cancel_kills_the_tree_inside_bwrap(jail: LocalSandbox, tmp_path: Path) -> None:
    marker, cancel = _marker(), threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = jail.run(["sh", "-c", f"sleep {marker} & sleep {marker}"], tmp_path, {}, FAST, cancel=cancel)
    assert result.killed_by == "cancelled" and not result.ok
    assert _gone(marker)


@needs_bwrap
def test_limits_still_bite_inside_bwrap(jail: LocalSandbox, tmp_path: Path) -> None:
    cpu = jail.run(["sh", "-c", "while :; do :; done"], tmp_path, {}, Limits(timeout=10, cpu_seconds=1))
    assert not cpu.ok and not cpu.timed_out and cpu.killed_by == "cpu"
    limits = Limits(timeout=20, file_size_bytes=1_000_000)
    big = jail.run(["sh", "-c", "exec head -c 5000000 /dev/zero > big.bin"], tmp_path, {}, limits)
    assert not big.ok and big.killed_by == "file_size"
    assert (tmp_path / "big.bin").stat().st_size <= 1_000_000
    program = "x = bytearray(500 * 1024 * 1024); print('allocated')"
    memory = Limits(timeout=20, memory_bytes=200 * 1024**2)
    hog = jail.run([sys.executable, "-c", program], tmp_path, {}, memory)
    assert not hog.ok and "allocated" not in hog.stdout and hog.killed_by == "memory"  # the cgroup's OOM kill


@needs_bwrap
def test_env_stdin_and_output_cap_work_inside_bwrap(
    jail: LocalSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "x")
    seen = jail.run(["env"], tmp_path, {"CLARITY_TASK_ID": "1.2"}, FAST).stdout
    assert "GITHUB_WEBHOOK_SECRET" not in seen and "CLARITY_TASK_ID=1.2\n" in seen
    assert jail.run(["cat"], tmp_path, {}, FAST, stdin="from stdin").stdout == "from stdin"
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    capped = jail.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=20, output_bytes=1000))
    assert capped.stdout.endswith("line-2999\n") and "truncated" in capped.stdout.splitlines()[0]


@needs_bwrap
def test_missing_or_non_executable_programs_keep_their_exit_codes(jail: LocalSandbox, tmp_path: Path) -> None:
    missing = jail.run(["no-such-tool-xyz", "--flag"], tmp_path, {}, FAST)
    assert (missing.exit_code, missing.stderr) == (127, "command not found: no-such-tool-xyz\n")
    (tmp_path / "script.sh").write_text("echo hi\n")
    denied = jail.run(["./script.sh"], tmp_path, {}, FAST)
    assert denied.exit_code == 126 and "permission denied" in denied.stderr
    (tmp_path / "script.sh").chmod(0o755)
    assert jail.run(["./script.sh"], tmp_path, {}, FAST).stdout == "hi\n"
    assert jail.run(["pwd"], tmp_path, {}, FAST).stdout.strip() == str(tmp_path.resolve())


@needs_bwrap
def test_checks_run_inside_bwrap_with_sh_python_and_git(jail: LocalSandbox, tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text("ok\n")
    specs = [
        "grep -q ok out.txt",
        f"{sys.executable} -c 'import json, sqlite3'",
        "git --version",
        "python3 -c 'print(1)'",
        "file out.txt",
        "touch /usr/clarity-check",
    ]
    results = run_checks(specs, jail, tmp_path, {}, FAST)
    assert [r.passed for r in results] == [True, True, True, True, True, False]
    assert "Read-only file system" in results[-1].output
