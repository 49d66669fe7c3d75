"""Attacks on the local sandbox's limits and walls (issue 13, findings 7 and 9).

A check or an agent is hostile: it forks without end, allocates memory in several processes at once,
fills /tmp and the workspace, connects to the unix sockets of the host's databases and container
runtime, reads files outside its workspace, runs as root. Each attack here ran on the code before the
defence, through the real bubblewrap sandbox (and for the fork bomb, the missing bubblewrap and the
tool under /tmp, through the whole product: forge, web, a `clarity worker`), and got through: 1,000
processes, 4.5 GB at once, 600 MB in /tmp, 1.2 GB in the workspace, MariaDB, PostgreSQL and
containerd connectable, root inside, the worker's key file read by a check when bubblewrap could not
start. A tool the sandbox cannot start was retried as if the agent had crashed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import devstack
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from jobs import sandboxes
from jobs.failures import ErrorClass, classify_exception
from runner import cgroups
from runner.isolation import unavailable_reason
from runner.sandbox import IsolationError, Limits, LocalSandbox, Result
from tests.conftest import AGENT
from tests.e2e import REPO, make_repo, store_of, tasks_md, wait_settled

needs_bwrap = pytest.mark.skipif(unavailable_reason() is not None, reason=f"bubblewrap: {unavailable_reason()}")
needs_cgroups = pytest.mark.skipif(isinstance(cgroups.layout(), str), reason=f"cgroups: {cgroups.layout()}")
pytestmark = [needs_bwrap, needs_cgroups]

LIMITS = Limits(timeout=60)  # what a task's run gets: the product's defaults and its wall clock
MiB = 1024**2


@pytest.fixture
def outside() -> Iterator[Path]:
    """A folder outside /tmp and outside any data folder: the host's own files, as far as a run can tell."""
    path = Path(tempfile.mkdtemp(prefix="clarity-attack-", dir="/var/tmp")).resolve()
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def jail(data: Path | None = None, **options: object) -> LocalSandbox:
    """The local sandbox as a worker builds it (jobs.sandboxes): bubblewrap, the operator's default limits
    (CLARITY_SANDBOX_*), the data folder hidden."""
    settings = Settings(app_id=1, private_key="", webhook_secret="")
    return LocalSandbox(isolation="bwrap", hide=(data,) if data else (), config=sandboxes.local_config(settings),
                        **options)  # type: ignore[arg-type]


def python(program: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(program)]


# -- processes, memory, CPU ----------------------------------------------------------------------

FORK_BOMB = """
    import os, sys, time
    n = 0
    try:
        for _ in range(1000):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            n += 1
    except OSError as exc:
        print("forked", n, exc.errno, flush=True)
        sys.exit(1)
    print("forked", n, flush=True)
"""


def test_a_fork_bomb_of_1000_processes_is_stopped_at_the_process_limit_and_reported_as_pids(tmp_path: Path) -> None:
    result = jail().run(python(FORK_BOMB), tmp_path, {}, LIMITS)
    forked = int(result.stdout.split()[1])
    assert forked < 512, result.stdout
    assert result.killed_by == "pids" and not result.ok and result.usage["pids_refused"] >= 1
    assert "the process limit refused" in result.stderr


HOG = "import time; x = b'x' * (1536 * 1024**2); print('allocated', flush=True); time.sleep(4)"


def test_three_processes_of_1_5_gb_at_once_are_oom_killed_and_reported_as_memory(tmp_path: Path) -> None:
    script = f'for i in 1 2 3; do "{sys.executable}" -c "{HOG}" & done; wait'
    result = jail().run(["sh", "-c", script], tmp_path, {}, LIMITS)
    assert result.stdout.count("allocated") < 3
    assert result.killed_by == "memory" and not result.ok
    assert result.usage["memory_peak_bytes"] <= LIMITS.memory_bytes + 16 * MiB  # type: ignore[operator]


