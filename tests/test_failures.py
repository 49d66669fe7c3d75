"""Failure classification and attempt artifacts: the pure classifier by table, then real attempts in a real sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clarity import artifacts
from clarity.models import Execution
from clarity.redaction import redact
from clarity.tasklist import Task
from jobs import reports
from jobs.attempts import AttemptPlan, TaskResult, attempt_task
from jobs.failures import ErrorClass, classify_checks, classify_exception, classify_run, explain
from runner import agents
from runner.checks import CheckResult
from runner.sandbox import IsolationError, Limits, LocalSandbox
from runner.workspace import GitError

E = ErrorClass


@pytest.mark.parametrize(("exit_code", "timed_out", "killed_by", "expected"), [
    (0, False, None, None),
    (1, False, None, E.AGENT_CRASHED),
    (2, False, None, E.AGENT_CRASHED),
    (137, True, "timeout", E.TIMEOUT),
    (143, False, "timeout", E.TIMEOUT),
    (0, True, None, E.TIMEOUT),
    (137, False, "memory", E.LIMIT),          # docker: State.OOMKilled
    (152, False, "cpu", E.LIMIT),             # SIGXCPU (local rlimit)
    (137, False, "cpu", E.LIMIT),             # SIGKILL after the CPU hard limit
    (153, False, "file_size", E.LIMIT),       # SIGXFSZ
    (1, False, "pids", E.LIMIT),              # docker: forks refused by the pids limit
    (127, False, None, E.INFRA),              # command not found
    (126, False, None, E.INFRA),              # not executable
    (139, False, "signal:SIGSEGV", E.AGENT_CRASHED),
    (137, False, "signal:SIGKILL", E.AGENT_CRASHED),
    (143, False, "cancelled", None),          # a stop is not a failure
])
def test_classify_run(exit_code: int, timed_out: bool, killed_by: str | None, expected: ErrorClass | None) -> None:
    assert classify_run(exit_code, timed_out, killed_by) == expected


def check(passed: bool, exit_code: int | None = 0) -> CheckResult:
    return CheckResult("c", "command", passed, exit_code, "", 0.1)


@pytest.mark.parametrize(("results", "expected"), [
    ((), None),
    ((check(True),), None),
    ((check(True), check(False, 1)), E.CHECK_FAILED),
    ((check(False, None),), E.CHECK_FAILED),           # a `file` check has no exit code
    ((check(False, 127),), E.INFRA),                  # the check's tool is missing
    ((check(False, 127), check(False, 1)), E.CHECK_FAILED),
])
def test_classify_checks(results: tuple[CheckResult, ...], expected: ErrorClass | None) -> None:
    assert classify_checks(results) == expected


@pytest.mark.parametrize(("exc", "expected"), [
    (IsolationError("no bwrap"), E.INFRA),
    (GitError("push refused", "git push", 1, ""), E.INFRA),
    (OSError("disk full"), E.INFRA),
    (ValueError("a bug"), None),
])
def test_classify_exception(exc: BaseException, expected: ErrorClass | None) -> None:
    assert classify_exception(exc) == expected


def test_every_class_is_explained() -> None:
    assert all(explain(c) for c in ErrorClass) and explain("") == ""


def agent_task(attempt: int, error: str | None, error_class: str = "") -> agents.AgentTask:
    return agents.AgentTask(task_id="1", title="T", description="", checks=(), files=(), attempt=attempt,
                            previous_error=error, repo="a/b", branch="b", error_class=error_class)


def test_the_next_prompt_names_the_class_and_the_error() -> None:
    prompt = agents.render_prompt(agent_task(2, "killed after 1.0s", "timeout"))
    assert "The previous attempt failed (timeout)" in prompt and "killed after 1.0s" in prompt
    assert "(timeout)" not in agents.render_prompt(agent_task(2, "boom"))


# -- escalation ---------------------------------------------------------------------------------

def test_escalation_names_the_class_and_quotes_the_redacted_tail() -> None:
    ex = Execution(id="e1", installation_id=1, repo="a/b", account="a", issue_number=1, is_pull_request=False,
                   branch="b", base_branch="main", requester="ada")
    token = "ghs_" + "A" * 36
    error = "x" * 5000 + f"\nThe agent `command` timed out (timeout).\nlast words {token}"
    result = TaskResult(False, 4, 9.0, last_error=error, error_class="timeout")
    task = Task(id="2", title="Slow", done=False, line=1)
    text = reports.escalation(ex, task, result, "http://dash/executions/e1")
    assert "Failure class: `timeout`" in text and "ran out of time" in text
    assert "last words [REDACTED]" in text and token not in text
    assert "x" * (reports.EXCERPT + 1) not in text  # only the tail is quoted
    assert "http://dash/executions/e1/artifacts/2" in text and "/clarity override 2 done" in text


def test_check_run_text_links_the_artifacts() -> None:
    text = reports.task_text(TaskResult(True, 1, 1.0), "", "http://dash/executions/e1/artifacts/1")
    assert "(http://dash/executions/e1/artifacts/1)" in text


# -- real attempts ------------------------------------------------------------------------------

def repo(tmp_path: Path) -> Path:
    workdir = tmp_path / "ws"
    workdir.mkdir(parents=True)
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
                                  "-m", "root"]):
        subprocess.run(["git", *args], cwd=workdir, check=True)
    return workdir


def git_diff(workdir: Path) -> str:
    subprocess.run(["git", "add", "-A"], cwd=workdir, check=True)
    return subprocess.run(["git", "diff", "--cached", "HEAD"], cwd=workdir, check=True, capture_output=True,
                          text=True).stdout


def plan_for(tmp_path: Path, script: str, checks: tuple[str, ...] = (), timeout: float = 30, retries: int = 0,
             max_bytes: int = artifacts.DEFAULT_MAX_BYTES) -> AttemptPlan:
    workdir = repo(tmp_path)
    agent = tmp_path / "artifacts" / "ex1" / "1" / "agent.py"  # where the sandbox can see it (bwrap hides /tmp)
    agent.parent.mkdir(parents=True)
    agent.write_text(script)
    task = Task(id="1", title="Do it", done=False, line=1)
    return AttemptPlan(task=task, agent="command", agent_options={"command": f"{sys.executable} {agent}"},
                       checks=checks, workdir=workdir, artifacts=tmp_path / "artifacts" / "ex1" / "1",
                       repo="a/b", branch="b", limits=Limits(timeout=timeout), retries=retries, backoff=0.0,
                       diff=lambda: git_diff(workdir), max_artifact_bytes=max_bytes)


def attempt(plan: AttemptPlan) -> TaskResult:
    return attempt_task(plan, LocalSandbox(writable=(plan.artifacts,)), threading.Event(), lambda *a: None)


def test_an_agent_that_overruns_is_a_timeout_and_the_retry_prompt_says_so(tmp_path: Path) -> None:
    # 3 s: long enough for a sandboxed Python to start and print on a loaded machine, far below its 30 s sleep.
    plan = plan_for(tmp_path, "import time\nprint('thinking', flush=True)\ntime.sleep(30)\n", timeout=3,
                    retries=1)
    result = attempt(plan)
    assert not result.passed and result.error_class == "timeout"
    assert result.error_classes == ("timeout", "timeout")
    assert "(timeout)" in result.last_error and "thinking" in result.last_error
    second = plan.artifacts / "attempt-2"
    assert "The previous attempt failed (timeout)" in (second / "prompt.md").read_text()
    verdict = json.loads((second / "result.json").read_text())
    assert verdict["error_class"] == "timeout" and verdict["timed_out"] is True
    timings = json.loads((second / "timings.json").read_text())
    assert 2.9 < timings["agent_seconds"] < 15 and timings["checks_seconds"] is None


def test_a_crashing_agent_and_a_missing_tool_are_told_apart(tmp_path: Path) -> None:
    crash = attempt(plan_for(tmp_path / "a", "raise SystemExit(3)\n"))
    assert crash.error_class == "agent_crashed"
    missing = plan_for(tmp_path / "b", "", retries=3)
    missing = AttemptPlan(**{**{f: getattr(missing, f) for f in AttemptPlan.__dataclass_fields__},
                             "agent_options": {"command": "no-such-agent-binary {prompt_file}"}})
    result = attempt(missing)
    # A missing tool is not retried: three more attempts would fail the same way (issue 13, finding 9).
    assert (result.error_class, result.attempts, result.error_classes) == ("infra", 1, ("infra",))


def test_attempt_artifacts_hold_the_diff_before_checks_timings_and_a_verdict(tmp_path: Path) -> None:
    token = "ghp_" + "B" * 36
    script = ("import pathlib\npathlib.Path('hello.txt').write_text('hello\\n')\n"
              f"pathlib.Path('secret.txt').write_text('{token}\\n')\nprint('done')\n")
    plan = plan_for(tmp_path, script, checks=("file hello.txt", "rm hello.txt && false"))
    result = attempt(plan)
    assert not result.passed and result.error_class == "check_failed"
    folder = plan.artifacts / "attempt-1"
    assert {p.name for p in folder.iterdir()} >= {"prompt.md", "agent.log", "diff.patch", "checks.json",
                                                  "timings.json", "result.json"}
    patch = (folder / "diff.patch").read_text()
    assert "+hello" in patch  # taken after the agent, before the check removed the file
    assert token not in patch and "[REDACTED]" in patch
    timings = json.loads((folder / "timings.json").read_text())
    assert timings["checks_seconds"] is not None and timings["agent_seconds"] > 0
    assert json.loads((folder / "result.json").read_text())["error_class"] == "check_failed"


def test_each_artifact_is_capped_with_a_marker(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, "print('y' * 200_000)\nraise SystemExit(1)\n", max_bytes=4096)
    attempt(plan)
    log = (plan.artifacts / "attempt-1" / "agent.log").read_bytes()
    assert len(log) <= 4096 and log.endswith(b"[truncated]\n")


# -- the artifacts folder -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("short", 100, "short"),
    ("a" * 100, 100, "a" * 100),
    ("a" * 101, 20, "a" * (20 - len(artifacts.TRUNCATED)) + artifacts.TRUNCATED),
    ("é" * 50, 20, "é" * 3 + artifacts.TRUNCATED),  # never half a character
])
def test_cap(text: str, limit: int, expected: str) -> None:
    assert artifacts.cap(text, limit) == expected
    assert len(artifacts.cap(text, limit).encode()) <= limit


def test_write_text_redacts_before_capping(tmp_path: Path) -> None:
    token = "ghs_" + "C" * 36
    path = artifacts.write_text(tmp_path / "f.txt", "x" * 10 + " " + token, max_bytes=30)
    assert path.read_text() == "x" * 10 + " " + redact(token)  # not half a token cut off by the cap


def tree(root: Path) -> Path:
    (root / "ex1" / "1" / "attempt-1").mkdir(parents=True)
    (root / "ex1" / "1" / "attempt-1" / "agent.log").write_text("log")
    (root / "ex2").mkdir()
    (root / "secret.txt").write_text("outside")
    return root


@pytest.mark.parametrize(("relpath", "found"), [
    ("", True), ("1", True), ("1/attempt-1/agent.log", True), ("1/attempt-1/", True),
    ("../secret.txt", False), ("1/../../secret.txt", False), ("/etc/passwd", False), ("nope", False),
    ("1/link", False), ("1/dirlink/secret.txt", False), ("..", False), ("1\\..\\..\\secret.txt", False),
    ("1/fifo", False), ("1/attempt-1/agent.log/x", False), ("1/a\0b", False),
])
def test_lookup_stays_inside_the_execution(tmp_path: Path, relpath: str, found: bool) -> None:
    root = tree(tmp_path / "artifacts")
    (root / "ex1" / "1" / "link").symlink_to(root / "secret.txt")
    (root / "ex1" / "1" / "dirlink").symlink_to(root)
    os.mkfifo(root / "ex1" / "1" / "fifo")
    assert (artifacts.lookup(root, "ex1", relpath) is not None) is found


@pytest.mark.parametrize("execution_id", ["", "..", ".", "ex1/1", "missing", "secret.txt"])
def test_lookup_refuses_odd_execution_ids(tmp_path: Path, execution_id: str) -> None:
    assert artifacts.lookup(tree(tmp_path / "artifacts"), execution_id) is None


def test_lookup_reads_a_file_up_to_one_byte_past_the_cap(tmp_path: Path) -> None:
    root = tree(tmp_path / "artifacts")
    (root / "ex1" / "big.log").write_bytes(b"x" * 100_000)
    assert artifacts.lookup(root, "ex1", "1/attempt-1/agent.log") == b"log"
    assert artifacts.lookup(root, "ex1", "big.log", max_bytes=1000) == b"x" * 1001


def test_listing_leaves_symlinks_and_special_files_out(tmp_path: Path) -> None:
    root = tree(tmp_path / "artifacts")
    (root / "ex1" / "1" / "link").symlink_to(root / "secret.txt")
    (root / "ex1" / "dirlink").symlink_to(root)
    os.mkfifo(root / "ex1" / "1" / "fifo")
    entries = artifacts.lookup(root, "ex1")
    assert isinstance(entries, list)
    assert [(e.path, e.is_dir, e.size) for e in entries] == [
        ("1", True, 0), ("1/attempt-1", True, 0), ("1/attempt-1/agent.log", False, 3)]
    below = artifacts.lookup(root, "ex1", "1/attempt-1")
    assert isinstance(below, list) and [e.path for e in below] == ["1/attempt-1/agent.log"]


@pytest.mark.parametrize(("mtimes", "now", "days", "expected"), [
    ({}, 100 * artifacts.DAY, 30, []),
    ({"old": 1.0, "new": 99 * artifacts.DAY}, 100 * artifacts.DAY, 30, ["old"]),
    ({"edge": 70 * artifacts.DAY}, 100 * artifacts.DAY, 30, []),
    ({"a": 0.0, "b": 0.5}, 100 * artifacts.DAY, 1, ["a", "b"]),
])
def test_expired(mtimes: dict[str, float], now: float, days: float, expected: list[str]) -> None:
    assert artifacts.expired(mtimes, now, days) == expected


def test_prune_deletes_only_executions_untouched_for_the_retention(tmp_path: Path) -> None:
    import os
    root = tree(tmp_path / "artifacts")
    old = 1_000_000.0
    for path in [root / "ex1", *(root / "ex1").rglob("*")]:
        os.utime(path, (old, old), follow_symlinks=False)
    now = old + 31 * artifacts.DAY
    os.utime(root / "ex2", (now, now))
    assert artifacts.prune(root, 30, now=now) == ["ex1"]
    assert not (root / "ex1").exists() and (root / "ex2").exists()
    assert artifacts.prune(root, 0, now=now * 2) == []  # 0 keeps everything
    assert artifacts.prune(tmp_path / "missing", 30) == []


# -- served by the dashboard --------------------------------------------------------------------

def test_dashboard_lists_and_serves_artifacts_and_refuses_to_leave_the_folder(settings, store) -> None:
    from app import create_app

    ex = store.create(Execution(id="", installation_id=1, repo="a/b", account="a", issue_number=1,
                                is_pull_request=False, branch="b", base_branch="main", requester="ada"), "ada")
    root = settings.artifacts_dir
    folder = root / ex.id / "1" / "attempt-1"
    folder.mkdir(parents=True)
    artifacts.write_text(folder / "agent.log", "hello from the agent\n")
    token = "ghs_" + "D" * 36
    (folder / "raw.txt").write_text(f"written by an agent: {token}\n")  # not through write_text
    (root / "outside.txt").write_text("another customer's secret\n")
    (folder / "link.txt").symlink_to(root / "outside.txt")
    client = create_app(settings).test_client()
    base = f"/executions/{ex.id}/artifacts"

    listing = client.get(base)
    assert listing.status_code == 200
    assert f'href="{base}/1/attempt-1/agent.log"' in listing.text and "link.txt" not in listing.text
    assert client.get(f"{base}/1").status_code == 200
    served = client.get(f"{base}/1/attempt-1/agent.log")
    assert served.status_code == 200 and served.mimetype == "text/plain"
    assert served.text == "hello from the agent\n"
    raw = client.get(f"{base}/1/attempt-1/raw.txt").text
    assert token not in raw and "[REDACTED]" in raw  # redacted again on the way out
    for bad in ("1/attempt-1/link.txt", "../outside.txt", "1/../../outside.txt", "%2e%2e/outside.txt",
                "1/%2e%2e/%2e%2e/outside.txt", "nope.txt"):
        response = client.get(f"{base}/{bad}")
        assert response.status_code == 404, bad
        assert "another customer" not in response.text
    assert client.get("/executions/nope/artifacts").status_code == 404
    page = client.get(f"/executions/{ex.id}").text
    assert f'href="{base}"' in page
