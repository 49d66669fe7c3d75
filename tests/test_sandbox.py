"""The local sandbox: real subprocesses, real limits, real process groups.

These run without bubblewrap (`isolation="none"`), where pids written by the child are the host's;
tests/test_sandbox_isolation.py runs the same mechanics inside bwrap.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from runner import cgroups
from runner.sandbox import Limits, LocalSandbox, Result, scrub_env

FAST = Limits(timeout=20)


def _alive(pid: int) -> bool:
    """True when pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def sandbox() -> LocalSandbox:
    return LocalSandbox(isolation="none")


def test_echo_output_and_exit_code_come_back(sandbox: LocalSandbox, tmp_path: Path) -> None:
    result = sandbox.run(["echo", "hello"], tmp_path, {}, FAST)
    assert (result.exit_code, result.stdout, result.stderr, result.ok) == (0, "hello\n", "", True)
    assert result.duration < 5
    assert {"ru_utime", "ru_stime", "ru_maxrss"} <= set(result.usage)  # and the cgroup's counters, if any


def test_failing_command_is_not_ok_and_keeps_stderr(sandbox: LocalSandbox, tmp_path: Path) -> None:
    result = sandbox.run(["sh", "-c", "echo out; echo boom >&2; exit 3"], tmp_path, {}, FAST)
    assert (result.exit_code, result.ok, result.stderr) == (3, False, "boom\n")
    assert result.output_tail() == "out\nboom"


def test_command_runs_in_workdir(sandbox: LocalSandbox, tmp_path: Path) -> None:
    assert sandbox.run(["pwd"], tmp_path, {}, FAST).stdout.strip() == str(tmp_path.resolve())


def test_parent_secrets_do_not_reach_the_child_but_explicit_env_does(
    sandbox: LocalSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "x")
    monkeypatch.setenv("CLARITY_FERNET_KEYS", "y")
    result = sandbox.run(["env"], tmp_path, {"CLARITY_TASK_ID": "1.2"}, FAST)
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert "GITHUB_WEBHOOK_SECRET" not in seen and "CLARITY_FERNET_KEYS" not in seen
    assert seen["CLARITY_TASK_ID"] == "1.2"
    assert seen["PATH"] == os.environ["PATH"]


def test_home_is_a_writable_temporary_directory_when_not_given(tmp_path: Path) -> None:
    sandbox = LocalSandbox(env_allowlist=("PATH",), isolation="none")
    result = sandbox.run(["sh", "-c", 'touch "$HOME/probe" && echo "$HOME"'], tmp_path, {}, FAST)
    assert result.ok, result.stderr
    home = Path(result.stdout.strip())
    assert home != Path(os.environ["HOME"])
    assert not home.exists()  # removed after the run


def test_scrub_env_keeps_only_allowlisted_names_and_explicit_values_win() -> None:
    parent = {"PATH": "/bin", "GITHUB_TOKEN": "t", "LANG": "C"}
    assert scrub_env(parent, ("PATH", "LANG", "TZ"), {"LANG": "de_DE", "X": "1"}) == {
        "PATH": "/bin",
        "LANG": "de_DE",
        "X": "1",
    }
    assert scrub_env({}, ("PATH",), {})["PATH"]  # a child always gets some PATH


def test_timeout_kills_the_whole_group_including_grandchildren(sandbox: LocalSandbox, tmp_path: Path) -> None:
    script = "sleep 60 & echo $! > grandchild.pid; sleep 60"
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=1))
    elapsed = time.monotonic() - started
    assert result.timed_out and result.killed_by == "timeout" and not result.ok
    assert elapsed < 3.5
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert _wait_gone(grandchild)
    assert "[killed: timeout" in result.output_tail()


def test_group_members_that_ignore_sigterm_are_killed_too(tmp_path: Path) -> None:
    sandbox = LocalSandbox(kill_grace=0.5, isolation="none")
    script = "trap '' TERM; sleep 60 & echo $! > bg.pid; wait"
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=0.5))
    assert result.timed_out and time.monotonic() - started < 3
    assert _wait_gone(int((tmp_path / "bg.pid").read_text()))


def test_background_leftovers_die_when_the_command_exits(sandbox: LocalSandbox, tmp_path: Path) -> None:
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", "sleep 60 & echo $!"], tmp_path, {}, FAST)
    assert result.ok and time.monotonic() - started < 3
    assert _wait_gone(int(result.stdout.strip()))


