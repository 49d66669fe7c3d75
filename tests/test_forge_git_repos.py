"""The forge's git reads: branch tips from the ref files (always current), remembered facts about commits."""

from __future__ import annotations

import subprocess
from pathlib import Path

from forge import git_repos


def git(bare: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={bare}", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit_on(bare: Path, parent: str, message: str) -> str:
    """A new commit (same tree as `parent`) made straight in the bare repository."""
    tree = git(bare, "rev-parse", f"{parent}^{{tree}}")
    return subprocess.run(["git", f"--git-dir={bare}", "commit-tree", tree, "-p", parent, "-m", message],
                          check=True, capture_output=True, text=True,
                          env={**git_repos._env(git_repos.FORGE_IDENTITY)}).stdout.strip()


def make(tmp_path: Path) -> tuple[Path, str]:
    bare = tmp_path / "acme" / "widgets.git"
    git_repos.create_bare(bare, files={"README.md": "# widgets\n", "a.txt": "one\n"})
    return bare, git(bare, "rev-parse", "refs/heads/main")


def test_a_branch_tip_follows_every_update_and_pack(tmp_path: Path) -> None:
    bare, main = make(tmp_path)
    assert git_repos.resolve(bare, "refs/heads/main") == main
    assert git_repos.resolve(bare, "refs/heads/feature") is None

    second = commit_on(bare, main, "second")
    git(bare, "update-ref", "refs/heads/feature", second)
    assert git_repos.resolve(bare, "refs/heads/feature") == second  # nothing stale remembered

    git(bare, "pack-refs", "--all")  # the loose files go, packed-refs holds them
    assert not (bare / "refs" / "heads" / "feature").exists()
    assert git_repos.resolve(bare, "refs/heads/feature") == second
    assert git_repos.resolve(bare, "refs/heads/main") == main

    third = commit_on(bare, second, "third")
    git(bare, "update-ref", "refs/heads/feature", third)  # a loose ref again, newer than the packed one
    assert git_repos.resolve(bare, "refs/heads/feature") == third
    git(bare, "update-ref", "-d", "refs/heads/feature")
    assert git_repos.resolve(bare, "refs/heads/feature") is None


def test_unusual_refs_are_asked_of_git(tmp_path: Path) -> None:
    bare, main = make(tmp_path)
    git(bare, "symbolic-ref", "refs/heads/alias", "refs/heads/main")
    assert git_repos.resolve(bare, "refs/heads/alias") == main
    git(bare, "update-ref", "refs/heads/group/one", main)
    assert git_repos.resolve(bare, "refs/heads/group") is None  # a folder of refs, not a ref
    assert git_repos.resolve(bare, "--help") is None


def test_a_sha_is_a_commit_only_once_it_is_in_the_repository(tmp_path: Path) -> None:
    bare, main = make(tmp_path)
    other, _ = make(tmp_path / "other")
    elsewhere = commit_on(other, git(other, "rev-parse", "refs/heads/main"), "not in the first repo")
    assert git_repos.resolve(bare, main) == main
    assert git_repos.resolve(bare, elsewhere) is None  # not remembered as missing: it may come
    git(bare, "fetch", "-q", str(other), f"{elsewhere}:refs/heads/arrived")
    assert git_repos.resolve(bare, elsewhere) == elsewhere


def test_counts_between_commits_match_git(tmp_path: Path) -> None:
    bare, main = make(tmp_path)
    second = commit_on(bare, main, "second")
    third = commit_on(bare, second, "third")
    for _ in range(2):  # the second answer is the remembered one
        assert git_repos.count_commits(bare, main, third) == 2
        assert git_repos.diff_stats(bare, main, third) == (0, 0, 0)
    assert git_repos.count_commits(bare, "refs/heads/main", third) == 2  # names are always asked of git
