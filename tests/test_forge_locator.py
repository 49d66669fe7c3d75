"""`python -m forge` finds a running demo's forge by itself, and says why when the demo's file is stale."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from forge import locator
from forge.__main__ import main as forge_cli
from tests.conftest_forge import ForgeHandle


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-user runtime dir of the test's own, and no FORGE_URL: only the demo's file can say where."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("FORGE_URL", raising=False)
    return runtime


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_the_demo_file_lives_in_the_users_runtime_dir_else_the_cache(tmp_path: Path) -> None:
    assert locator.state_path({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "clarity" / "demo.json"
    assert locator.state_path({"XDG_RUNTIME_DIR": str(tmp_path / "gone"), "HOME": "/home/ada"}) == \
        Path("/home/ada/.cache/clarity/demo.json")
    assert locator.state_path({"XDG_CACHE_HOME": "/c"}) == Path("/c/clarity/demo.json")


def test_python_m_forge_finds_the_running_demos_forge_without_flags(
        forge: ForgeHandle, runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forge.create_repo("acme/widgets")
    locator.announce(locator.state_path(), {"forge": forge.url, "web": "http://127.0.0.1:1"})
    assert forge_cli(["set-permission", "acme/widgets", "ada", "write"]) == 0
    assert "ada is write on acme/widgets" in capsys.readouterr().out
    users = [user["login"] for user in forge.admin("GET", "/state")[1]["users"]]
    assert "ada" in users  # the call reached this forge, not port 9100


def test_the_demo_file_is_private_and_removed_only_by_its_writer(runtime_dir: Path) -> None:
    path = locator.state_path()
    locator.announce(path, {"forge": "http://127.0.0.1:1"})
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text(f'{{"forge": "http://127.0.0.1:1", "pid": {os.getpid() + 1}}}')  # a newer demo's
    locator.withdraw(path)
    assert path.exists()
    locator.announce(path, {"forge": "http://127.0.0.1:1"})
    locator.withdraw(path)
    assert not path.exists()


def test_a_file_left_by_a_demo_that_died_is_ignored_with_a_message(
        forge: ForgeHandle, runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = locator.state_path()
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"forge": "{forge.url}", "pid": {_dead_pid()}}}')
    assert forge_cli(["set-permission", "acme/widgets", "ada", "write"]) == 2
    err = capsys.readouterr().err
    assert f"ignoring {path}: the demo that wrote it (pid " in err and ") is no longer running" in err
    assert "trying http://127.0.0.1:9100 (pass --forge URL or set FORGE_URL)" in err


def test_a_file_whose_forge_does_not_answer_is_ignored_with_a_message(
        runtime_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _closed_port_url()
    locator.announce(locator.state_path(), {"forge": url})  # our own pid: alive, but nothing listens
    assert forge_cli(["comment", "acme/widgets#1", "/clarity status"]) == 2
    assert f"its forge {url} does not answer" in capsys.readouterr().err


def test_forge_url_and_the_flag_win_over_the_demo_file(
        forge: ForgeHandle, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    forge.create_repo("acme/widgets")
    locator.announce(locator.state_path(), {"forge": _closed_port_url()})
    assert forge_cli(["set-permission", "acme/widgets", "ada", "write", "--forge", forge.url]) == 0
    monkeypatch.setenv("FORGE_URL", forge.url)
    assert forge_cli(["set-permission", "acme/widgets", "bob", "read"]) == 0
    assert "does not answer" not in capsys.readouterr().err  # the file was not even read
