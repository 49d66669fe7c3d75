"""What keeps a step's overhead down (issue 6, bench/overhead_bench.py), held to its behaviour.

Branch names are checked without a git process; a warm sync is four git processes; a commit gives its
stat without staging twice; limits under bubblewrap are the same whether prlimit or the pre-exec hook
sets them; and a whole execution makes no per-step token mint, repository read or PR search.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
from pathlib import Path

import pytest

import devstack
import runner.sandbox as sandbox_module
from clarity.status import ExecutionStatus
from runner.isolation import unavailable_reason
from runner.sandbox import Limits, LocalSandbox
from runner.workspace import Workspace, valid_branch_name
from tests.e2e import REPO, make_repo, seeded_origin, tasks_md, wait_comment, wait_settled

STRICTER_THAN_GIT = {"@", "@{-1}"}  # refused on purpose (see valid_branch_name); git accepts them


def git_accepts(name: str) -> bool:
    checked = subprocess.run(["git", "check-ref-format", "--branch", name], check=False, capture_output=True)
    return checked.returncode == 0


def test_branch_names_are_judged_as_git_judges_them() -> None:
    names = ["main", "clarity/issue-1", "a/b/c", "a.b", "é/ü", "a-", "a@b", "x.lock.y", "a//b", "/a", "a/", "a..b",
             ".a", "a/.b", "a.lock", "a/b.lock", "a.", "a@{b", "HEAD", "a b", "a\tb", "a~1", "a^", "a:b", "a?", "a*",
             "a[", "a\\b", "a\x7fb", "--upload-pack=x", "-a"]
    alphabet = list("ab/.-@{}~^:?*[\\ ") + ["lock", "\x01", "é"]
    rng = random.Random(6)
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    for name in names:
        if name in STRICTER_THAN_GIT or name.startswith("-"):
            assert not valid_branch_name(name), name
        else:
            assert valid_branch_name(name) == git_accepts(name), name


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return seeded_origin(tmp_path)


def subcommand(argv: tuple[str, ...]) -> str:
    """The git command of a workspace call (after any `-c name=value`, `--git-dir`, `--work-tree`, `-C`)."""
    rest = list(argv[1:])
    while rest[0] in ("-c", "-C", "--git-dir", "--work-tree"):
        rest = rest[2:]
    return rest[0]


def test_a_warm_sync_is_four_git_processes_and_leaves_a_clean_tree(tmp_path: Path, origin: Path) -> None:
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)
    root = ws.sync("clarity/issue-1", "main")
    ws.write("1.txt", b"task 1\n")
    ws.commit("clarity: 1 Task")
    ws.push("clarity/issue-1")  # the branch exists from the first task on
    ws.write("x.txt", b"leftover\n")
    ws.write("README.md", b"changed\n")
    ws.write("debug.log", b"ignored\n")
    before = len(ws.calls)
    ws.sync("clarity/issue-1", "main")
    assert [subcommand(argv) for argv in ws.calls[before:]] == ["fetch", "rev-parse", "checkout", "clean"]
    assert ws.changed_files() == [] and not (root / "debug.log").exists()
    assert ws.synced_sha == ws.head_sha()


def test_git_and_bwrap_runs_start_without_a_pre_exec_hook(
        tmp_path: Path, origin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Python hook between fork and exec rules out vfork: from a large worker that cost 10 to 40 ms a run.
    hooks: list[object] = []
    real = subprocess.Popen

    def spy(*args: object, **kwargs: object) -> object:
        hooks.append(kwargs.get("preexec_fn"))
        return real(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(sandbox_module.subprocess, "Popen", spy)
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)
    ws.sync("clarity/issue-1", "main")
    ws.write("a.txt", b"a\n")
    ws.commit_with_stat("1 Task")
    assert len(hooks) == len(ws.calls) and not any(hooks)
    if unavailable_reason() is None and sandbox_module.prlimit_argv([]) is not None:
        hooks.clear()
        assert LocalSandbox(isolation="bwrap").run(["true"], tmp_path, {}, Limits(timeout=10)).ok
        assert hooks and not any(hooks)  # (bwrap may be probed once first)


def test_git_checks_for_maintenance_at_most_once_an_hour_per_workspace(tmp_path: Path, origin: Path) -> None:
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)

    def maintenance_allowed() -> list[bool]:  # per fetch or commit: may git start `maintenance run --auto`?
        return [("-c", "maintenance.auto=false") not in itertools.pairwise(argv) for argv in ws.calls
                if subcommand(argv) in ("fetch", "commit")]

    ws.sync("main", "main")
    ws.sync("main", "main")
    ws.write("a.txt", b"a\n")
    ws.commit("1 Task")
    assert maintenance_allowed() == [True, False, False]
    marker = ws.git_dir / "clarity-maintenance"
    old = marker.stat().st_mtime - 3601
    os.utime(marker, (old, old))
    ws.sync("main", "main")
    assert maintenance_allowed()[-1] is True


def test_commit_with_stat_gives_the_sha_and_the_stat_of_what_it_committed(tmp_path: Path, origin: Path) -> None:
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)
    ws.sync("clarity/issue-1", "main")
    assert ws.commit_with_stat("nothing") == (None, "")
    ws.write("a.txt", b"a\n")
    ws.write("README.md", b"# app\nmore\n")
    expected = ws.diff_stat()
    sha, stat = ws.commit_with_stat("1 Task")
    assert sha == ws.head_sha() and stat == expected
    assert "a.txt" in stat and "2 files changed" in stat
    ws.write("debug.log", b"ignored files do not count\n")
    assert ws.commit_with_stat("still nothing") == (None, "")


def test_a_commit_is_two_git_processes_and_reads_its_sha_from_the_ref_git_wrote(tmp_path: Path, origin: Path) -> None:
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)
    ws.sync("clarity/issue-1", "main")
    ws.write("a.txt", b"a\n")
    before = len(ws.calls)
    sha = ws.commit("1 Task")
    assert [subcommand(argv) for argv in ws.calls[before:]] == ["add", "commit"]
    assert sha == ws.head_sha() and ws.stat(sha).strip().endswith("1 file changed, 1 insertion(+)")

    ws.write("b.txt", b"b\n")
    (ws.git_dir / "HEAD").write_text("ref: refs/heads/../../../escape\n")  # odd: git's answer is the one
    before = len(ws.calls)
    with pytest.raises(Exception, match="git"):
        ws.commit("2 Task")  # git itself refuses such a HEAD; the sha is never read from outside .git
    (ws.git_dir / "HEAD").write_text(sha + "\n")  # detached: no branch ref to read
    before = len(ws.calls)
    second = ws.commit("2 Task")
    assert [subcommand(argv) for argv in ws.calls[before:]] == ["add", "commit", "rev-parse"]
    assert second == ws.head_sha() and second != sha


def test_a_commit_that_git_refuses_is_an_error_not_nothing_to_commit(tmp_path: Path, origin: Path) -> None:
    ws = Workspace(tmp_path / "ws" / "acme" / "app", str(origin), None)
    ws.sync("clarity/issue-1", "main")
    ws.write("a.txt", b"a\n")
    ws._git(["add", "-A"])
    (ws.git_dir / "index.lock").write_text("")  # another git holds the index
    with pytest.raises(Exception, match="index.lock"):
        ws.commit_with_stat("blocked")


needs_bwrap = pytest.mark.skipif(unavailable_reason() is not None, reason="bubblewrap cannot run here")


@needs_bwrap
def test_limits_under_bwrap_are_the_same_set_by_prlimit_or_by_the_hook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jail = LocalSandbox(isolation="bwrap")
    limits = Limits(timeout=20, cpu_seconds=7, memory_bytes=1024**3, file_size_bytes=2 * 1024**2, open_files=77)
    show = ["sh", "-c", "ulimit -t; ulimit -v; ulimit -f; ulimit -n; ulimit -c"]
    assert sandbox_module.prlimit_argv(sandbox_module.rlimits_for(limits)) is not None, "prlimit is missing"
    with_prlimit = jail.run(show, tmp_path, {}, limits)
    monkeypatch.setattr(sandbox_module, "_prlimit", lambda: None)
    with_hook = jail.run(show, tmp_path, {}, limits)
    assert with_prlimit.ok and with_hook.ok, (with_prlimit.stderr, with_hook.stderr)
    # No address-space limit (`ulimit -v`): memory is the run's cgroup's, which Bun, the JVM and Go survive.
    assert with_prlimit.stdout.split() == with_hook.stdout.split() == ["7", "unlimited", "4096", "77", "0"]


def test_an_execution_makes_no_per_step_token_mint_repository_read_or_pr_search(stack, tmp_path: Path) -> None:
    tasks = 3
    make_repo(stack, tmp_path, tasks_md(*((str(i), f"Task {i}", False) for i in range(1, tasks + 1))))
    stack.admin("DELETE", "/calls")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    # The status settles first; the last PR refresh, then the closing comment, and the summary's end follow it.
    wait_comment(stack, "every task in the list is done")
    devstack.wait_for(lambda: all(r["status"] == "completed" for r in stack.admin("GET", "/state")["check_runs"]),
                      30, what="every check run to be completed")
    calls = [(c["method"], c["path"]) for c in stack.admin("GET", "/calls") if c["surface"] == "rest"]

    def count(method: str, suffix: str) -> int:
        return sum(1 for m, p in calls if m == method and p.endswith(suffix))

    # One token for the whole execution (intake mints it, every step after reuses it through Redis),
    # the repository read by intake and once for its clone URL, one search for the PR before opening it.
    assert count("POST", "/access_tokens") <= 1
    assert count("GET", f"/repos/{REPO}") <= 2
    assert count("GET", f"/repos/{REPO}/pulls") <= 1
    # Per task: its check run created and completed, the summary moved (old one ended, new one created
    # with its progress, no update after), the PR body; plus the first summary and the final one.
    check_runs = [(m, p) for m, p in calls if "/check-runs" in p]
    assert sum(1 for m, _ in check_runs if m == "POST") == 2 * tasks + 1
    assert sum(1 for m, _ in check_runs if m == "PATCH") == 2 * tasks + 1
    assert count("PATCH", "") - sum(1 for m, _ in check_runs if m == "PATCH") == tasks  # PR bodies