def test_a_runtime_that_reserves_a_large_address_space_still_runs(tmp_path: Path) -> None:
    # Bun (Claude Code), the JVM and Go reserve far more address space than they use: no RLIMIT_AS.
    program = """
        import mmap
        noreserve = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Python 3.13 names it; Linux's value before
        area = mmap.mmap(-1, 16 * 1024**3, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | noreserve)
        print("reserved", len(area) // 1024**3, "GiB")
    """
    result = jail().run(python(program), tmp_path, {}, LIMITS)
    assert result.ok and result.stdout == "reserved 16 GiB\n", result.stderr


def test_four_busy_processes_get_one_core_of_cpu_time(tmp_path: Path) -> None:
    script = "for i in 1 2 3 4; do timeout 2 sh -c 'while :; do :; done' & done; wait"
    result = jail().run(["sh", "-c", script], tmp_path, {}, LIMITS)
    assert result.ok, result.stderr
    assert result.usage["cpu_seconds"] <= 2.6, result.usage  # 1 core for 2 s (4 cores' worth was asked)


# -- /tmp, HOME and the workspace ------------------------------------------------------------------


def test_filling_tmp_and_home_stops_at_the_tmp_cap(tmp_path: Path) -> None:
    script = ('head -c 300M /dev/zero > /tmp/fill; head -c 300M /dev/zero > "$HOME/fill"; '
              'cat /tmp/fill "$HOME/fill" | wc -c')
    result = jail().run(["sh", "-c", script], tmp_path, {}, LIMITS)
    written = int(result.stdout.split()[-1])
    assert written <= 256 * MiB, f"{written} bytes in /tmp and HOME"
    assert "No space left on device" in result.stderr


def _disk_fill(tmp_path: Path, script: list[str]) -> tuple[int, Result]:
    try:
        result = jail().run(script, tmp_path, {}, LIMITS)
        on_disk = sum(p.stat().st_size for p in tmp_path.iterdir() if p.is_file())
    finally:
        for path in tmp_path.iterdir():
            path.unlink()
    return on_disk, result


def test_writing_1_2_gb_into_the_workspace_is_stopped_and_reported_as_disk(tmp_path: Path) -> None:
    script = ("i=0; while [ $i -lt 12 ]; do head -c 100M /dev/zero > fill-$i.bin || exit 1; i=$((i+1)); done; "
              "echo wrote it all")
    on_disk, result = _disk_fill(tmp_path, ["sh", "-c", script])
    assert "wrote it all" not in result.stdout
    assert result.killed_by == "disk" and on_disk < 1200 * MiB
    assert "over the disk limit of 1024 MiB" in result.stderr


@pytest.mark.slow
def test_a_deleted_file_held_open_counts_against_the_disk_limit(tmp_path: Path) -> None:
    # Three files of 400 MB, each under the file size limit, unlinked while written: no walk of the
    # workspace finds them, the file system still fills.
    program = """
        import os
        block = b"x" * (100 * 1024**2)
        held = []
        for i in range(3):
            f = open(f"hidden-{i}.bin", "wb")
            os.unlink(f"hidden-{i}.bin")
            held.append(f)
            for _ in range(4):
                f.write(block)
                f.flush()
        print("wrote it all")
    """
    _, result = _disk_fill(tmp_path, python(program))
    assert "wrote it all" not in result.stdout and result.killed_by == "disk"


# -- who the run is and what it sees ---------------------------------------------------------------


def test_the_run_is_not_root_and_cannot_read_the_hosts_password_hashes(tmp_path: Path) -> None:
    result = jail().run(["sh", "-c", "id -u; id -g; cat /etc/shadow /etc/gshadow"], tmp_path, {}, LIMITS)
    uid, gid = result.stdout.split()[:2]
    assert (uid, gid) == ("65534", "65534")
    assert "root:" not in result.stdout and not result.ok


def test_files_outside_the_workspace_and_the_system_folders_are_not_there(tmp_path: Path, outside: Path) -> None:
    data = outside / "data"
    theirs = data / "workspaces" / "other" / "repo"
    theirs.mkdir(parents=True)
    (theirs / "secret.txt").write_text("another customer's code")
    (outside / "notes.txt").write_text("the host's own file")
    for path in (outside / "notes.txt", theirs / "secret.txt"):
        path.chmod(0o644)
    script = (f"cat {outside}/notes.txt {theirs}/secret.txt /root/.bash_history; "
              "ls -d /run /var/run /var/lib /srv /home /mnt /opt 2>&1 | grep -v 'No such'; echo end")
    result = jail(data).run(["sh", "-c", script], tmp_path, {}, LIMITS)
    assert result.stdout == "end\n", result.stdout
    assert "the host's own file" not in result.stdout and "another customer" not in result.stdout


