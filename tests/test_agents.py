"""Agent command builders: argv and environment as data, prompts as text."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.agents import (
    AgentError,
    AgentInvocation,
    AgentTask,
    available,
    build,
    previous_error_file,
    render_prompt,
    write_prompt,
)
from runner.sandbox import Limits, LocalSandbox

WORKDIR = Path("/work/ws/acme/app")
PROMPT = Path("/data/runs/e1/1.2/prompt.md")
TASK = AgentTask(
    task_id="1.2",
    title="Add CI workflow",
    description="Add a GitHub Actions workflow that runs the tests.",
    checks=("pytest -q tests/test_ci.py", "file .github/workflows/ci.yml"),
    files=(".github/workflows/ci.yml",),
    attempt=1,
    previous_error=None,
    repo="acme/app",
    branch="clarity/issue-7",
)
RETRY = replace(TASK, attempt=2, previous_error="E   AssertionError: ci.yml missing\n1 failed")
BASE_ENV = {
    "CLARITY_TASK_ID": "1.2",
    "CLARITY_TASK_TITLE": "Add CI workflow",
    "CLARITY_PROMPT_FILE": str(PROMPT),
    "CLARITY_ATTEMPT": "1",
    "CLARITY_WORKDIR": str(WORKDIR),
    "CLARITY_REPO": "acme/app",
    "CLARITY_BRANCH": "clarity/issue-7",
}
AIDER_FLAGS = [
    "--yes-always",
    "--no-git",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-gitignore",
    "--no-pretty",
    "--no-stream",
    "--no-check-update",
    "--no-show-release-notes",
    "--no-show-model-warnings",
    "--input-history-file",
    "/data/runs/e1/1.2/aider.input.history",
    "--chat-history-file",
    "/data/runs/e1/1.2/aider.chat.history.md",
    "--analytics-disable",
    "--analytics-log",
    "/data/runs/e1/1.2/aider.analytics.jsonl",
]
AIDER_ENV = {**BASE_ENV, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
CLAUDE_ENV = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}


def test_command_template_is_split_then_filled() -> None:
    options = {"command": "python3 {workdir}/.clarity/agent.py {prompt_file} --task {task_id} -n {attempt}"}
    invocation = build("command", TASK, PROMPT, WORKDIR, options)
    assert invocation == AgentInvocation(
        argv=("python3", "/work/ws/acme/app/.clarity/agent.py", str(PROMPT), "--task", "1.2", "-n", "1"),
        env=BASE_ENV,
    )


def test_command_template_with_sh_c_keeps_the_script_one_argument() -> None:
    options = {"command": "sh -c 'cat \"$CLARITY_PROMPT_FILE\" > {workdir}/out.txt'"}
    argv = build("command", TASK, PROMPT, WORKDIR, options).argv
    assert argv == ("sh", "-c", 'cat "$CLARITY_PROMPT_FILE" > /work/ws/acme/app/out.txt')


def test_placeholder_values_are_never_resplit_or_shell_parsed(tmp_path: Path) -> None:
    hostile = tmp_path / "my dir; touch PWNED" / "prompt $(id).md"
    hostile.parent.mkdir()
    hostile.write_text("x")
    invocation = build("command", TASK, hostile, tmp_path, {"command": "printf '%s\\n' {prompt_file}"})
    assert invocation.argv == ("printf", "%s\\n", str(hostile))
    result = LocalSandbox().run(invocation.argv, tmp_path, invocation.env, Limits(timeout=10))
    assert result.stdout == f"{hostile}\n"
    assert not (tmp_path / "PWNED").exists()


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1))
def test_any_task_id_stays_exactly_one_argument(task_id: str) -> None:
    argv = build(
        "command", replace(TASK, task_id=task_id), PROMPT, WORKDIR, {"command": "agent --id {task_id}"}
    ).argv
    assert argv == ("agent", "--id", task_id)


def test_command_template_errors_say_what_to_fix() -> None:
    with pytest.raises(AgentError, match="needs a `command` template"):
        build("command", TASK, PROMPT, WORKDIR, {})
    with pytest.raises(AgentError, match=r"unknown placeholder \{token\}; known: \{prompt_file\}"):
        build("command", TASK, PROMPT, WORKDIR, {"command": "agent {token}"})
    with pytest.raises(AgentError, match="unknown placeholder"):
        build("command", TASK, PROMPT, WORKDIR, {"command": "agent {workdir.__class__}"})
    with pytest.raises(AgentError, match="cannot be split"):
        build("command", TASK, PROMPT, WORKDIR, {"command": "agent 'unclosed"})


def test_literal_braces_survive_with_doubling() -> None:
    argv = build("command", TASK, PROMPT, WORKDIR, {"command": "jq '{{a: 1}}' {task_id}"}).argv
    assert argv == ("jq", "{a: 1}", "1.2")


def test_aider_runs_non_interactive_without_committing() -> None:
    invocation = build("aider", TASK, PROMPT, WORKDIR, {"model": "sonnet"})
    assert invocation.argv == (
        "aider",
        "--message-file",
        str(PROMPT),
        *AIDER_FLAGS,
        "--model",
        "sonnet",
        ".github/workflows/ci.yml",
    )
    assert invocation.env == AIDER_ENV


def test_aider_without_model_or_files_and_with_a_dash_file() -> None:
    assert build("aider", replace(TASK, files=()), PROMPT, WORKDIR).argv == (
        "aider",
        "--message-file",
        str(PROMPT),
        *AIDER_FLAGS,
    )
    argv = build("aider", replace(TASK, files=("-rf",)), PROMPT, WORKDIR).argv
    assert argv[-1] == "./-rf"


def test_ollama_is_aider_on_an_ollama_model() -> None:
    invocation = build("ollama", TASK, PROMPT, WORKDIR, {"model": "qwen2.5-coder:7b"})
    assert invocation.argv == (
        "aider",
        "--message-file",
        str(PROMPT),
        *AIDER_FLAGS,
        "--model",
        "ollama_chat/qwen2.5-coder:7b",
        ".github/workflows/ci.yml",
    )
    assert invocation.env == {**AIDER_ENV, "OLLAMA_API_BASE": "http://127.0.0.1:11434"}
    custom = build(
        "ollama", TASK, PROMPT, WORKDIR, {"model": "ollama/llama3", "api_base": "http://gpu:11434"}
    )
    assert custom.argv[custom.argv.index("--model") + 1] == "ollama/llama3"
    assert custom.env["OLLAMA_API_BASE"] == "http://gpu:11434"


def test_api_base_points_each_tool_at_its_model_server() -> None:
    aider = build("aider", TASK, PROMPT, WORKDIR, {"model": "qwen-coder", "api_base": "http://llm.lan:8000/v1"})
    assert aider.argv[aider.argv.index("--model") + 1] == "openai/qwen-coder"  # the server's, not litellm's guess
    assert aider.env == {**AIDER_ENV, "OPENAI_API_BASE": "http://llm.lan:8000/v1"}
    named = build("aider", TASK, PROMPT, WORKDIR, {"model": "openrouter/x/y", "api_base": "http://llm.lan:8000/v1"})
    assert named.argv[named.argv.index("--model") + 1] == "openrouter/x/y"
    ollama = build("ollama", TASK, PROMPT, WORKDIR, {"model": "m", "api_base": "http://gpu.lan:11434"})
    assert ollama.env["OLLAMA_API_BASE"] == "http://gpu.lan:11434" and "OPENAI_API_BASE" not in ollama.env


def test_claude_api_base_and_model_timeout_become_its_variables(tmp_path: Path) -> None:
    prompt = write_prompt(tmp_path / "prompt.md", TASK)
    invocation = build("claude", TASK, prompt, WORKDIR, {"api_base": "http://gw.lan:4000", "model_timeout": "2.5"})
    assert invocation.env == {**BASE_ENV, "CLARITY_PROMPT_FILE": str(prompt), **CLAUDE_ENV,
                              "ANTHROPIC_BASE_URL": "http://gw.lan:4000", "API_TIMEOUT_MS": "2500"}
    aider = build("aider", TASK, PROMPT, WORKDIR, {"model_timeout": "30"})
    assert aider.argv[aider.argv.index("--timeout") + 1] == "30"
    with pytest.raises(AgentError, match=r"`model_timeout` must be a number of seconds above 0, got 'soon'"):
        build("aider", TASK, PROMPT, WORKDIR, {"model_timeout": "soon"})


def test_ollama_needs_a_model() -> None:
    with pytest.raises(AgentError, match="ollama agent needs a `model`"):
        build("ollama", TASK, PROMPT, WORKDIR, {})


def test_claude_gets_the_prompt_in_print_mode_with_edits_allowed(tmp_path: Path) -> None:
    prompt = write_prompt(tmp_path / "prompt.md", TASK)
    options = {"model": "opus", "max_turns": "30", "allowed_tools": "Read,Edit,Bash(pytest:*)"}
    invocation = build("claude", TASK, prompt, WORKDIR, options)
    assert invocation.argv == (
        "claude",
        "-p",
        prompt.read_text(),
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--model",
        "opus",
        "--max-turns",
        "30",
        "--allowedTools",
        "Read,Edit,Bash(pytest:*)",
    )
    assert invocation.env == {**BASE_ENV, "CLARITY_PROMPT_FILE": str(prompt), **CLAUDE_ENV}


def test_claude_with_a_huge_prompt_is_told_to_read_the_file(tmp_path: Path) -> None:
    prompt = write_prompt(tmp_path / "prompt.md", replace(TASK, description="x" * 200_000))
    argv = build("claude", TASK, prompt, WORKDIR).argv
    assert argv == (
        "claude",
        "-p",
        f"Read the task in {prompt} and carry it out in this repository.",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--add-dir",
        str(tmp_path),
    )


def test_unknown_agent_lists_the_known_ones() -> None:
    with pytest.raises(AgentError) as caught:
        build("copilot", TASK, PROMPT, WORKDIR)
    assert str(caught.value) == "unknown agent `copilot`; known: aider, claude, command, ollama"


def test_first_attempt_prompt_has_task_checks_and_files() -> None:
    text = render_prompt(TASK)
    assert text.startswith("# Task 1.2: Add CI workflow\n")
    assert "Add a GitHub Actions workflow that runs the tests." in text
    assert "- `pytest -q tests/test_ci.py`\n- `file .github/workflows/ci.yml`" in text
    assert "- `.github/workflows/ci.yml`" in text
    assert "Do not commit" in text
    assert "previous attempt" not in text.lower()


def test_retry_prompt_quotes_the_previous_error_in_a_fence() -> None:
    text = render_prompt(RETRY)
    assert "attempt 2" in text
    assert (
        "The previous attempt failed. Output:\n\n```text\nE   AssertionError: ci.yml missing\n1 failed\n```\n"
        in text
    )


def test_retry_prompt_fence_outgrows_backticks_in_the_error_and_keeps_the_tail() -> None:
    error = "head\n" + "x" * 10_000 + "\n```\nstill inside\n"
    text = render_prompt(replace(RETRY, previous_error=error))
    assert "````text\n[... earlier output cut ...]\n" in text
    assert "```\nstill inside\n````\n" in text
    assert "head\n" not in text


def test_write_prompt_writes_prompt_and_previous_error_beside_it(tmp_path: Path) -> None:
    path = write_prompt(tmp_path / "run" / "prompt.md", RETRY)
    assert path.read_text() == render_prompt(RETRY)
    assert previous_error_file(path) == tmp_path / "run" / "prompt.previous_error.txt"
    assert previous_error_file(path).read_text() == RETRY.previous_error
    invocation = build("aider", RETRY, path, WORKDIR)
    assert invocation.env["CLARITY_PREVIOUS_ERROR_FILE"] == str(previous_error_file(path))
    assert invocation.env["CLARITY_ATTEMPT"] == "2"
    assert "CLARITY_PREVIOUS_ERROR_FILE" not in build("aider", TASK, path, WORKDIR).env


def test_available_reports_a_missing_binary(tmp_path: Path) -> None:
    assert available("aider", path=str(tmp_path)) == "aider is not installed on this worker (not on PATH)"
    assert available("ollama", {"model": "m"}, path=str(tmp_path)) == (
        "aider is not installed on this worker (not on PATH) (the ollama agent runs aider)"
    )
    assert available("claude", path=str(tmp_path)) == "claude is not installed on this worker (not on PATH)"
    assert available("nope") == "unknown agent `nope`; known: aider, claude, command, ollama"


def test_available_finds_binaries_on_path(tmp_path: Path) -> None:
    fake = tmp_path / "claude"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert available("claude", path=str(tmp_path)) is None
    assert available("command", {"command": f"{sys.executable} agent.py"}) is None
    assert available("command", {"command": "sh -c 'true'"}, path=os.environ["PATH"]) is None
    assert available("command", {"command": "{workdir}/agent.sh"}) is None  # known only at run time
    assert available("command", {"command": "/nonexistent/agent"}) == (
        "/nonexistent/agent is not an executable file on this worker"
    )
    assert available("command", {}) == (
        "the command agent needs a `command` template, e.g. `python3 agent.py {prompt_file}`"
    )
