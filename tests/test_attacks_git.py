"""Attacks on the worker's git and artifacts from inside the sandbox (issue 13, findings 1 and 3).

A check or an agent runs in the sandbox with the workspace writable. Whatever it writes there, the
worker's own git (unsandboxed, as root in production) must never run a command of its choosing, read
a config of its choosing, or write through a link it planted. Each attack runs through the product's
real pieces: the workspace, the sandbox `jobs.sandboxes.for_task` builds, the attempt loop, and the
whole stack (forge, web, `clarity worker`) for the first one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clarity import repoconfig
from clarity.repoconfig import RepoConfig
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.tasklist import parse
from jobs import sandboxes
from jobs.attempts import AttemptPlan, attempt_task
from runner.sandbox import Limits
from runner.workspace import GitError, Workspace
from tests.e2e import REPO, branch_file, make_repo, seeded_origin, wait_settled

_SHORT = sandboxes.shortfall(Settings(app_id=1, private_key="k", webhook_secret="s"))
needs_bwrap = pytest.mark.skipif(_SHORT is not None, reason=f"the local sandbox cannot isolate here: {_SHORT}")


def _marker_script(folder: Path, name: str) -> Path:
    """An executable that leaves `folder/<name>` behind when anything runs it: the proof of an escape."""
    script = folder / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch {folder / name}\ncat\n")
    script.chmod(0o755)
    return script


# Each attack is a shell script run by a check inside the sandbox, in the workspace. `$PWN` is an
# executable outside the sandbox's reach that leaves a marker when anything runs it. None of them may
# fail loudly: an attack that cannot write still exits 0, so the task goes on to the worker's commit.
ATTACKS = {
    "commondir": """
        mkdir -p .evil && cp -r .git/. .evil/ 2>/dev/null
        printf '[filter "pwn"]\\n\\tclean = %s\\n[core]\\n\\tfsmonitor = %s\\n' "$PWN" "$PWN" >> .evil/config
        echo "$PWD/.evil" > .git/commondir
        echo '* filter=pwn' > .gitattributes
    """,
    "config": """
        printf '[filter "pwn"]\\n\\tclean = %s\\n[core]\\n\\tfsmonitor = %s\\n\\tsshCommand = %s\\n' \
            "$PWN" "$PWN" "$PWN" >> .git/config
        echo '* filter=pwn' > .gitattributes
    """,
    "include": """
        printf '[filter "pwn"]\\n\\tclean = %s\\n' "$PWN" > evil.cfg
        printf '[include]\\n\\tpath = %s/evil.cfg\\n' "$PWD" >> .git/config
        echo '* filter=pwn' > .gitattributes
    """,
    "hooks": """
        for hook in pre-commit post-commit commit-msg prepare-commit-msg reference-transaction \
                    post-index-change pre-push post-checkout post-merge; do
            printf '#!/bin/sh\\n%s\\n' "$PWN" > .git/hooks/$hook && chmod +x .git/hooks/$hook
        done
    """,
    "alternates": """
        mkdir -p .git/objects/info && echo /etc > .git/objects/info/alternates
    """,
    "replace-dotgit": """
        rm -rf .git 2>/dev/null; mv .git .git-old 2>/dev/null
        git init -q evilrepo && mv evilrepo/.git .git 2>/dev/null
        printf '[filter "pwn"]\\n\\tclean = %s\\n[core]\\n\\tfsmonitor = %s\\n' "$PWN" "$PWN" >> .git/config
        echo '* filter=pwn' > .gitattributes
    """,
    "nested-repository": """
        mkdir -p sub && (cd sub && git init -q . && echo tracked > a && git add a \
            && git -c user.name=x -c user.email=x@y commit -qm x)
        printf '[filter "pwn"]\\n\\tclean = %s\\n[core]\\n\\tfsmonitor = %s\\n' "$PWN" "$PWN" >> sub/.git/config
        echo '* filter=pwn' > sub/.gitattributes
        echo changed > sub/a; echo new > sub/b
    """,
}


def docker_settings(settings: Settings) -> Settings:
    """The same settings with the docker backend and the tests' image; skips without an engine."""
    from tests.test_docker_sandbox import IMAGE, engine_with_image

    engine_with_image()
    return dataclasses.replace(settings, sandbox="docker", docker_image=IMAGE)


def parse_config() -> RepoConfig:
    """The configuration of a repository without `.github/clarity.yml`."""
    return repoconfig.parse(None)


def _settings(tmp_path: Path) -> Settings:
    return Settings(app_id=1, private_key="k", webhook_secret="s", data_dir=tmp_path / "data")


def _attack_workspace(tmp_path: Path) -> tuple[Settings, Workspace, Path]:
    settings = _settings(tmp_path)
    ws = Workspace(settings.workspaces_dir / "acme" / "app", str(seeded_origin(tmp_path)), None)
    return settings, ws, ws.sync("clarity/issue-1", "main")