PROBE_SOCKETS = """
    import socket, sys
    for path in sys.argv[1:]:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(path)
            print(path, "connected")
        except OSError as exc:
            print(path, type(exc).__name__)
"""


@pytest.fixture
def host_sockets() -> Iterator[list[Path]]:
    """Listening unix sockets where services keep them (/run, /var/lib), mode 777 like MariaDB's."""
    made, servers = [], []
    for base in (Path("/run"), Path("/var/lib")):
        folder = base / f"clarity-attack-{uuid.uuid4().hex[:8]}"
        folder.mkdir(mode=0o755)
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(folder / "db.sock"))
        server.listen(8)
        (folder / "db.sock").chmod(0o777)
        made.append(folder)
        servers.append(server)
    try:
        yield [folder / "db.sock" for folder in made]
    finally:
        for server in servers:
            server.close()
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)


def test_database_and_container_runtime_sockets_cannot_be_reached(tmp_path: Path, host_sockets: list[Path]) -> None:
    real = [Path(p) for p in ("/run/mysqld/mysqld.sock", "/var/run/postgresql/.s.PGSQL.5432",
                              "/run/docker/containerd/containerd.sock", "/run/containerd/containerd.sock",
                              "/var/run/docker.sock")]
    targets = [*host_sockets, *(p for p in real if p.exists())]
    reachable = [p for p in targets if _connectable(p)]
    assert reachable, "the host's sockets must be connectable from outside for this test to mean anything"
    result = jail().run(python(PROBE_SOCKETS) + [str(p) for p in targets], tmp_path, {}, LIMITS)
    assert result.ok, result.stderr
    assert "connected" not in result.stdout, result.stdout
    assert result.stdout.count("FileNotFoundError") == len(targets), result.stdout


