"""The git workspace of one repository: sync a branch, read and write files, commit, push.

The worktree is lent to agents and checks; the git directory never is. It lives beside the worktree
(`<parent>/.<name>.git`), out of every sandbox's reach (the sandbox sees it read-only at `.git`, or
not at all), and every git call names it and the worktree explicitly, so nothing a sandboxed run
wrote (a `.git/commondir`, `objects/info/alternates`, hooks, a config with filters, `core.*` or
`include`, a whole new `.git`) is ever read by the worker's git. What the worktree itself holds is
inert for git with our flags: no config is read from it, `.gitattributes` can only name drivers our
config does not define, and nested repositories are never looked into (`diff.ignoreSubmodules=all`).

The installation token travels only in the environment of the git processes that talk to the
remote, as an `http.extraHeader` (the way actions/checkout passes it), never in a URL, an argv, the
repository's config or an error message. Every git call ignores the user's and the system's git
config and the repository's hooks.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from runner.exchange import remove
from runner.gitnet import network_env, secrets_in
from runner.sandbox import FALLBACK_PATH, Limits, LocalSandbox

DEFAULT_EXCLUDES = (".aider*",)
STDERR_TAIL = 2000
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_STALE_LOCKS = ("index.lock", "HEAD.lock", "config.lock", "shallow.lock")
MAINTENANCE_MARKER = "clarity-maintenance"  # in .git: touched when git last checked for maintenance
MAINTENANCE_EVERY = 3600.0
# Flags on every call: no credential helper, none of the repository's hooks, no fsmonitor command.
# With those (and the config rewritten before every call) a worktree owned by someone else is harmless:
# the docker sandbox lends a root worker's workspace to uid 65534 for a run, and a worker lost during
# one leaves it so, which git would otherwise refuse as "dubious ownership".
# `diff.ignoreSubmodules=all`: a nested repository the sandbox planted (`sub/.git` with a config of its own)
# is recorded as a gitlink and never entered, so its fsmonitor, filters or hooks never run here.
_SAFE_FLAGS = ("-c", "credential.helper=", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
               "-c", "safe.directory=*", "-c", "diff.ignoreSubmodules=all", "-c", "status.submoduleSummary=false",
               "-c", "submodule.recurse=false")


class GitError(RuntimeError):
    """A git command failed; the message names the command and quotes the end of its stderr."""

    def __init__(
        self, message: str, command: str = "", returncode: int | None = None, stderr: str = ""
    ) -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class PushRejected(GitError):
    """The remote refused the push because its branch moved on (someone else pushed): never forced."""


class PushRefused(GitError):
    """The remote refused the push for a reason of its own (`[remote rejected] <ref> (<reason>)`).

    The message is for people: what GitHub refused and what to do about it; `reason` is GitHub's words.
    """

    def __init__(self, reason: str, command: str = "", returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(refusal_message(reason, stderr), command, returncode, stderr)
        self.reason = reason


REJECTED = ("[rejected]", "non-fast-forward", "fetch first", "stale info")
_REMOTE_REJECTED = re.compile(r"\[remote rejected\][^(\n]*\((?P<reason>[^\n]*)\)\s*$", re.MULTILINE)
_WORKFLOW = re.compile(r"workflow `(?P<path>[^`]+)` without `workflows` permission")
_LARGE_FILE = re.compile(r"File (?P<path>\S+) is (?P<size>[\d.]+ MB); this exceeds GitHub's file size limit")


def remote_refusal(stderr: str) -> str | None:
    """The reason of the first `! [remote rejected] <ref> (<reason>)` line in git's stderr, if any."""
    found = _REMOTE_REJECTED.search(stderr)
    return found.group("reason").strip() if found else None


def refusal_message(reason: str, stderr: str = "") -> str:
    """A sentence for people about a refused push, from GitHub's reason (and the `remote:` lines around it)."""
    lowered = reason.lower() + " " + stderr.lower()
    if workflow := _WORKFLOW.search(reason):
        return (f"GitHub refused the push: the task changed `{workflow.group('path')}`, and the app lacks the "
                "Workflows permission; grant it (Settings → GitHub Apps → Permissions) or keep the task away "
                "from workflow files")
    if "gh001" in lowered or "large files detected" in lowered:
        large = _LARGE_FILE.search(stderr)
        what = f"`{large.group('path')}` is {large.group('size')}" if large else "a file is too large"
        return (f"GitHub refused the push: {what}, over GitHub's 100 MB file limit; keep large files out of "
                "the task (or track them with Git LFS)")
    if "signature" in lowered or "signed" in lowered:
        return (f"GitHub refused the push: the branch requires signed commits ({reason}); Clarity's commits "
                "are not signed, so exempt the app or lift the requirement for its branches")
    if "gh006" in lowered or "protected branch" in lowered or "gh013" in lowered or "rule violation" in lowered:
        return (f"GitHub refused the push: a branch protection rule or ruleset forbids it ({reason}); allow "
                "the app to push to the branch or change the rule")
    return f"GitHub refused the push: {reason}"


