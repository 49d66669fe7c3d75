"""The docker sandbox: its container as data, its pure decisions, then live runs against a real engine.

The live tests need a docker engine and the test image (tests/fixtures/docker/build_image.sh, which
.ci/run runs once); they skip only when no engine answers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker.types import LogConfig, Ulimit

import devstack
from clarity import repoconfig
from clarity.settings import Settings, SettingsError
from clarity.status import ExecutionStatus
from jobs import sandboxes
from runner.containers import (
    LABEL_OWNER,
    CgroupFiles,
    CgroupSampler,
    cgroup_files,
    hand_over,
    leftovers,
    owner_label,
    this_host,
)
from runner.docker_sandbox import (
    LABEL_EXECUTION,
    LABEL_SANDBOX,
    LABEL_TASK,
    DockerConfig,
    DockerError,
    DockerSandbox,
    RunAs,
    classify,
    connect,
    container_spec,
    remove_leftovers,
    run_as,
)
from runner.sandbox import Limits
from runner.workspace import Workspace
from tests.e2e import REPO, branch_file, git, store_of, tasks_md, wait_settled

IMAGE = os.environ.get("CLARITY_TEST_IMAGE", "clarity-test:py")
BUILD_IMAGE = Path(__file__).parent / "fixtures" / "docker" / "build_image.sh"
AGENT = Path(__file__).parent / "fixtures" / "agents" / "scripted.py"
FAST = Limits(timeout=20)

# -- the container as data -----------------------------------------------------------------------


def test_spec_locks_the_container_down_and_mounts_only_the_workspace_and_writable_paths() -> None:
    limits = Limits(timeout=60, cpu_seconds=30, memory_bytes=256 * 1024**2, file_size_bytes=10**6, open_files=64)
    config = DockerConfig(image="acme/ci:1", cpus=1.5, pids=100, tmpfs_bytes=1024, labels={LABEL_EXECUTION: "e1"})
    spec = container_spec(["sh", "-c", "make test"], Path("/srv/ws"), {"CLARITY_TASK_ID": "1.2"}, limits, config,
                          RunAs(1000, 1000), (Path("/srv/artifacts/e1/1.2"),), {"clarity.attempt": "2"})
    assert spec == {
        "image": "acme/ci:1",
        "command": ["sh", "-c", "make test"],
        "user": "1000:1000",
        "working_dir": "/srv/ws",
        "environment": {"HOME": "/tmp", "TMPDIR": "/tmp", "CLARITY_TASK_ID": "1.2"},
        "labels": {LABEL_SANDBOX: "1", LABEL_EXECUTION: "e1", "clarity.attempt": "2"},
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,nosuid,nodev,size=1024"},
        "volumes": {"/srv/ws": {"bind": "/srv/ws", "mode": "rw"},
                    "/srv/artifacts/e1/1.2": {"bind": "/srv/artifacts/e1/1.2", "mode": "rw"}},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 100,
        "nano_cpus": 1_500_000_000,
        "ulimits": [Ulimit(name="core", soft=0, hard=0), Ulimit(name="cpu", soft=30, hard=35),
                    Ulimit(name="fsize", soft=10**6, hard=10**6), Ulimit(name="nofile", soft=64, hard=64)],
        "init": True,
        "log_config": LogConfig(type="none"),
        "stdin_open": False,
        "detach": False,
        "mem_limit": 256 * 1024**2,
        "memswap_limit": 256 * 1024**2,
    }


def test_spec_follows_the_limits_network_processes_and_absent_limits() -> None:
    limits = Limits(timeout=5, cpu_seconds=None, memory_bytes=None, file_size_bytes=None, open_files=None,
                    processes=20, network=True)
    spec = container_spec(["true"], Path("/w"), {"HOME": "/w/home"}, limits, DockerConfig(),
                          RunAs(65534, 65534, hand_over=True), stdin=True)
    # A networked run too: its way out is the egress proxy's socket (tests/test_attacks_network.py).
    assert spec["network_mode"] == "none" and spec["pids_limit"] == 20 and spec["stdin_open"] is True
    assert spec["ulimits"] == [Ulimit(name="core", soft=0, hard=0)]
    assert "mem_limit" not in spec and "memswap_limit" not in spec
    assert spec["environment"]["HOME"] == "/w/home" and spec["user"] == "65534:65534"


@pytest.mark.parametrize(("uid", "gid", "expected"), [
    (1000, 1001, RunAs(1000, 1001, hand_over=False)),  # a dedicated worker user: its own files
    (0, 0, RunAs(65534, 65534, hand_over=True)),  # a root worker: never root inside; lend the files
])
def test_the_container_user_is_the_workspace_owner_but_never_root(uid: int, gid: int, expected: RunAs) -> None:
    assert run_as(uid, gid) == expected


@pytest.mark.parametrize(("exit_code", "reason", "oom", "refused", "expected"), [
    (0, None, False, 0, None),
    (1, None, False, 0, None),
    (143, "timeout", False, 0, "timeout"),
    (137, "cancelled", True, 0, "cancelled"),
    (137, None, True, 0, "memory"),
    (1, None, False, 3, "pids"),
    (0, None, False, 3, None),  # it hit the limit and coped
    (152, None, False, 0, "cpu"),
    (153, None, False, 0, "file_size"),
    (137, None, False, 0, "signal:SIGKILL"),
])
def test_kills_are_classified_like_the_local_sandbox(exit_code: int, reason: str | None, oom: bool,
                                                      refused: int, expected: str | None) -> None:
    assert classify(exit_code, reason, oom, refused, Limits()) == expected


# -- cgroups and leftovers -------------------------------------------------------------------------


def test_cgroup_files_are_found_for_v1_and_v2_hierarchies(tmp_path: Path) -> None:
    v1 = {"cpuacct/docker/c1/cpuacct.usage": "2500000000\n", "memory/docker/c1/memory.max_usage_in_bytes": "4096\n",
          "pids/docker/c1/pids.events": "max 7\n"}
    for name, text in v1.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    proc = "8:pids:/docker/c1\n4:memory:/docker/c1\n2:cpuacct:/docker/c1\n0::/docker/c1\n"
    files = cgroup_files(proc, tmp_path)
    assert files == CgroupFiles(tmp_path / "cpuacct/docker/c1/cpuacct.usage",
                                tmp_path / "memory/docker/c1/memory.max_usage_in_bytes",
                                tmp_path / "pids/docker/c1/pids.events")
    meter = CgroupSampler.for_container("c1", lambda: -1, tmp_path)  # found where cgroupfs puts it, no pid needed
    assert meter.files == files
    meter.stop()
    assert meter.usage() == {"cpu_seconds": 2.5, "memory_peak_bytes": 4096.0, "pids_refused": 7.0}

    v2 = tmp_path / "v2"
    (v2 / "system.slice/docker-c2.scope").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu memory pids\n")
    (v2 / "system.slice/docker-c2.scope/cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (v2 / "system.slice/docker-c2.scope/memory.peak").write_text("8192\n")
    meter = CgroupSampler(cgroup_files("0::/system.slice/docker-c2.scope\n", v2))
    meter.stop()
    assert meter.usage() == {"cpu_seconds": 1.5, "memory_peak_bytes": 8192.0}


def test_a_meter_samples_until_stopped_and_keeps_the_highest_peak(tmp_path: Path) -> None:
    peak, cpu = tmp_path / "memory.peak", tmp_path / "cpuacct.usage"
    peak.write_text("100\n")
    cpu.write_text("1000000000\n")
    meter = CgroupSampler(CgroupFiles(cpu, peak, None))
    meter.start()
    peak.write_text("300\n")
    cpu.write_text("3000000000\n")
    time.sleep(0.05)
    peak.write_text("200\n")  # a v1 max_usage can be reset; the peak seen stays
    meter.stop()
    assert meter.usage() == {"cpu_seconds": 3.0, "memory_peak_bytes": 300.0}
    meter.sample()  # after stop the files are closed: nothing changes
    assert meter.usage() == {"cpu_seconds": 3.0, "memory_peak_bytes": 300.0}
    nowhere = CgroupSampler.for_container("c0", lambda: -1, tmp_path)
    nowhere.stop()
    assert nowhere.usage() == {}


def test_leftovers_are_containers_whose_owner_on_this_host_is_gone() -> None:
    running = {10: "500", 11: "700", 12: None}  # 12 is a zombie or gone
    found = [
        ("alive", {LABEL_OWNER: "h1:10:500"}),
        ("pid-reused", {LABEL_OWNER: "h1:11:600"}),
        ("dead", {LABEL_OWNER: "h1:12:900"}),
        ("other-host", {LABEL_OWNER: "h2:12:900"}),
        ("unlabelled", {}),
        ("not-ours", {LABEL_OWNER: "garbage"}),
        ("colons-in-host", {LABEL_OWNER: "fe80::1:12:900"}),  # another host, whatever its name
    ]
    assert leftovers(found, "h1", running) == ["pid-reused", "dead", "unlabelled", "not-ours"]
    label = owner_label()
    assert label.rsplit(":", 2)[1] == str(os.getpid()) and label.rsplit(":", 2)[2].isdigit()


@pytest.mark.skipif(os.getuid() != 0, reason="lending a workspace to another uid needs a root worker")
def test_a_workspace_left_lent_out_by_a_lost_worker_still_syncs_and_commits(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("# app\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=o", "-c", "user.email=o@x", "commit", "-q", "-m", "initial"]):
        subprocess.run(["git", *argv], cwd=seed, env=env, check=True)
    ws = Workspace(tmp_path / "ws", str(seed), None)
    root = ws.sync("clarity/issue-1", "main")
    hand_over([root], 65534, 65534)  # the run's lending, never given back: the worker died mid-run
    ws.sync("clarity/issue-1", "main")
    ws.write("done.txt", b"ok\n")
    assert ws.commit("clarity: 1 Do it") is not None


# -- settings and wiring -----------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    return {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": "-----BEGIN RSA PRIVATE KEY-----\\nx\\n-----END RSA PRIVATE KEY-----",
            "GITHUB_WEBHOOK_SECRET": "s", **extra}


def test_sandbox_settings_default_to_local_and_are_validated() -> None:
    settings = Settings.from_env(_env())
    assert (settings.sandbox, settings.docker_image, settings.docker_cpus, settings.docker_pids) == (
        "local", "python:3.12-slim", 1.0, 512)
    chosen = Settings.from_env(_env(CLARITY_SANDBOX="Docker", CLARITY_DOCKER_IMAGE="acme/ci:2",
                                    CLARITY_DOCKER_CPUS="2", CLARITY_DOCKER_PIDS="64"))
    assert (chosen.sandbox, chosen.docker_image, chosen.docker_cpus, chosen.docker_pids) == (
        "docker", "acme/ci:2", 2.0, 64)
    with pytest.raises(SettingsError, match=r"CLARITY_SANDBOX must be one of local, docker, none, got 'podman'"):
        Settings.from_env(_env(CLARITY_SANDBOX="podman"))


def test_the_repository_image_wins_over_the_app_default() -> None:
    settings = Settings.from_env(_env(CLARITY_DOCKER_IMAGE="acme/default:1"))
    own = sandboxes.docker_config(settings, repoconfig.parse("image: acme/node:20\n"), "e1", "1.2")
    assert (own.image, own.labels) == ("acme/node:20", {LABEL_EXECUTION: "e1", LABEL_TASK: "1.2"})
    assert sandboxes.docker_config(settings, repoconfig.parse(None), "e1", "1.2").image == "acme/default:1"
    with pytest.raises(repoconfig.ConfigError, match="`image` must be a string"):
        repoconfig.parse("image: [a, b]\n")


def test_an_unreachable_engine_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(DockerError, match=r"needs a docker engine, and none answers at unix://.*CLARITY_SANDBOX=local"):
        connect(nowhere)


# -- live: a real engine ---------------------------------------------------------------------------


def engine_with_image(image: str = IMAGE) -> docker.DockerClient:
    """The engine, with the test image built (the build script skips an up-to-date image); skips the
    test when no engine answers."""
    try:
        engine = connect()
    except DockerError as exc:
        pytest.skip(f"no docker engine answers: {exc}")
    subprocess.run([str(BUILD_IMAGE), image], check=True, capture_output=True, timeout=300)
    return engine


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    """The engine, with the test image built (once)."""
    return engine_with_image()


@pytest.fixture
def run_label() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sandbox(client: docker.DockerClient, run_label: str) -> Iterator[DockerSandbox]:
    yield DockerSandbox(client, DockerConfig(image=IMAGE, pids=128, labels={LABEL_EXECUTION: run_label}),
                        kill_grace=0.5)
    left = client.containers.list(all=True, filters={"label": f"{LABEL_EXECUTION}={run_label}"})
    assert left == [], "the sandbox left containers behind"


@pytest.mark.docker
def test_a_command_sees_its_workspace_and_writes_as_the_owner_gets_back(sandbox: DockerSandbox,
                                                                        tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("from the host\n")
    (tmp_path / "sub").mkdir()
    script = 'cat in.txt; pwd; id -u; echo made > sub/out.txt; touch /etc/x 2>/dev/null || echo read-only root'
    result = sandbox.run(["sh", "-c", script], tmp_path, {"CLARITY_TASK_ID": "1.2"}, FAST)
    assert result.ok, result.stderr
    assert result.stdout == f"from the host\n{tmp_path.resolve()}\n{65534 if os.getuid() == 0 else os.getuid()}\nread-only root\n"
    assert result.isolation == "docker"
    assert (tmp_path / "sub" / "out.txt").read_text() == "made\n"
    # A root worker's workspace is lent to nobody for the run and given back whole.
    assert {p.stat().st_uid for p in (tmp_path, *tmp_path.rglob("*"))} == {os.getuid()}


@pytest.mark.docker
def test_env_stdin_exit_codes_and_missing_programs(sandbox: DockerSandbox, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "host-secret")
    seen = sandbox.run(["env"], tmp_path, {"CLARITY_TASK_ID": "1.2"}, FAST).stdout
    assert "CLARITY_TASK_ID=1.2\n" in seen and "host-secret" not in seen and "HOME=/tmp\n" in seen
    assert sandbox.run(["cat"], tmp_path, {}, FAST, stdin="from stdin").stdout == "from stdin"
    failed = sandbox.run(["sh", "-c", "echo out; echo boom >&2; exit 3"], tmp_path, {}, FAST)
    assert (failed.exit_code, failed.stdout, failed.stderr, failed.ok) == (3, "out\n", "boom\n", False)
    missing = sandbox.run(["no-such-tool-xyz", "--flag"], tmp_path, {}, FAST)
    assert (missing.exit_code, missing.stderr) == (127, "command not found: no-such-tool-xyz\n")
    (tmp_path / "script.sh").write_text("echo hi\n")
    denied = sandbox.run(["./script.sh"], tmp_path, {}, FAST)
    assert (denied.exit_code, denied.stderr) == (126, "permission denied: ./script.sh\n")
    nowhere = sandbox.run(["true"], tmp_path / "nope", {}, FAST)
    assert nowhere.exit_code == 126 and "working directory does not exist" in nowhere.stderr


@pytest.mark.docker
def test_the_network_is_off(sandbox: DockerSandbox, tmp_path: Path) -> None:
    program = ("import os, socket; print(sorted(os.listdir('/sys/class/net')))\n"
               "socket.create_connection(('1.1.1.1', 53), timeout=3)")
    result = sandbox.run(["python3", "-c", program], tmp_path, {}, FAST)
    assert not result.ok and result.stdout == "['lo']\n"
    assert "Network is unreachable" in result.stderr


@pytest.mark.docker
def test_a_loop_forever_is_killed_at_the_timeout_with_usage(sandbox: DockerSandbox, tmp_path: Path) -> None:
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", "trap '' TERM; while :; do :; done"], tmp_path, {}, Limits(timeout=1))
    assert time.monotonic() - started < 6
    assert result.timed_out and result.killed_by == "timeout" and not result.ok
    assert "[killed: timeout" in result.output_tail()
    assert result.usage["cpu_seconds"] > 0.1 and result.usage["memory_peak_bytes"] > 0


@pytest.mark.docker
def test_cancel_kills_the_container_at_once(sandbox: DockerSandbox, tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = sandbox.run(["sh", "-c", "sleep 60 & sleep 60"], tmp_path, {}, FAST, cancel=cancel)
    assert time.monotonic() - started < 5
    assert result.killed_by == "cancelled" and not result.timed_out and not result.ok


@pytest.mark.docker
def test_ten_thousand_forks_hit_the_pids_limit(sandbox: DockerSandbox, tmp_path: Path) -> None:
    program = ("import os, sys, time\nn = 0\ntry:\n    for _ in range(10_000):\n"
               "        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\n"
               "except OSError as exc:\n    print('forked', n, exc.errno)\n    time.sleep(0.3)\n    sys.exit(1)\n"
               "print('forked', n)")
    result = sandbox.run(["python3", "-c", program], tmp_path, {}, FAST)
    forked, errno = result.stdout.split()[1:]
    assert int(forked) < 128 and errno == "11"  # EAGAIN: the cgroup refused the fork
    assert result.killed_by == "pids" and result.usage["pids_refused"] >= 1
    assert "the process limit refused" in result.stderr


@pytest.mark.docker
def test_allocating_50_gb_is_an_oom_kill(sandbox: DockerSandbox, tmp_path: Path) -> None:
    program = "blocks = []\nfor _ in range(500):\n    blocks.append(b'x' * (100 * 1024 * 1024))\nprint('allocated')"
    limits = Limits(timeout=30, memory_bytes=256 * 1024**2)
    result = sandbox.run(["python3", "-c", program], tmp_path, {}, limits)
    assert result.killed_by == "memory" and result.exit_code == 137 and "allocated" not in result.stdout
    assert result.usage["memory_peak_bytes"] <= 256 * 1024**2


@pytest.mark.docker
def test_writing_10_gb_stops_at_the_file_size_limit(sandbox: DockerSandbox, tmp_path: Path) -> None:
    limits = Limits(timeout=30, file_size_bytes=1_000_000)
    result = sandbox.run(["sh", "-c", "exec head -c 10737418240 /dev/zero > big.bin"], tmp_path, {}, limits)
    assert not result.ok and result.killed_by == "file_size"
    assert (tmp_path / "big.bin").stat().st_size <= 1_000_000
    program = "f = open('big2.bin', 'wb')\nfor _ in range(10 * 1024):\n    f.write(bytes(1024 * 1024))"
    refused = sandbox.run(["python3", "-c", program], tmp_path, {}, limits)  # python ignores SIGXFSZ
    assert not refused.ok and "File too large" in refused.stderr


@pytest.mark.docker
def test_output_is_capped_to_its_tail(sandbox: DockerSandbox, tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; head -c 3000000 /dev/zero >&2"
    result = sandbox.run(["sh", "-c", script], tmp_path, {}, Limits(timeout=20, output_bytes=1000))
    assert result.stdout.endswith("line-2999\n") and "truncated" in result.stdout.splitlines()[0]
    assert len(result.stderr.split("\n", 1)[1].encode()) == 1000


@pytest.mark.docker
def test_leftovers_of_a_dead_worker_are_removed_and_live_ones_kept(client: docker.DockerClient,
                                                                   run_label: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    made = {}
    for name, owner in (("dead", f"{this_host()}:{dead.pid}:1"), ("live", owner_label())):
        made[name] = client.containers.create(IMAGE, ["sleep", "60"], labels={
            LABEL_SANDBOX: "1", LABEL_EXECUTION: run_label, LABEL_OWNER: owner}).id
    try:
        removed = remove_leftovers(client)
        assert made["dead"] in removed and made["live"] not in removed
        left = {c.id for c in client.containers.list(all=True, filters={"label": f"{LABEL_EXECUTION}={run_label}"})}
        assert left == {made["live"]}
    finally:
        for cid in made.values():
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.NotFound:
                pass


@pytest.mark.docker
def test_a_missing_image_that_cannot_be_pulled_is_a_clear_error(client: docker.DockerClient, tmp_path: Path) -> None:
    sandbox = DockerSandbox(client, DockerConfig(image="127.0.0.1:9/clarity/no-such-image:1"))
    with pytest.raises(DockerError, match=r"image `127.0.0.1:9/clarity/no-such-image:1` is not on the docker engine"):
        sandbox.run(["true"], tmp_path, {}, FAST)


# -- live: the whole product with CLARITY_SANDBOX=docker -------------------------------------------


@pytest.fixture
def docker_stack(client: docker.DockerClient, redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    running = devstack.start(tmp_path / "stack", redis_url, agent_command="python3 .agent/scripted.py {prompt_file}",
                             namespace=f"e2e-{uuid.uuid4().hex[:8]}",
                             extra_env={"CLARITY_SANDBOX": "docker", "CLARITY_RETRY_BACKOFF": "0.05",
                                        # Never pulled: the repository's `image:` must win over it.
                                        "CLARITY_DOCKER_IMAGE": "127.0.0.1:9/clarity/not-this-one:1"})
    try:
        yield running
    finally:
        running.forget()
        running.stop()


@pytest.mark.docker
@pytest.mark.e2e
def test_an_execution_passes_with_agents_and_checks_in_docker(docker_stack: devstack.Stack, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / ".agent").mkdir(parents=True)
    shutil.copy(AGENT, source / ".agent" / "scripted.py")  # the image has python3, not this checkout
    (source / ".github").mkdir()
    # The gate passes only inside a container, where docker-init is pid 1.
    (source / ".github" / "clarity.yml").write_text(f"image: {IMAGE}\ngates: ['grep -q docker-init /proc/1/cmdline']\n")
    (source / "tasks_list.md").write_text(tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False),
                                                   ("1.2", "Flaky one [flaky]", False)))
    docker_stack.create_repo(REPO, source)
    docker_stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
    docker_stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(docker_stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert git(docker_stack, "log", "--format=%s", "clarity/issue-1").splitlines()[:2] == [
        "clarity: 1.2 Flaky one [flaky]", "clarity: 1.1 Create skeleton"]
    assert branch_file(docker_stack, "done/1.2.txt") == "ok 1.2\n"
    tasks = store_of(docker_stack).tasks(ex.id)
    assert (tasks["1.1"].attempts, tasks["1.2"].attempts) == (1, 2)
    log = (docker_stack.settings.artifacts_dir / ex.id / "1.1" / "attempt-1" / "agent.log").read_text()
    assert "scripted agent: task 1.1 attempt 1" in log


@pytest.mark.e2e
def test_an_unreachable_engine_blocks_the_execution_with_the_reason(redis_url: str, tmp_path: Path) -> None:
    stack = devstack.start(tmp_path / "stack", redis_url, agent_command="true",
                           namespace=f"e2e-{uuid.uuid4().hex[:8]}",
                           extra_env={"CLARITY_SANDBOX": "docker", "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    try:
        source = tmp_path / "src"
        source.mkdir()
        (source / "tasks_list.md").write_text(tasks_md(("1", "Only task", False)))
        stack.create_repo(REPO, source)
        stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
        stack.comment(REPO, 1, "/clarity run", user="ada")
        ex = wait_settled(stack)
        assert ex.status is ExecutionStatus.BLOCKED
        assert "the docker sandbox needs a docker engine, and none answers" in ex.reason
        assert str(store_of(stack).task(ex.id, "1").status) == "pending"
    finally:
        stack.forget()
        stack.stop()