def _connectable(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
    except OSError:
        return False
    return True


# -- tools the sandbox must (or cannot) start ------------------------------------------------------


@pytest.fixture
def venv_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An agent installed in a virtualenv under /tmp, as `pip install` in a clone there leaves it."""
    root = tmp_path_factory.mktemp("tool") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    tool = root / "bin" / "myagent"
    tool.write_text(f"#!{root}/bin/python\nimport os, sys\nprint('agent ran as', os.getuid(), 'in', sys.prefix)\n"
                    "open('done.txt', 'w').write('ok')\n")
    tool.chmod(0o755)
    return tool


def test_an_agent_installed_under_tmp_and_found_on_path_runs(tmp_path: Path, venv_tool: Path) -> None:
    parent = {"PATH": f"{venv_tool.parent}:{os.environ['PATH']}"}
    result = jail(parent_env=parent).run(["myagent"], tmp_path, {}, LIMITS)
    assert result.ok, result.stderr
    assert result.stdout == f"agent ran as 65534 in {venv_tool.parent.parent}\n"
    assert (tmp_path / "done.txt").read_text() == "ok"


def test_a_tool_the_sandbox_cannot_show_is_refused_as_infra_not_crashed(tmp_path: Path, outside: Path) -> None:
    tool = outside / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho ran\n")
    tool.chmod(0o755)
    with pytest.raises(IsolationError, match=r"cannot start .*tool.*not shown inside the sandbox") as refused:
        jail().run([str(tool)], tmp_path, {}, LIMITS)
    assert classify_exception(refused.value) is ErrorClass.INFRA


# -- through the whole product ---------------------------------------------------------------------


Start = Callable[..., devstack.Stack]


@pytest.fixture
def product(redis_url: str, tmp_path: Path) -> Iterator[Start]:
    """Starts the whole product (forge, web, a `clarity worker`) with the test agent and no retries."""
    stacks: list[devstack.Stack] = []

    def start(agent_command: str = f"{sys.executable} {AGENT} {{prompt_file}}", **extra_env: str) -> devstack.Stack:
        running = devstack.start(tmp_path / "stack", redis_url, agent_command=agent_command,
                                 namespace=f"attack-{uuid.uuid4().hex[:8]}",
                                 extra_env={"CLARITY_RETRY_BACKOFF": "0.05", "CLARITY_RETRIES": "0", **extra_env})
        stacks.append(running)
        return running

    yield start
    for running in stacks:
        running.forget()
        running.stop()


def _check_runs(stack: devstack.Stack) -> list[dict[str, object]]:
    return [r for r in stack.admin("GET", "/state")["check_runs"] if not str(r["name"]).startswith("Clarity: run")]


@pytest.mark.e2e
def test_a_fork_bomb_check_in_a_real_execution_is_stopped_and_named(product: Start, tmp_path: Path) -> None:
    stack = product()
    source = tmp_path / "bomb-repo"
    source.mkdir()
    (source / "tasks_list.md").write_text("# Tasks\n\n- [ ] 1 Bomb\n  - check: python3 bomb.py\n")
    (source / "bomb.py").write_text(textwrap.dedent(FORK_BOMB))
    stack.create_repo(REPO, source)
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=120)
    assert ex.status is not ExecutionStatus.COMPLETED, ex.reason
    [run] = _check_runs(stack)
    text = str(run["text"])
    forked = int(text.split("forked ", 1)[1].split()[0])
    assert forked < 512 and "killed: pids" in text, text
    assert run["conclusion"] == "failure"


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with every program of this one except bubblewrap: a machine where it is not installed."""
    folder = tmp_path / "no-bwrap-bin"
    folder.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            target = Path(entry) / name
            if name != "bwrap" and not (folder / name).exists() and os.access(target, os.X_OK):
                (folder / name).symlink_to(target)
    return str(folder)


@pytest.mark.e2e
def test_without_bubblewrap_a_task_is_refused_not_run_unsandboxed(product: Start, tmp_path: Path) -> None:
    # The check would read the App's private key, which the worker keeps at GITHUB_PRIVATE_KEY_PATH.
    stack = product(PATH=_path_without_bwrap(tmp_path))
    key = stack.env["GITHUB_PRIVATE_KEY_PATH"]
    make_repo(stack, tmp_path, f"# Tasks\n\n- [ ] 1 Steal\n  - check: grep -q 'PRIVATE KEY' {key}\n")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.BLOCKED, (ex.status, ex.reason)
    assert "bubblewrap" in ex.reason and "CLARITY_SANDBOX=none" in ex.reason and "apt-get install" in ex.reason
    task = store_of(stack).task(ex.id, "1")
    assert task.error_class == "infra" and task.attempts == 0
    assert not _check_runs(stack) or all(r["conclusion"] != "success" for r in _check_runs(stack))


@pytest.mark.e2e
def test_unsandboxed_on_purpose_says_so_on_every_check_run_and_the_dashboard(product: Start, tmp_path: Path) -> None:
    stack = product(CLARITY_SANDBOX="none")
    make_repo(stack, tmp_path, tasks_md(("1", "Plain", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    runs = stack.admin("GET", "/state")["check_runs"]
    assert runs and all("unsandboxed" in str(r["summary"]) for r in runs), [r["summary"] for r in runs]
    page = httpx.get(f"{stack.web_url}/executions/{ex.id}", timeout=30).text
    assert "unsandboxed" in page


@pytest.mark.e2e
def test_an_agent_installed_under_tmp_runs_in_a_real_execution(product: Start, tmp_path: Path,
                                                                venv_tool: Path) -> None:
    tool = venv_tool.parent / "writes-done"
    tool.write_text(f"#!{venv_tool.parent}/python\nimport os, pathlib\nt = os.environ['CLARITY_TASK_ID']\n"
                    "pathlib.Path('done').mkdir(exist_ok=True)\n"
                    "pathlib.Path(f'done/{t}.txt').write_text(f'ok {t}\\n')\n")
    tool.chmod(0o755)
    stack = product(agent_command=f"{tool} {{prompt_file}}")
    make_repo(stack, tmp_path, tasks_md(("1", "Plain", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert store_of(stack).task(ex.id, "1").attempts == 1