def basic_auth_header(token: str) -> str:
    """The HTTP header value GitHub accepts for an installation token over git smart HTTP."""
    pair = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {pair}"


_REF_FORBIDDEN = frozenset(" ~^:?*[\\\x7f") | frozenset(chr(c) for c in range(0x20))


def valid_branch_name(name: str) -> bool:
    """Whether `git check-ref-format --branch` would accept `name` (git's rules for refs/heads/<name>).

    Decided here rather than by a git process per name (three per step): no empty component (so no
    leading, trailing or double `/`), none starting with `.` or ending with `.lock`, no `..`, no `@{`,
    no control character, space or any of ``~^:?*[\\``, not ending with `.`, not `HEAD`. Stricter than
    git in three ways: `@` alone (git's name for HEAD elsewhere), `@{-1}` (git's "previous branch") and a
    leading `-` (it would read as an option) are refused.
    """
    if name in ("", "@", "HEAD") or name.startswith("-") or name.endswith(".") or ".." in name or "@{" in name:
        return False
    if any(char in _REF_FORBIDDEN for char in name):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def _relative(relpath: str) -> str:
    path = PurePosixPath(relpath)
    if not relpath or path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0] == ".git"):
        raise ValueError(f"path `{relpath}` must be relative and stay inside the repository (not .git)")
    return str(path)


def git_dir_of(worktree: Path) -> Path:
    """Where the git directory of the workspace at `worktree` lives: beside it, never inside it."""
    return worktree.parent / f".{worktree.name}.git"


def sandbox_view(worktree: Path) -> tuple[tuple[Path, Path], ...]:
    """(source, destination) pairs a sandbox shows read-only: the git directory at `<worktree>/.git`.

    Agents and checks may read history (`git log`, `git diff`); none can write the worker's git.
    """
    return ((git_dir_of(worktree), worktree / ".git"),)


