"""Reading and seeding the forge's bare git repositories (git is the truth for refs and contents)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

FORGE_IDENTITY = {
    "GIT_AUTHOR_NAME": "Forge",
    "GIT_AUTHOR_EMAIL": "forge@example.com",
    "GIT_COMMITTER_NAME": "Forge",
    "GIT_COMMITTER_EMAIL": "forge@example.com",
}


class GitError(RuntimeError):
    """A git command failed; the message carries git's stderr."""


@dataclass(frozen=True, slots=True)
class Blob:
    """A file at a ref."""

    path: str
    sha: str
    data: bytes


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One entry of a directory listing."""

    path: str
    sha: str
    type: str  # "file", "dir", "symlink" or "submodule"
    size: int


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """The fields of a commit GitHub's commit objects need."""

    sha: str
    tree: str
    parents: tuple[str, ...]
    author_name: str
    author_email: str
    author_date: str
    committer_name: str
    committer_email: str
    committer_date: str
    message: str


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C"})
    env.update(extra or {})
    return env


def git(
    bare: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True, cwd: Path | None = None
) -> bytes:
    """Run git against a bare repo and return stdout."""
    proc = subprocess.run(
        ["git", f"--git-dir={bare}", *args], capture_output=True, env=_env(env), cwd=cwd, check=False
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _source_branch(source: Path) -> str | None:
    proc = subprocess.run(
        ["git", "-C", str(source), "symbolic-ref", "--short", "-q", "HEAD"],
        capture_output=True,
        env=_env(),
        check=False,
    )
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def _is_git_repo_with_commits(source: Path) -> bool:
    proc = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--verify", "-q", "HEAD^{commit}"],
        capture_output=True,
        env=_env(),
        check=False,
    )
    top = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--show-toplevel"],
        capture_output=True,
        env=_env(),
        check=False,
    )
    same_dir = top.returncode == 0 and Path(top.stdout.decode().strip()).resolve() == source.resolve()
    return proc.returncode == 0 and same_dir


def create_bare(
    bare: Path,
    source: Path | None = None,
    files: Mapping[str, str | bytes] | None = None,
    branch: str = "main",
) -> str:
    """Create a bare repo seeded from a directory or a dict of files; returns the default branch.

    A git working copy has all its branches pushed; a plain directory (or `files`) becomes one
    commit on `branch`, authored by the forge.
    """
    if bare.exists():
        shutil.rmtree(bare)
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "-q", "--bare", f"--initial-branch={branch}", str(bare)],
        check=True,
        capture_output=True,
        env=_env(),
    )
    if source is not None and _is_git_repo_with_commits(source):
        subprocess.run(
            [
                "git",
                "-C",
                str(source),
                "push",
                "-q",
                str(bare),
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
            check=True,
            capture_output=True,
            env=_env(),
        )
        default = _source_branch(source) or branch
        if resolve(bare, f"refs/heads/{default}") is None:
            default = next(iter(branches(bare)), branch)
        git(bare, "symbolic-ref", "HEAD", f"refs/heads/{default}")
        return default
    if source is not None:
        _commit_tree(bare, source, branch)
    elif files:
        with tempfile.TemporaryDirectory(prefix="forge-seed-") as tmp:
            for path, content in files.items():
                target = Path(tmp) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content.encode() if isinstance(content, str) else content)
            _commit_tree(bare, Path(tmp), branch)
    return branch


