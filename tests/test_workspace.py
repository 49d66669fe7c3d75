"""The git workspace against real remotes: a bare repository on disk, and one behind smart HTTP."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runner.workspace import (
    GitError,
    PushRejected,
    Workspace,
    basic_auth_header,
    git_dir_of,
    refusal_message,
    remote_refusal,
)

TOKEN = "ghs_TestInstallationToken0123456789abcdef"
GIT_ENV = {
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Owner",
    "GIT_AUTHOR_EMAIL": "owner@example.com",
    "GIT_COMMITTER_NAME": "Owner",
    "GIT_COMMITTER_EMAIL": "owner@example.com",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Plain git for arranging and inspecting repositories outside the code under test.

    In a workspace's worktree it names the workspace's git directory, which lives beside it.
    """
    place: list[str] = []
    if cwd is not None and not (cwd / ".git").exists() and git_dir_of(cwd).is_dir():
        place = ["--git-dir", str(git_dir_of(cwd)), "--work-tree", str(cwd)]
    done = subprocess.run(
        ["git", *place, *args], check=False, cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def remote_sha(bare: Path, branch: str) -> str:
    return git("--git-dir", str(bare), "rev-parse", f"refs/heads/{branch}")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with `main` (README, .gitignore) and `feature` one commit ahead."""
    bare = tmp_path / "remotes" / "acme" / "app.git"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("# app\n")
    (seed / ".gitignore").write_text("*.log\n")
    (seed / "tasks_list.md").write_text("- [ ] 1. Do it\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "initial", cwd=seed)
    git("checkout", "-q", "-b", "feature", cwd=seed)
    (seed / "feature.txt").write_text("feature\n")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "feature", cwd=seed)
    git("push", "-q", str(bare), "main", "feature", cwd=seed)
    git("--git-dir", str(bare), "config", "http.receivepack", "true")
    return bare


def workspace(tmp_path: Path, url: str, name: str = "ws", token: str | None = None) -> Workspace:
    provider = (lambda: token) if token is not None else None
    return Workspace(tmp_path / "workspaces" / name / "acme" / "app", url, provider)


# -- a local bare remote -------------------------------------------------------------------------


def test_sync_creates_a_new_branch_from_base(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    assert root == ws.root and (root / "README.md").read_text() == "# app\n"
    assert ws.head_sha() == remote_sha(origin, "main")
    assert git("symbolic-ref", "--short", "HEAD", cwd=root) == "clarity/issue-7"
    assert not ws.remote_branch_exists("clarity/issue-7")
    assert ws.remote_branch_exists("main")


def test_sync_checks_out_an_existing_remote_branch(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    ws.sync("feature", "main")
    assert ws.head_sha() == remote_sha(origin, "feature")
    assert ws.read("feature.txt") == b"feature\n"


def test_sync_discards_leftovers_of_a_crashed_run(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    ws.write("README.md", b"half-done edit\n")
    ws.write("new/dir/untracked.py", b"x = 1\n")
    ws.write("debug.log", b"ignored by .gitignore\n")
    (root / "README.md").unlink()
    git("commit", "-q", "--allow-empty", "-m", "local only, never pushed", cwd=root)
    (ws.git_dir / "index.lock").write_text("")  # left by a git killed mid-way

    ws.sync("clarity/issue-7", "main")
    assert ws.head_sha() == remote_sha(origin, "main")
    assert ws.changed_files() == []
    assert ws.read("README.md") == b"# app\n"
    assert not (root / "new").exists() and not (root / "debug.log").exists()


def test_a_broken_cache_directory_is_replaced(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    ws.root.mkdir(parents=True)
    (ws.root / "junk.txt").write_text("half a clone")
    ws.sync("main", "main")
    assert ws.head_sha() == remote_sha(origin, "main") and ws.read("junk.txt") is None


def test_changed_files_and_diff_stat_include_untracked_and_deleted(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    ws.write("README.md", b"# app\nmore\n")
    ws.write("src/new.py", b"print('hi')\n")
    (root / "tasks_list.md").unlink()
    ws.write("trace.log", b"ignored\n")
    ws.write(".aider.chat.history.md", b"agent chatter\n")
    assert ws.changed_files() == ["README.md", "src/new.py", "tasks_list.md"]
    stat = ws.diff_stat()
    assert "README.md" in stat and "src/new.py" in stat and "tasks_list.md" in stat
    assert "3 files changed" in stat
    assert git("diff", "--cached", "--name-only", cwd=root) == ""  # the index was not touched


def test_commit_returns_none_when_nothing_changed(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    ws.sync("clarity/issue-7", "main")
    before = ws.head_sha()
    assert ws.commit("nothing") is None
    ws.write("debug.log", b"ignored files do not count\n")
    assert ws.commit("still nothing") is None
    assert ws.head_sha() == before


def test_commit_records_everything_with_the_bot_identity(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    ws.write("a.txt", b"a\n")
    (root / "README.md").unlink()
    sha = ws.commit("1.2 Add CI workflow")
    assert sha == ws.head_sha() and len(sha or "") == 40
    assert git("log", "-1", "--format=%an <%ae>|%cn|%s", cwd=root) == (
        "clarity[bot] <clarity[bot]@users.noreply.github.com>|clarity[bot]|1.2 Add CI workflow"
    )
    assert git("show", "--name-status", "--format=", "HEAD", cwd=root).splitlines() == [
        "D\tREADME.md",
        "A\ta.txt",
    ]
    assert ws.changed_files() == []


def test_commit_with_paths_commits_only_those(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    ws.write("tasks_list.md", b"- [x] 1. Do it\n")
    ws.write("other.txt", b"not yet\n")
    ws.commit("tick 1", paths=["tasks_list.md"])
    assert git("show", "--name-only", "--format=", "HEAD", cwd=root) == "tasks_list.md"
    assert ws.changed_files() == ["other.txt"]


def test_repository_hooks_never_run(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    ws.sync("clarity/issue-7", "main")
    hook = ws.git_dir / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path}/hook-ran\nexit 1\n")
    hook.chmod(0o755)
    ws.write("a.txt", b"a\n")
    assert ws.commit("with a hostile hook") is not None
    assert not (tmp_path / "hook-ran").exists()


def test_push_then_a_second_workspace_sees_the_commit(tmp_path: Path, origin: Path) -> None:
    first = workspace(tmp_path, str(origin), "one")
    first.sync("clarity/issue-7", "main")
    first.write("done.txt", b"done\n")
    sha = first.commit("task 1")
    first.push("clarity/issue-7")
    assert remote_sha(origin, "clarity/issue-7") == sha
    assert first.remote_branch_exists("clarity/issue-7")

    second = workspace(tmp_path, str(origin), "two")
    second.sync("clarity/issue-7", "main")
    assert second.head_sha() == sha and second.read("done.txt") == b"done\n"


def test_push_never_forces_over_a_moved_remote_branch(tmp_path: Path, origin: Path) -> None:
    first, second = workspace(tmp_path, str(origin), "one"), workspace(tmp_path, str(origin), "two")
    first.sync("feature", "main")
    second.sync("feature", "main")
    first.write("x.txt", b"1\n")
    first.commit("first")
    first.push("feature")
    second.write("y.txt", b"2\n")
    second.commit("second")
    with pytest.raises(PushRejected) as caught:  # a GitError the step tells apart: it pauses, never forces
        second.push("feature")
    assert "`git " in str(caught.value) and "push" in str(caught.value) and "rejected" in str(caught.value)
    assert remote_sha(origin, "feature") == first.head_sha()


def test_missing_base_branch_is_a_clear_error(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    with pytest.raises(GitError, match="neither `clarity/x` nor the base branch `trunk` exists"):
        ws.sync("clarity/x", "trunk")


def test_branch_names_that_look_like_options_are_refused(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    for name in ("--upload-pack=touch /tmp/x", "a..b", ""):
        with pytest.raises(GitError, match="is not a valid branch name"):
            ws.sync(name, "main")


def test_read_and_write_stay_inside_the_worktree(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("main", "main")
    assert ws.read("missing.txt") is None
    for bad in ("../escape.txt", "/etc/passwd", ".git/config", ""):
        with pytest.raises(ValueError):
            ws.write(bad, b"x")
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="leads outside"):
        ws.read("link/remotes")


def test_tampered_git_config_is_rewritten_before_sync(tmp_path: Path, origin: Path) -> None:
    decoy = tmp_path / "decoy.git"
    git("init", "-q", "--bare", str(decoy))
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    # What an agent could do in the worktree: repoint origin and rewrite URLs to somewhere of its own.
    git("config", "remote.origin.url", str(decoy), cwd=root)
    git("config", f"url.{decoy}.insteadOf", str(origin), cwd=root)
    ws.write("a.txt", b"a\n")
    sha = ws.commit("task")
    ws.push("clarity/issue-7")
    assert remote_sha(origin, "clarity/issue-7") == sha
    ws.sync("clarity/issue-7", "main")
    config = (ws.git_dir / "config").read_text()
    assert str(decoy) not in config and f"url = {origin}" in config


def test_filters_configured_by_an_agent_do_not_run_on_commit(tmp_path: Path, origin: Path) -> None:
    ws = workspace(tmp_path, str(origin))
    root = ws.sync("clarity/issue-7", "main")
    git("config", "filter.evil.clean", f"touch {tmp_path}/filter-ran; cat", cwd=root)
    ws.write(".gitattributes", b"* filter=evil\n")
    ws.write("a.txt", b"a\n")
    assert ws.commit("task") is not None
    assert not (tmp_path / "filter-ran").exists()


def test_clone_url_with_credentials_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        Workspace(tmp_path / "ws", f"https://x-access-token:{TOKEN}@github.com/acme/app.git", None)


# -- a smart HTTP remote that wants the token ---------------------------------------------------


class _GitHTTP(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, project_root: Path, expected: str) -> None:
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.project_root = project_root
        self.expected = expected
        self.seen: list[tuple[str, str, str | None]] = []


class _GitHandler(BaseHTTPRequestHandler):
    """Serves `git http-backend` as CGI; 401 unless the Authorization header is the expected one."""

    server: _GitHTTP

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        auth = self.headers.get("Authorization")
        self.server.seen.append((self.command, self.path, auth))
        body = self._body()
        if auth != self.server.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="forge"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        env = {
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.server.project_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if encoding := self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        if protocol := self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = protocol
        out = subprocess.run(
            ["git", "http-backend"], check=False, input=body, env=env, capture_output=True, timeout=30
        ).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, payload = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def http_origin(origin: Path) -> Iterator[tuple[str, _GitHTTP]]:
    server = _GitHTTP(origin.parent.parent, basic_auth_header(TOKEN).split(": ", 1)[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/acme/app.git", server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def git_argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `git` first on PATH that logs every argv (and the header it was given) before running real git."""
    shims, log = tmp_path / "shims", tmp_path / "git-argv.log"
    shims.mkdir()
    real_git = subprocess.run(
        ["sh", "-c", "command -v git"], check=True, capture_output=True, text=True
    ).stdout.strip()
    shim = shims / "git"
    shim.write_text(
        "#!/bin/sh\n"
        f"printf 'ARGV %s\\n' \"$*\" >> {log}\n"
        f"printf 'HEADER %s\\n' \"$GIT_CONFIG_VALUE_0\" >> {log}\n"
        f'exec {real_git} "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    return log


def test_http_clone_fetch_and_push_work_with_the_token(
    tmp_path: Path, origin: Path, http_origin: tuple[str, _GitHTTP], git_argv_log: Path
) -> None:
    url, server = http_origin
    first = workspace(tmp_path, url, "one", token=TOKEN)
    first.sync("clarity/issue-7", "main")
    assert first.head_sha() == remote_sha(origin, "main")
    first.write("done.txt", b"done\n")
    sha = first.commit("task 1")
    first.push("clarity/issue-7")
    assert remote_sha(origin, "clarity/issue-7") == sha
    assert first.remote_branch_exists("clarity/issue-7")
    first.sync("clarity/issue-7", "main")  # a fetch into the existing cache

    second = workspace(tmp_path, url, "two", token=TOKEN)
    second.sync("clarity/issue-7", "main")
    assert second.read("done.txt") == b"done\n"

    expected = basic_auth_header(TOKEN).split(": ", 1)[1]
    assert server.seen and all(auth == expected for _, _, auth in server.seen)
    assert any("git-receive-pack" in path for _, path, _ in server.seen)

    # The token is in no argv: neither in the calls the workspace made nor in what git was started with.
    for argv in first.calls + second.calls:
        assert not any(TOKEN in arg or expected in arg for arg in argv)
    log = git_argv_log.read_text()
    argv_lines = [line for line in log.splitlines() if line.startswith("ARGV ")]
    assert any(" push " in line for line in argv_lines)
    assert TOKEN not in log
    assert not any(expected in line for line in argv_lines)
    assert f"HEADER Authorization: {expected}" in log  # it travelled in the environment
    # ... and it is not written anywhere in the repository.
    for path in first.git_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert TOKEN.encode() not in data and expected.encode() not in data, path


def test_local_git_commands_never_get_the_token(
    tmp_path: Path, http_origin: tuple[str, _GitHTTP], git_argv_log: Path
) -> None:
    url, _ = http_origin
    ws = workspace(tmp_path, url, token=TOKEN)
    ws.sync("clarity/issue-7", "main")
    ws.write("a.txt", b"a\n")
    ws.commit("local")
    lines = git_argv_log.read_text().splitlines()
    pairs = list(zip(lines[::2], lines[1::2]))
    for argv_line, header_line in pairs:
        network = any(f" {verb} " in argv_line for verb in ("fetch", "push", "ls-remote"))
        assert (header_line != "HEADER ") == network, argv_line


def test_http_without_a_token_fails_and_says_why(tmp_path: Path, http_origin: tuple[str, _GitHTTP]) -> None:
    url, _ = http_origin
    ws = workspace(tmp_path, url)
    with pytest.raises(GitError) as caught:
        ws.sync("clarity/issue-7", "main")
    message = str(caught.value)
    assert message.startswith("`git ") and "fetch" in message
    assert "could not read Username" in message or "Authentication failed" in message


def test_http_with_a_wrong_token_fails_without_leaking_it(
    tmp_path: Path, http_origin: tuple[str, _GitHTTP]
) -> None:
    url, _ = http_origin
    wrong = "ghs_WrongTokenWrongTokenWrongToken"
    ws = workspace(tmp_path, url, token=wrong)
    with pytest.raises(GitError) as caught:
        ws.sync("main", "main")
    with pytest.raises(GitError):
        ws.remote_branch_exists("main")
    assert wrong not in str(caught.value)
    assert basic_auth_header(wrong).split(" ", 2)[2] not in str(caught.value)


def test_redact_hides_tokens_used_by_the_workspace(tmp_path: Path, http_origin: tuple[str, _GitHTTP]) -> None:
    url, _ = http_origin
    ws = workspace(tmp_path, url, token=TOKEN)
    assert ws.remote_branch_exists("main")
    header_value = basic_auth_header(TOKEN).split(" ", 2)[2]
    assert ws.redact(f"fatal: {TOKEN} and {header_value}") == "fatal: *** and ***"


def test_history_lists_commits_newest_first(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "-q", str(remote), str(seed)], check=True, capture_output=True)
    for n in (1, 2):
        (seed / f"f{n}").write_text(str(n))
        subprocess.run(["git", "-C", str(seed), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm",
                        f"clarity: {n} Task {n}"], check=True)
    subprocess.run(["git", "-C", str(seed), "push", "-q", "origin", "HEAD:main"], check=True, capture_output=True)
    ws = Workspace(tmp_path / "ws", str(remote), None)
    ws.sync("main", "main")
    subjects = [subject for _, subject in ws.history()]
    assert subjects == ["clarity: 2 Task 2", "clarity: 1 Task 1"]
    assert ws.history()[0][0] == ws.head_sha()


REFUSALS = [
    ((" ! [remote rejected] HEAD -> clarity/issue-1 (refusing to allow a GitHub App to create or update workflow "
     "`.github/workflows/ci.yml` without `workflows` permission)\nerror: failed to push some refs to 'x'"),
     ("GitHub refused the push: the task changed `.github/workflows/ci.yml`, and the app lacks the Workflows "
     "permission; grant it (Settings → GitHub Apps → Permissions) or keep the task away from workflow files")),
    (("remote: error: GH001: Large files detected. You may want to try Git Large File Storage - "
     "https://git-lfs.github.com.\nremote: error: File data/big.bin is 150.00 MB; this exceeds GitHub's file "
     "size limit of 100.00 MB\n ! [remote rejected] HEAD -> main (pre-receive hook declined)"),
     ("GitHub refused the push: `data/big.bin` is 150.00 MB, over GitHub's 100 MB file limit; keep large files "
     "out of the task (or track them with Git LFS)")),
    (("remote: error: GH006: Protected branch update failed for refs/heads/main.\n"
     " ! [remote rejected] HEAD -> main (protected branch hook declined)"),
     ("GitHub refused the push: a branch protection rule or ruleset forbids it (protected branch hook declined); "
     "allow the app to push to the branch or change the rule")),
    (("remote: error: GH013: Repository rule violations found for refs/heads/main.\n"
     " ! [remote rejected] HEAD -> main (push declined due to repository rule violations)"),
     ("GitHub refused the push: a branch protection rule or ruleset forbids it (push declined due to repository "
     "rule violations); allow the app to push to the branch or change the rule")),
    (("remote: error: GH006: Protected branch update failed for refs/heads/main.\nremote: error: Commits must "
     "have verified signatures.\n ! [remote rejected] HEAD -> main (protected branch hook declined)"),
     ("GitHub refused the push: the branch requires signed commits (protected branch hook declined); "
     "Clarity's commits are not signed, so exempt the app or lift the requirement for its branches")),
    (" ! [remote rejected] HEAD -> main (commits must have verified signatures)",
     ("GitHub refused the push: the branch requires signed commits (commits must have verified signatures); "
     "Clarity's commits are not signed, so exempt the app or lift the requirement for its branches")),
    (" ! [remote rejected] HEAD -> main (shallow update not allowed)",
     "GitHub refused the push: shallow update not allowed"),
]


@pytest.mark.parametrize(("stderr", "message"), REFUSALS)
def test_a_refused_push_is_named_for_people(stderr: str, message: str) -> None:
    reason = remote_refusal(stderr)
    assert reason is not None
    assert refusal_message(reason, stderr) == message


def test_a_non_fast_forward_rejection_is_not_a_refusal() -> None:
    assert remote_refusal(" ! [rejected]        HEAD -> main (fetch first)\nerror: failed to push") is None