class Workspace:
    """A cached clone of one repository, reused across runs; fetch instead of re-clone."""

    def __init__(
        self,
        root: Path,
        clone_url: str,
        token_provider: Callable[[], str] | None,
        author_name: str = "clarity[bot]",
        author_email: str = "clarity[bot]@users.noreply.github.com",
        network_timeout: float = 300.0,
        local_timeout: float = 120.0,
        extra_env: dict[str, str] | None = None,
        excludes: Sequence[str] = DEFAULT_EXCLUDES,
        git_dir: Path | None = None,
        on_push: Callable[[str], None] | None = None,
    ) -> None:
        parts = urlsplit(clone_url)
        if parts.username or parts.password:
            raise ValueError("clone_url must not carry credentials; pass a token_provider")
        self.root = Path(root)
        # Beside the worktree, never inside it: sandboxes get the worktree, and only a read-only view of this.
        self.git_dir = Path(git_dir) if git_dir is not None else git_dir_of(self.root)
        self.clone_url = clone_url
        self.token_provider = token_provider
        self.author_name = author_name
        self.author_email = author_email
        self.network_timeout = network_timeout
        self.local_timeout = local_timeout
        self.extra_env = dict(extra_env or {})
        self.excludes = tuple(excludes)
        # Told the commit about to be pushed, before `git push`: GitHub may send the push webhook before
        # git returns, and the engine must know that push for its own by then (clarity.pushes).
        self.on_push = on_push
        self.calls: list[tuple[str, ...]] = []  # argv of every git call, for logs and tests
        self.synced_sha = ""  # the commit the last sync checked out
        self._secrets: set[str] = set()
        # git is ours, not the agent's: it needs the network for fetch and push and writes .git, so it
        # runs without bubblewrap (its config and hooks are pinned instead, see _pin_config).
        self._runner = LocalSandbox(env_allowlist=(), parent_env={}, isolation="none")

    # -- running git -------------------------------------------------------------------------

    def _env(self, network: bool, extra: dict[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", FALLBACK_PATH),
            "HOME": str(self.root.parent),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": self.author_name,
            "GIT_AUTHOR_EMAIL": self.author_email,
            "GIT_COMMITTER_NAME": self.author_name,
            "GIT_COMMITTER_EMAIL": self.author_email,
            **self.extra_env,
        }
        if network:  # the worker's proxy and certificate authorities, as for its REST calls (runner.gitnet)
            reach = network_env(os.environ)
            self._secrets.update(secrets_in(reach))
            env.update(reach)
        token = self.token_provider() if network and self.token_provider else ""
        if token:
            header = basic_auth_header(token)
            self._secrets.update({token, header.split(" ", 2)[2]})
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": header,
                }
            )
        env.update(extra or {})
        return env

    def redact(self, text: str) -> str:
        """Text with every token this workspace has used replaced by ***."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _git(
        self,
        args: Sequence[str],
        check: bool = True,
        *,
        network: bool = False,
        in_repo: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run git with safe flags, a timeout and the token only when `network`; GitError on failure."""
        place = ["--git-dir", str(self.git_dir), "--work-tree", str(self.root), "-C", str(self.root)]
        argv = ["git", *_SAFE_FLAGS, *(place if in_repo else []), *args]
        self.calls.append(tuple(argv))
        timeout = self.network_timeout if network else self.local_timeout
        limits = Limits(
            timeout=timeout,
            cpu_seconds=None,
            memory_bytes=None,
            file_size_bytes=None,
            open_files=None,
            output_bytes=64 * 1024**2,
            core_files=True,  # git is ours: no rlimit at all, so no pre-exec hook and Python vforks it
        )
        cwd = self.root if in_repo else Path("/")
        result = self._runner.run(argv, cwd, self._env(network, env), limits)
        completed = subprocess.CompletedProcess(argv, result.exit_code, result.stdout, result.stderr)
        if result.timed_out:
            raise self._error(f"timed out after {timeout:.0f}s", argv, result.exit_code, result.stderr)
        if check and result.exit_code != 0:
            raise self._error(f"exit code {result.exit_code}", argv, result.exit_code, result.stderr)
        return completed

    def _error(self, what: str, argv: Sequence[str], code: int, stderr: str) -> GitError:
        args = list(argv[len(_SAFE_FLAGS) + 1 :])
        if args[:1] == ["--git-dir"]:
            args = args[6:]
        command = self.redact(" ".join(args))
        tail = self.redact(stderr.strip()[-STDERR_TAIL:])
        message = f"`git {command}` failed ({what})" + (f": {tail}" if tail else "")
        return GitError(message, command=f"git {command}", returncode=code, stderr=tail)

    # -- syncing -----------------------------------------------------------------------------

    def _check_branch(self, name: str) -> str:
        if not valid_branch_name(name):
            raise GitError(f"`{name}` is not a valid branch name")
        return name

    def _prepare_repository(self) -> None:
        """Make a git directory beside root with only our config, our excludes and no stale locks."""
        git_dir = self.git_dir
        if not git_dir.is_dir():
            if self.root.exists() or self.root.is_symlink():
                remove(self.root)  # a half-made clone, or one of the old layout whose .git a sandbox could write
            self.root.mkdir(parents=True)
            self._git(["-c", "init.defaultBranch=main", "init", "-q", "--bare", str(git_dir)], in_repo=False)
        # Whatever a sandbox left at `.git` (the mount point of its read-only view, or a planted file, link or
        # folder) is nothing to our git, which names its directory; removed so the next view mounts cleanly.
        remove(self.root / ".git")
        for lock in _STALE_LOCKS:
            (git_dir / lock).unlink(missing_ok=True)
        self._pin_config()
        info = git_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "exclude").write_text("".join(f"{pattern}\n" for pattern in self.excludes), encoding="utf-8")

    def _pin_config(self) -> None:
        """Rewrite .git/config from scratch: no hooks, remotes, rewrites, filters or includes but ours.

        Called before every call that stages, commits or talks to the remote, because the agent ran in
        this worktree in between and could have configured filters or URL rewrites of its own.
        """
        lines = [
            "[core]",
            "\trepositoryformatversion = 0",
            "\tfilemode = true",
            "\tbare = false",
            "\tlogallrefupdates = true",
            '[remote "origin"]',
            f"\turl = {self.clone_url}",
            "\tfetch = +refs/heads/*:refs/remotes/origin/*",
        ]
        (self.git_dir / "config").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _fetch(self) -> None:
        # git starts a `maintenance run --auto` process after every fetch (and commit) to decide whether
        # to gc: a workspace fetched every few seconds asks at most once an hour here (its marker's age).
        marker = self.git_dir / MAINTENANCE_MARKER
        try:
            due = time.time() - marker.stat().st_mtime >= MAINTENANCE_EVERY
        except OSError:
            due = True
        # The URL comes from us, not from .git/config: the token goes nowhere else.
        self._git(
            [
                *(() if due else ("-c", "maintenance.auto=false")),
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                self.clone_url,
                "+refs/heads/*:refs/remotes/origin/*",
            ],
            network=True,
        )
        if due:
            marker.touch()

    def _commit_of(self, ref: str) -> str | None:
        """The sha `ref` names, None when it does not exist."""
        found = self._git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], check=False)
        return found.stdout.strip() if found.returncode == 0 else None

    def sync(self, branch: str, base: str) -> Path:
        """Check out `branch` at the remote's state (or create it from `base`); discard any leftovers.

        `checkout -f -B` puts index and tracked files at the start commit whatever the worktree held,
        and ends a merge or cherry-pick an agent left half-done (no MERGE_HEAD makes the next commit a
        merge); `clean -ffdx` then removes untracked and ignored files. Four git processes in all.
        """
        self._check_branch(branch)
        self._check_branch(base)
        self._prepare_repository()
        self._fetch()
        start = f"refs/remotes/origin/{branch}"
        sha = self._commit_of(start)
        if sha is None:
            start = f"refs/remotes/origin/{base}"
            sha = self._commit_of(start)
            if sha is None:
                raise GitError(f"neither `{branch}` nor the base branch `{base}` exists on {self.clone_url}")
        return self._check_out(branch, start, sha)

    def resume(self, branch: str, sha: str) -> Path:
        """Check out `branch` at `sha`, a commit this process has just pushed to it, without asking the
        remote; discard any leftovers. Two git processes where `sync` needs a fetch and three more.

        For a caller that knows nobody else pushed since, or does not mind learning it from the next
        push being rejected (PushRejected, never forced).
        """
        self._check_branch(branch)
        if not self.git_dir.is_dir():
            raise GitError(f"no workspace at {self.root} to resume")
        self._prepare_repository()
        return self._check_out(branch, sha, sha)

    def _check_out(self, branch: str, start: str, sha: str) -> Path:
        """`branch` at `start` (which is `sha`) in index and worktree, nothing else left in it."""
        self._git(["checkout", "-q", "-f", "--no-track", "-B", branch, start])
        self._git(["clean", "-q", "-ffdx"])
        self.synced_sha = sha
        return self.root

    # -- files and commits -------------------------------------------------------------------

    def _path(self, relpath: str) -> Path:
        target = (self.root / _relative(relpath)).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise ValueError(f"path `{relpath}` leads outside the repository")
        return target

    def read(self, relpath: str) -> bytes | None:
        """The file's bytes in the worktree, or None when it does not exist."""
        target = self._path(relpath)
        return target.read_bytes() if target.is_file() else None

    def write(self, relpath: str, data: bytes) -> None:
        """Write a file in the worktree, creating its directories."""
        target = self._path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def changed_files(self) -> list[str]:
        """Paths changed, added, deleted or untracked in the worktree (ignored files left out)."""
        self._pin_config()
        out = self._git(["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"]).stdout
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def diff(self) -> str:
        """`git diff` (a patch) of everything uncommitted, untracked files too; the index is left alone."""
        return self._diff_all(["diff", "--cached", "--no-ext-diff", "--no-textconv", "HEAD"])

    def diff_stat(self) -> str:
        """`git diff --stat` of everything uncommitted, untracked files too; the index is left alone."""
        return self._diff_all(["diff", "--cached", "--stat", "HEAD"])

    def _diff_all(self, args: list[str]) -> str:
        self._pin_config()
        temp_index = self.git_dir / "clarity-stat.index"
        index = self.git_dir / "index"
        try:
            if index.exists():
                shutil.copyfile(index, temp_index)
            env = {"GIT_INDEX_FILE": str(temp_index)}
            self._git(["add", "-A"], env=env)
            return self._git(args, env=env).stdout
        finally:
            temp_index.unlink(missing_ok=True)

    def commit(self, message: str, paths: Sequence[str] | None = None) -> str | None:
        """Commit all changes (or only `paths`); the sha, or None when there was nothing to commit.

        Two git processes: stage, commit. The sha is read from the ref the commit has just written.
        """
        pathspec = ["--", *(_relative(path) for path in paths)] if paths else []
        self._pin_config()
        self._git(["add", "-A", *pathspec])
        # No `maintenance run --auto` process after the commit: the fetch that starts every sync runs it.
        committed = self._git(["-c", "maintenance.auto=false", "commit", "-q", "--no-verify", "--no-gpg-sign",
                               "-m", message, *pathspec], check=False)
        if committed.returncode != 0:
            if self._git(["diff", "--cached", "--quiet", *pathspec], check=False).returncode == 0:
                return None
            raise self._error(f"exit code {committed.returncode}", committed.args, committed.returncode,
                              committed.stderr)
        return self._head_from_refs() or self.head_sha()

    def _head_from_refs(self) -> str | None:
        """HEAD's sha read from `HEAD` and the branch's loose ref (git writes it on commit); None
        when they look anything but ordinary (then ask git)."""
        git_dir = self.git_dir
        try:
            head = (git_dir / "HEAD").read_text(encoding="ascii").strip()
            ref = head.removeprefix("ref: ")
            if ref == head or not ref.startswith("refs/heads/") or not valid_branch_name(ref[len("refs/heads/"):]):
                return None
            sha = (git_dir / ref).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return sha if _FULL_SHA.fullmatch(sha) else None

    def stat(self, sha: str) -> str:
        """`git diff --stat` of a commit against its parent."""
        return self._git(["show", "--stat", "--no-ext-diff", "--format=", sha]).stdout.lstrip("\n")

    def commit_with_stat(self, message: str, paths: Sequence[str] | None = None) -> tuple[str | None, str]:
        """Commit like `commit`; also `git diff --stat` of what was committed ("" when nothing was).

        Three git processes when there is something to commit: stage, commit, `show --stat` (a caller
        that can wait for the stat runs `stat` itself, beside something else).
        """
        sha = self.commit(message, paths)
        return sha, self.stat(sha) if sha else ""

    def push(self, branch: str) -> None:
        """Push HEAD to refs/heads/<branch>; never forced, so a moved remote branch is an error."""
        self._check_branch(branch)
        self._pin_config()
        if self.on_push is not None:
            self.on_push(self._head_from_refs() or self.head_sha())
        try:
            self._git(
                ["push", "--quiet", "--no-verify", self.clone_url, f"HEAD:refs/heads/{branch}"], network=True
            )
        except GitError as exc:
            if (reason := remote_refusal(exc.stderr)) is not None:
                raise PushRefused(reason, exc.command, exc.returncode, exc.stderr) from exc
            if any(sign in exc.stderr for sign in REJECTED):
                raise PushRejected(str(exc), exc.command, exc.returncode, exc.stderr) from exc
            raise

    def discard(self) -> None:
        """Throw away every uncommitted change and untracked or ignored file."""
        self._pin_config()
        self._reset_worktree()

    def _reset_worktree(self) -> None:
        self._git(["reset", "-q", "--hard"])
        self._git(["clean", "-q", "-ffdx"])

    def history(self, limit: int = 500) -> list[tuple[str, str]]:
        """(sha, subject) of the newest `limit` commits reachable from HEAD, newest first."""
        out = self._git(["log", f"-{limit}", "--format=%H %s", "HEAD"], check=False).stdout
        return [(sha, subject) for sha, _, subject in (line.partition(" ") for line in out.splitlines())]

    def head_sha(self) -> str:
        """The commit the worktree is on."""
        return self._git(["rev-parse", "--verify", "HEAD"]).stdout.strip()

    def remote_branch_exists(self, branch: str) -> bool:
        """Ask the remote whether refs/heads/<branch> exists."""
        self._check_branch(branch)
        result = self._git(
            ["ls-remote", "--exit-code", "--heads", self.clone_url, f"refs/heads/{branch}"],
            check=False,
            network=True,
            in_repo=False,
        )
        if result.returncode == 0:
            return True
        if result.returncode == 2:
            return False
        raise self._error(f"exit code {result.returncode}", result.args, result.returncode, result.stderr)