def test_writing_past_the_file_size_limit_fails(sandbox: LocalSandbox, tmp_path: Path) -> None:
    limits = Limits(timeout=20, file_size_bytes=1_000_000)
    result = sandbox.run(["head", "-c", "5000000", "/dev/zero"], tmp_path, {}, limits)  # to a pipe: fine
    assert result.ok
    result = sandbox.run(["sh", "-c", "exec head -c 5000000 /dev/zero > big.bin"], tmp_path, {}, limits)
    assert not result.ok and result.killed_by == "file_size"
    assert (tmp_path / "big.bin").stat().st_size <= 1_000_000


@pytest.mark.skipif(isinstance(cgroups.layout(), str), reason="no cgroup can be made here")
def test_allocating_past_the_memory_limit_fails(sandbox: LocalSandbox, tmp_path: Path) -> None:
    program = "x = bytearray(500 * 1024 * 1024); print('allocated')"
    result = sandbox.run(
        [sys.executable, "-c", program], tmp_path, {}, Limits(timeout=20, memory_bytes=200 * 1024**2)
    )
    assert not result.ok and "allocated" not in result.stdout
    assert result.killed_by == "memory"  # the run's cgroup, not an address-space limit (Bun, the JVM, Go hate those)


def test_cpu_limit_stops_a_busy_loop(sandbox: LocalSandbox, tmp_path: Path) -> None:
    result = sandbox.run(["sh", "-c", "while :; do :; done"], tmp_path, {}, Limits(timeout=10, cpu_seconds=1))
    assert not result.ok and not result.timed_out and result.killed_by == "cpu"


def test_output_cap_keeps_the_tail_and_says_so(sandbox: LocalSandbox, tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=20, output_bytes=1000))
    assert result.stdout.endswith("line-2999\n")
    assert "line-0\n" not in result.stdout
    assert result.stdout.startswith("[clarity: ") and "truncated" in result.stdout.splitlines()[0]
    body = result.stdout.split("\n", 1)[1]
    assert len(body.encode()) == 1000


def test_large_output_on_both_streams_does_not_deadlock(sandbox: LocalSandbox, tmp_path: Path) -> None:
    script = "head -c 3000000 /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2"
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=20, output_bytes=10_000))
    assert result.ok and result.stdout.endswith("a" * 100) and result.stderr.endswith("b" * 100)


def test_missing_executable_is_exit_127_with_a_message(sandbox: LocalSandbox, tmp_path: Path) -> None:
    result = sandbox.run(["no-such-tool-xyz", "--flag"], tmp_path, {}, FAST)
    assert result == Result(127, "", "command not found: no-such-tool-xyz\n", result.duration)
    assert not result.ok


def test_non_executable_file_is_exit_126(sandbox: LocalSandbox, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    result = sandbox.run([str(script)], tmp_path, {}, FAST)
    assert result.exit_code == 126 and "permission denied" in result.stderr


def test_stdin_is_fed_to_the_child(sandbox: LocalSandbox, tmp_path: Path) -> None:
    assert sandbox.run(["cat"], tmp_path, {}, FAST, stdin="from stdin").stdout == "from stdin"


def test_setting_the_cancel_event_kills_the_group(sandbox: LocalSandbox, tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = sandbox.run(
        ["sh", "-c", "sleep 60 & echo $! > bg.pid; sleep 60"], tmp_path, {}, FAST, cancel=cancel
    )
    assert time.monotonic() - started < 3
    assert result.killed_by == "cancelled" and not result.timed_out and not result.ok
    assert _wait_gone(int((tmp_path / "bg.pid").read_text()))


def test_missing_workdir_is_reported_not_raised(sandbox: LocalSandbox, tmp_path: Path) -> None:
    result = sandbox.run(["echo"], tmp_path / "nope", {}, FAST)
    assert result.exit_code == 126 and "working directory does not exist" in result.stderr


def test_output_tail_puts_stderr_last_and_cuts_from_the_front() -> None:
    result = Result(1, "o" * 50, "e" * 50, 0.1)
    assert result.output_tail(20) == "[...]\n" + "e" * 20
    assert result.output_tail() == "o" * 50 + "\n" + "e" * 50