@needs_bwrap
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_check_that_plants_git_machinery_never_runs_code_in_the_workers_git(tmp_path: Path, attack: str) -> None:
    settings, ws, root = _attack_workspace(tmp_path)
    pwn = _marker_script(tmp_path, "pwned")
    config_before = (ws.git_dir / "config").read_bytes()
    hooks_before = sorted(p.name for p in (ws.git_dir / "hooks").iterdir())
    sandbox = sandboxes.for_task(settings, parse_config(), settings.exchange_dir / "ex" / "1", "ex", "1", root)
    script = "\n".join(line.strip() for line in ATTACKS[attack].strip().splitlines())
    result = sandbox.run(["sh", "-c", script], root, {"PWN": str(pwn)}, Limits(timeout=60))
    assert result.isolation == "bwrap", result

    # The worker's own calls after a task: the attempt's diff, the commit, a status, the next sync. git may
    # refuse what was planted (an embedded repository without a commit): a named error, never its code.
    ws.write("work.txt", b"honest work\n")
    for call in (ws.diff, lambda: ws.commit("1 Task"), ws.changed_files):
        try:
            call()
        except GitError as exc:
            assert "fatal" in str(exc)
    ws.sync("clarity/issue-1", "main")
    assert ws.changed_files() == []  # the next task starts clean
    assert not (tmp_path / "pwned").exists(), f"{attack}: the worker's git ran the sandbox's command"
    assert (ws.git_dir / "config").read_bytes() == config_before
    assert not (ws.git_dir / "commondir").exists()
    assert not (ws.git_dir / "objects" / "info" / "alternates").exists()
    assert sorted(p.name for p in (ws.git_dir / "hooks").iterdir()) == hooks_before


@pytest.mark.skipif(os.getuid() != 0, reason="the docker sandbox lends a root worker's workspace to nobody")
@pytest.mark.parametrize("attack", ["commondir", "config", "include", "hooks", "alternates"])
@pytest.mark.docker
def test_a_check_in_a_docker_sandbox_cannot_reach_the_workers_git_either(tmp_path: Path, attack: str) -> None:
    settings, ws, root = _attack_workspace(tmp_path)
    settings = docker_settings(settings)
    pwn = _marker_script(tmp_path, "pwned")
    config_before = (ws.git_dir / "config").read_bytes()
    sandbox = sandboxes.for_task(settings, parse_config(), settings.exchange_dir / "ex" / "1", "ex", "1", root)
    script = "\n".join(line.strip() for line in ATTACKS[attack].strip().splitlines())
    probe = sandbox.run(["sh", "-c", "test -f .git/HEAD && ! touch .git/x"], root, {}, Limits(timeout=60))
    assert probe.ok, probe  # the git directory is there to read, and read-only
    result = sandbox.run(["sh", "-c", script], root, {"PWN": str(pwn)}, Limits(timeout=60))
    assert result.isolation == "docker", result
    ws.write("work.txt", b"honest work\n")
    ws.diff()
    assert ws.commit("1 Task")
    ws.sync("clarity/issue-1", "main")
    assert not (tmp_path / "pwned").exists(), f"{attack}: the worker's git ran the sandbox's command"
    assert (ws.git_dir / "config").read_bytes() == config_before
    assert not (ws.git_dir / "commondir").exists() and not (ws.git_dir / "objects" / "info" / "alternates").exists()


@needs_bwrap
def test_the_sandbox_sees_history_but_cannot_write_the_workers_git(tmp_path: Path) -> None:
    settings, ws, root = _attack_workspace(tmp_path)
    sandbox = sandboxes.for_task(settings, parse_config(), settings.exchange_dir / "ex" / "1", "ex", "1", root)
    read = sandbox.run(["git", "log", "--format=%s"], root, {}, Limits(timeout=30))
    assert read.ok and read.stdout.strip() == "init", read
    for argv in (["sh", "-c", "echo x > .git/commondir"], ["sh", "-c", "rm -rf .git/objects"],
                 ["git", "-c", "user.name=x", "-c", "user.email=y", "commit", "-q", "--allow-empty", "-m", "x"]):
        wrote = sandbox.run(argv, root, {}, Limits(timeout=30))
        assert not wrote.ok, (argv, wrote)
    assert ws.head_sha() == subprocess.run(["git", "--git-dir", str(tmp_path / "origin.git"), "rev-parse", "main"],
                                           capture_output=True, text=True, check=True).stdout.strip()
    assert not (ws.git_dir / "commondir").exists() and (ws.git_dir / "objects").is_dir()


def test_the_git_directory_lives_outside_the_worktree(tmp_path: Path) -> None:
    _, ws, root = _attack_workspace(tmp_path)
    assert not (root / ".git").exists()
    assert ws.git_dir.is_dir() and root not in ws.git_dir.parents


