"""The pieces behind the sandbox's limits, as data: cgroup mounts and files, the disk count, the operator's
settings and the choice of sandbox. The attacks they hold are in tests/test_attacks_sandbox.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from clarity.settings import Settings, SettingsError
from jobs import sandboxes
from jobs.failures import ErrorClass, classify_run
from runner import cgroups
from runner.cgroups import Mounts, Spec, Usage
from runner.diskwatch import DiskWatch, allocated
from runner.isolation import install_dirs, reachable

V1_HOST = """\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
"""
V2_HOST = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_mountinfo_gives_the_v1_hierarchies_that_limit_and_the_v2_mount() -> None:
    mounts = cgroups.parse_mountinfo(V1_HOST)
    assert mounts.v2 == Path("/sys/fs/cgroup/unified")
    assert dict(mounts.v1) == {"cpu,cpuacct": Path("/sys/fs/cgroup/cpu,cpuacct"), "pids": Path("/sys/fs/cgroup/pids"),
                               "memory": Path("/sys/fs/cgroup/memory")}
    assert cgroups.parse_mountinfo(V2_HOST) == Mounts({}, Path("/sys/fs/cgroup"))


def test_v1_needs_pids_memory_and_cpu_mounted() -> None:
    assert cgroups.v1_hierarchies(cgroups.parse_mountinfo(V1_HOST), "clarity") == (
        ("cpu,cpuacct", Path("/sys/fs/cgroup/cpu,cpuacct/clarity")), ("memory", Path("/sys/fs/cgroup/memory/clarity")),
        ("pids", Path("/sys/fs/cgroup/pids/clarity")))
    without_pids = Mounts({"memory": Path("/m"), "cpu": Path("/c")})
    assert cgroups.v1_hierarchies(without_pids, "clarity") == "the cgroup v1 controller(s) pids are not mounted"


def test_a_v2_parent_is_under_the_mount_unless_given_as_a_path() -> None:
    mounts = cgroups.parse_mountinfo(V2_HOST)
    assert cgroups.v2_parent(mounts, "clarity") == Path("/sys/fs/cgroup/clarity")
    delegated = "/sys/fs/cgroup/system.slice/clarity-worker.service/runs"
    assert cgroups.v2_parent(mounts, delegated) == Path(delegated)
    assert cgroups.v2_parent(Mounts(), "clarity") is None


@pytest.mark.parametrize(("version", "controllers", "files", "expected"), [
    (2, "pids,memory,cpu", ("pids.max", "memory.max", "memory.swap.max", "memory.oom.group", "cpu.max"),
     [("pids.max", "512"), ("memory.max", "1073741824"), ("memory.swap.max", "0"), ("memory.oom.group", "1"),
      ("cpu.max", "150000 100000")]),
    (2, "pids,memory,cpu", ("pids.max", "memory.max", "cpu.max"),  # no swap accounting: nothing to turn off
     [("pids.max", "512"), ("memory.max", "1073741824"), ("cpu.max", "150000 100000")]),
    (1, "memory", ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.swappiness"),
     [("memory.limit_in_bytes", "1073741824"), ("memory.memsw.limit_in_bytes", "1073741824")]),
    (1, "memory", ("memory.limit_in_bytes", "memory.swappiness"),
     [("memory.limit_in_bytes", "1073741824"), ("memory.swappiness", "0")]),
    (1, "cpu,cpuacct", ("cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuacct.usage"),
     [("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "150000")]),
    (1, "pids", ("pids.max",), [("pids.max", "512")]),
])
def test_limit_files_of_a_run_cgroup(version: int, controllers: str, files: tuple[str, ...],
                                     expected: list[tuple[str, str]]) -> None:
    spec = Spec(pids=512, memory_bytes=1024**3, cpus=1.5)
    assert cgroups.limit_writes(version, controllers, spec, files) == expected


def test_no_limit_writes_nothing() -> None:
    assert cgroups.limit_writes(2, "pids,memory,cpu", Spec(), ("pids.max", "memory.max", "cpu.max")) == []


def test_counters_read_as_usage_in_both_versions() -> None:
    v2 = cgroups.read_usage(2, {"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\n", "memory.peak": "4096\n",
                                "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
                                "pids.events": "max 7\n"})
    assert v2 == Usage(cpu_seconds=2.5, memory_peak_bytes=4096, pids_refused=7, oom_kills=1)
    v1 = cgroups.read_usage(1, {"cpuacct.usage": "1500000000\n", "memory.max_usage_in_bytes": "8192\n",
                                "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                                "pids.events": "max 0\n"})
    assert v1 == Usage(cpu_seconds=1.5, memory_peak_bytes=8192)
    assert v1.as_dict() == {"cpu_seconds": 1.5, "memory_peak_bytes": 8192.0}
    assert cgroups.read_usage(2, {}) == Usage()  # an old kernel without memory.peak, say


def test_run_cgroup_names_carry_the_workers_pid_namespace_and_pid_for_the_sweep() -> None:
    name = cgroups.run_name(pid=4242, pid_ns=4026531836)
    assert cgroups.owner(name) == (4026531836, 4242) and name != cgroups.run_name(pid=4242, pid_ns=4026531836)
    assert cgroups.owner("docker") is None and cgroups.owner("run-x-1-2-abc") is None


def test_a_v2_parent_gets_its_controllers_enabled(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "clarity").mkdir()  # the kernel makes a cgroup's files with it; a plain folder needs them made
    (root / "clarity" / "cgroup.subtree_control").write_text("")
    mounts = Mounts({}, root)
    found = cgroups._setup_v2(mounts, "clarity")
    assert found == cgroups.Layout(2, (("pids,memory,cpu", root / "clarity"),))
    assert (root / "cgroup.subtree_control").read_text() == "+pids +memory +cpu"
    assert (root / "clarity" / "cgroup.subtree_control").read_text() == "+pids +memory +cpu"


def test_a_non_root_worker_finds_the_subtree_delegated_to_it() -> None:
    own = "/user.slice/user-1000.slice/user@1000.service/app.slice/clarity-worker.scope"
    mine = {Path("/cg/user.slice/user-1000.slice/user@1000.service"),
            Path("/cg/user.slice/user-1000.slice/user@1000.service/app.slice")}
    assert cgroups.delegated(Path("/cg"), own, lambda folder: folder in mine) == Path(
        "/cg/user.slice/user-1000.slice/user@1000.service")
    assert cgroups.delegated(Path("/cg"), own, lambda folder: False) is None
    assert cgroups.delegated(Path("/cg"), "/clarity-worker.scope", lambda folder: True) is None  # its own leaf: never


def test_a_v2_without_the_controllers_says_which_are_missing(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu\n")
    assert cgroups._setup_v2(Mounts({}, tmp_path), "clarity") == (
        f"cgroup v2 at {tmp_path} does not offer the pids, memory controller(s) (they are bound to cgroup v1 "
        "or not delegated)")


# -- the disk count --------------------------------------------------------------------------------


def test_allocated_counts_blocks_once_per_file_and_never_follows_links(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "a", tmp_path / "hard")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "out").symlink_to("/usr")
    one = os.stat(tmp_path / "a").st_blocks * 512
    assert one <= allocated([tmp_path]) < one + 64 * 1024


def test_the_watch_counts_only_when_the_file_system_grew_past_what_is_left(tmp_path: Path) -> None:
    watch = DiskWatch([tmp_path], cap=50 * 1024**2)
    assert not watch.over()
    (tmp_path / "big").write_bytes(b"x" * (60 * 1024**2))
    os.sync()
    assert watch.over() and "over the disk limit of 50 MiB" in watch.describe()
    (tmp_path / "big").unlink()


# -- tools, secrets ---------------------------------------------------------------------------------


def test_a_venvs_tool_brings_the_venv_and_its_interpreters_install(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    tool = venv / "bin" / "agent"
    tool.write_text(f"#!{venv}/bin/python\n")
    assert install_dirs(tool) == (venv, Path(os.path.realpath(sys.executable)).parent.parent)


def test_a_secret_nobody_may_read_needs_no_stand_in(tmp_path: Path) -> None:
    closed, shared = tmp_path / "closed", tmp_path / "shared"
    closed.write_text("k")
    shared.write_text("k")
    closed.chmod(0o600)
    shared.chmod(0o644)
    assert not reachable(closed, (65534, 65534)) and reachable(shared, (65534, 65534))
    assert reachable(closed, None)  # the worker's own runs: everything it may read


# -- settings and the choice -------------------------------------------------------------------------


def test_sandbox_settings_are_read_with_sizes_and_choices() -> None:
    settings = Settings.from_env({"CLARITY_SANDBOX": "none", "CLARITY_SANDBOX_MEMORY": "4G", "CLARITY_SANDBOX_TMP": "512MiB",
                                  "CLARITY_SANDBOX_DISK": "0", "CLARITY_SANDBOX_PIDS": "64", "CLARITY_SANDBOX_CPUS": "2",
                                  "CLARITY_SANDBOX_TOOLS": "/opt/a:/opt/b"}, require_github=False)
    assert (settings.sandbox, settings.sandbox_memory, settings.sandbox_tmp, settings.sandbox_disk,
            settings.sandbox_pids, settings.sandbox_cpus, settings.sandbox_tools) == (
        "none", 4 * 1024**3, 512 * 1024**2, 0, 64, 2.0, (Path("/opt/a"), Path("/opt/b")))
    with pytest.raises(SettingsError, match=r"CLARITY_SANDBOX_MEMORY must be a number of bytes such as"):
        Settings.from_env({"CLARITY_SANDBOX_MEMORY": "lots"}, require_github=False)


def test_the_local_sandbox_requires_cgroups_and_none_only_uses_them_when_it_can() -> None:
    local = sandboxes.local_config(Settings(app_id=1, private_key="", webhook_secret=""))
    assert (local.pids, local.memory_bytes, local.cpus, local.tmp_bytes, local.disk_bytes, local.cgroups) == (
        512, 2 * 1024**3, 1.0, 256 * 1024**2, 1024**3, "required")
    none = sandboxes.local_config(Settings(app_id=1, private_key="", webhook_secret="", sandbox="none",
                                           sandbox_cpus=0, sandbox_disk=0))
    assert (none.cgroups, none.cpus, none.disk_bytes) == ("auto", None, None)


def test_the_operators_tools_are_its_command_its_agents_and_its_list_never_a_repositorys(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text("")
    command = f"{sys.executable} {script} {{prompt_file}} --out {{workdir}}/x"
    found = sandboxes.operator_tools(Settings(app_id=1, private_key="", webhook_secret="", agent_command=command,
                                              sandbox_tools=(Path("/opt/tool"),)))
    assert found[:2] == (Path(sys.executable), script) and found[-1] == Path("/opt/tool")
    module = sandboxes.operator_tools(Settings(app_id=1, private_key="", webhook_secret="",
                                               agent_command="python3 -m clarity.demo.agent {prompt_file}"))
    assert Path(__file__).resolve().parents[1] / "clarity" in module


def test_a_refusal_names_what_is_missing_and_every_way_out() -> None:
    message = str(sandboxes.refusal("bubblewrap cannot run here: `bwrap` is not installed"))
    assert "`bwrap` is not installed" in message and "apt-get install bubblewrap" in message
    assert "CLARITY_SANDBOX=docker" in message and "CLARITY_SANDBOX=none" in message


def test_killed_for_disk_is_a_limit() -> None:
    assert classify_run(137, False, "disk") is ErrorClass.LIMIT