def _commit_tree(bare: Path, work_tree: Path, branch: str) -> None:
    with tempfile.TemporaryDirectory(prefix="forge-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **FORGE_IDENTITY}
        git(bare, f"--work-tree={work_tree}", "add", "-A", ".", env=env, cwd=work_tree)
        tree = git(bare, "write-tree", env=env).decode().strip()
    commit = git(bare, "commit-tree", tree, "-m", "Initial commit", env=FORGE_IDENTITY).decode().strip()
    git(bare, "update-ref", f"refs/heads/{branch}", commit)


# The REST API answers from git, and most answers name a branch tip or ask about commits; a git
# process for each (~3 ms) made the forge slower than the engine it stands in front of. Branch tips
# are read from the ref files as git writes them (always current: no cache to forget), and what can
# never change is remembered: that a full SHA is a commit of a repository, and counts between two.
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_SAFE_BRANCH = re.compile(r"refs/heads/[A-Za-z0-9._/-]+")
_commits: set[tuple[str, int, str]] = set()


def _identity(bare: Path) -> tuple[str, int]:
    """The repository as a cache key: its path and inode (a repository deleted and made again differs)."""
    return str(bare), os.stat(bare).st_ino


def _branch_tip(bare: Path, ref: str) -> tuple[bool, str | None]:
    """(known, SHA): a branch's SHA from its loose ref or packed-refs, None if neither has it; not
    known (ask git) for a symbolic ref or anything unusual."""
    if not _SAFE_BRANCH.fullmatch(ref) or ".." in ref:
        return False, None
    try:
        loose = (bare / ref).read_text().strip()
    except FileNotFoundError:
        loose = ""
    except OSError:
        return False, None
    if loose:
        return (True, loose) if _FULL_SHA.fullmatch(loose) else (False, None)  # a symbolic ref: git knows
    try:
        packed = (bare / "packed-refs").read_text()
    except FileNotFoundError:
        return True, None
    except OSError:
        return False, None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _FULL_SHA.fullmatch(sha):
            return True, sha
    return True, None


def resolve(bare: Path, ref: str) -> str | None:
    """The commit SHA a ref (branch, tag, SHA) points to, or None."""
    if not ref or ref.startswith("-"):
        return None
    known, tip = _branch_tip(bare, ref) if ref.startswith("refs/heads/") else (False, None)
    if known:
        return tip
    key = (*_identity(bare), ref) if _FULL_SHA.fullmatch(ref) else None
    if key in _commits:
        return ref
    out = git(bare, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False).decode().strip()
    if key is not None and out == ref:
        _commits.add(key)  # a commit never leaves a repository the forge keeps
    return out or None


def resolve_ref_name(bare: Path, ref: str) -> str | None:
    """Resolve a ref the way GitHub's `?ref=` does: branch, then tag, then SHA."""
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        if (sha := resolve(bare, candidate)) is not None:
            return sha
    return None


def branches(bare: Path) -> dict[str, str]:
    """Branch name → tip SHA."""
    out = git(bare, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/", check=False)
    return dict(line.split(" ", 1) for line in out.decode().splitlines() if " " in line)  # type: ignore[misc]


def count_commits(bare: Path, base: str, head: str) -> int:
    """Commits reachable from head but not from base."""
    if _FULL_SHA.fullmatch(base) and _FULL_SHA.fullmatch(head):
        return _count_commits(*_identity(bare), base, head)
    return int(git(bare, "rev-list", "--count", f"{base}..{head}").decode().strip() or 0)


@functools.lru_cache(maxsize=4096)
def _count_commits(bare: str, _inode: int, base: str, head: str) -> int:
    return int(git(Path(bare), "rev-list", "--count", f"{base}..{head}").decode().strip() or 0)


def diff_stats(bare: Path, base: str, head: str) -> tuple[int, int, int]:
    """(additions, deletions, changed files) between the merge base and head."""
    if _FULL_SHA.fullmatch(base) and _FULL_SHA.fullmatch(head):
        return _diff_stats(*_identity(bare), base, head)
    return _numstat(bare, base, head)


@functools.lru_cache(maxsize=4096)
def _diff_stats(bare: str, _inode: int, base: str, head: str) -> tuple[int, int, int]:
    return _numstat(Path(bare), base, head)


def _numstat(bare: Path, base: str, head: str) -> tuple[int, int, int]:
    out = git(bare, "diff", "--numstat", f"{base}...{head}", check=False).decode()
    additions = deletions = files = 0
    for line in out.splitlines():
        added, deleted, _ = line.split("\t", 2)
        additions += int(added) if added.isdigit() else 0
        deletions += int(deleted) if deleted.isdigit() else 0
        files += 1
    return additions, deletions, files


def read_path(bare: Path, sha: str, path: str) -> Blob | list[TreeEntry] | None:
    """A file's blob, a directory's listing, or None when the path does not exist at `sha`."""
    path = path.strip("/")
    if not path:
        return _list_tree(bare, sha, "")
    out = git(bare, "ls-tree", "-l", "-z", sha, "--", path, check=False).decode()
    entry = next((e for e in out.split("\0") if e), None)
    if entry is None:
        return None
    meta, _ = entry.split("\t", 1)
    _mode, kind, obj, _size = meta.split(None, 3)
    if kind == "tree":
        return _list_tree(bare, sha, path)
    if kind == "blob":
        return Blob(path, obj, git(bare, "cat-file", "blob", obj))
    return None


def _list_tree(bare: Path, sha: str, path: str) -> list[TreeEntry]:
    spec = f"{sha}:{path}" if path else sha
    out = git(bare, "ls-tree", "-l", "-z", spec, check=False).decode()
    entries = []
    for entry in filter(None, out.split("\0")):
        meta, name = entry.split("\t", 1)
        mode, kind, obj, size = meta.split(None, 3)
        type_ = {"tree": "dir", "commit": "submodule"}.get(kind, "symlink" if mode == "120000" else "file")
        entries.append(
            TreeEntry(
                f"{path}/{name}" if path else name, obj, type_, int(size) if size.strip().isdigit() else 0
            )
        )
    return entries


def commit_info(bare: Path, sha: str) -> CommitInfo:
    """Author, committer, tree, parents and message of a commit."""
    fmt = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
    fields = git(bare, "log", "-1", f"--format={fmt}", sha).decode().split("\0")
    return CommitInfo(
        fields[0],
        fields[1],
        tuple(fields[2].split()),
        fields[3],
        fields[4],
        fields[5],
        fields[6],
        fields[7],
        fields[8],
        fields[9].rstrip("\n"),
    )