def test_a_workspace_of_the_old_layout_is_cloned_afresh_not_trusted(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    origin = seeded_origin(tmp_path)
    root = settings.workspaces_dir / "acme" / "app"
    subprocess.run(["git", "clone", "-q", str(origin), str(root)], check=True)
    pwn = _marker_script(tmp_path, "pwned")
    (root / ".git" / "config").write_text(f'[filter "pwn"]\n\tclean = {pwn}\n', encoding="utf-8")
    (root / ".gitattributes").write_text("* filter=pwn\n")
    ws = Workspace(root, str(origin), None)
    ws.sync("clarity/issue-1", "main")
    ws.write("a.txt", b"a\n")
    assert ws.commit("1 Task")
    assert not (root / ".git").exists() and not (tmp_path / "pwned").exists()


# -- the artifacts: written by the worker only ---------------------------------------------------

LINK_ATTACK = """
import os, sys
target = sys.argv[1]
box = os.path.dirname(os.environ["CLARITY_USAGE_FILE"])
exchange = os.path.dirname(box)
# Links where the worker writes the evidence of this and the next attempts, and where it reads the usage.
for folder in (os.environ.get("ARTIFACTS", ""), exchange):
    for name in ("checks.json", "result.json", "timings.json", "agent.log", "diff.patch", "attempt-2", "attempt-3"):
        for where in (os.path.join(folder, name), os.path.join(folder, "attempt-1", name)):
            try:
                os.symlink(target, where)
            except OSError:
                pass
try:
    os.symlink(target, os.environ["CLARITY_USAGE_FILE"])
    os.mkfifo(os.path.join(box, "aider.chat.history.md"))
except OSError:
    pass
print("planted")
sys.exit(1)
"""


@needs_bwrap
def test_links_and_fifos_a_run_plants_never_make_the_worker_write_or_hang(tmp_path: Path) -> None:
    settings, ws, root = _attack_workspace(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("the worker's own file\n")
    attack = tmp_path / "attack.py"
    attack.write_text(LINK_ATTACK)
    task = parse("- [ ] 1 Plant links\n  - check: test -f nowhere\n").get("1")
    artifacts_dir = settings.artifacts_dir / "ex" / "1"
    plan = AttemptPlan(task=task, agent="command",
                       agent_options={"command": f"{sys.executable} {attack} {victim}"},
                       checks=task.checks, workdir=root, artifacts=artifacts_dir, repo="acme/app", branch="b",
                       limits=Limits(timeout=60), retries=2, backoff=0.0, diff=ws.diff,
                       exchange=settings.exchange_dir / "ex" / "1")
    sandbox = sandboxes.for_task(settings, parse_config(), settings.exchange_dir / "ex" / "1", "ex", "1", root)
    done = threading.Event()
    outcome: list[object] = []

    def run() -> None:
        outcome.append(attempt_task(plan, sandbox, threading.Event(), lambda *_: None))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(60), "the worker hung on something the run planted"
    result = outcome[0]
    assert not result.passed and result.attempts == 3  # type: ignore[attr-defined]
    assert victim.read_text() == "the worker's own file\n"
    for attempt in (1, 2, 3):
        folder = artifacts_dir / f"attempt-{attempt}"
        for name in ("agent.log", "result.json", "timings.json", "prompt.md", "diff.patch"):
            assert (folder / name).is_file() and not (folder / name).is_symlink(), (attempt, name)
        assert json.loads((folder / "result.json").read_text())["attempt"] == attempt
    assert not any(path.is_symlink() for path in artifacts_dir.rglob("*"))


# -- through the whole product --------------------------------------------------------------------

E2E_ATTACK = """#!/bin/sh
# A check that plants a commondir with a filter (finding 1); it always "passes", so the worker commits.
mkdir -p /tmp/evil && cp -r .git/. /tmp/evil/ 2>/dev/null && mv /tmp/evil .git/evil 2>/dev/null
printf '[filter "pwn"]\\n\\tclean = %s\\n' "{pwn}" >> .git/evil/config 2>/dev/null
echo "$PWD/.git/evil" > .git/commondir 2>/dev/null
echo '* filter=pwn' > .gitattributes
exit 0
"""


@needs_bwrap
def test_a_hostile_check_in_a_real_execution_never_runs_code_on_the_worker(stack, tmp_path: Path) -> None:
    pwn = _marker_script(tmp_path, "pwned")
    source_tasks = ("# Tasks\n\n- [ ] 1 First\n  - check: sh attack.sh\n"
                    "- [ ] 2 Second\n  - check: grep -qx \"ok 2\" done/2.txt\n")
    make_repo(stack, tmp_path, source_tasks)
    # The attack script goes in through a second commit on main, like any file of the repository.
    owner, name = REPO.split("/")
    bare = stack.forge.config.repos_dir / owner / f"{name}.git"
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True)
    (clone / "attack.sh").write_text(E2E_ATTACK.replace("{pwn}", str(pwn)))
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b"}
    subprocess.run(["git", "-C", str(clone), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(clone), "commit", "-qm", "attack"], check=True, env=env)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD:main"], check=True, env=env)

    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=90)
    assert not pwn.with_name("pwned").exists(), "the worker's git ran a filter the check configured"
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert "- [x] 2 Second" in branch_file(stack, "tasks_list.md")  # the workspace was not poisoned for task 2
