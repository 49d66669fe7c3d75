"""Agents are command builders: a task and a prompt file in, the argv and environment of a tool out."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ERROR_TAIL_CHARS = 4000
PREVIOUS_ERROR_FILE_CHARS = 200_000
# Linux refuses a single argv string over 128 KiB (MAX_ARG_STRLEN); stay well below it.
MAX_PROMPT_ARG_BYTES = 100_000
DEFAULT_OLLAMA_API_BASE = "http://127.0.0.1:11434"
# Where each networked tool's model lives unless its options or environment say otherwise (aider picks
# OpenAI or Anthropic by the key it is given).
DEFAULT_MODEL_APIS = {
    "aider": ("https://api.openai.com", "https://api.anthropic.com"),
    "claude": ("https://api.anthropic.com",),
    "ollama": (),  # OLLAMA_API_BASE, set by `build`
}
# Variables a tool reads its model's base URL from.
BASE_URL_VARIABLES = ("OLLAMA_API_BASE", "OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")
# The public API of a provider whose key aider (and so the ollama tool, which is aider) is given.
KEY_APIS = {
    "GEMINI_API_KEY": "https://generativelanguage.googleapis.com",
    "OPENROUTER_API_KEY": "https://openrouter.ai",
    "DEEPSEEK_API_KEY": "https://api.deepseek.com",
}
TEMPLATE_PLACEHOLDERS = ("prompt_file", "task_id", "workdir", "attempt")
# The variable that points each networked tool at its model (`api_base` in its options): aider speaks to an
# OpenAI-compatible server, the ollama tool (aider too) to an Ollama server, Claude Code to a Messages API.
API_BASE_VARIABLES = {"aider": "OPENAI_API_BASE", "ollama": "OLLAMA_API_BASE", "claude": "ANTHROPIC_BASE_URL"}
# What aider leaves beside the prompt: its analytics log is where it writes each model call's tokens and cost
# (runner.agentreport reads them; nothing is sent anywhere with analytics disabled).
AIDER_ANALYTICS_LOG = "aider.analytics.jsonl"
# An unattended, sandboxed run wants no update checks, telemetry or error reports (the egress proxy would
# refuse them anyway), litellm's bundled model prices instead of a download, and aider's output unbuffered:
# a run killed at its timeout must still have said why (a failing model, say) to the worker.
_AIDER_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
TOOL_ENV = {
    "aider": _AIDER_ENV,
    "ollama": _AIDER_ENV,
    "claude": {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"},
}


class AgentError(ValueError):
    """An agent cannot be built as asked; the message says what to change."""


@dataclass(frozen=True, slots=True)
class AgentTask:
    """What the engine tells an agent about the task at hand."""

    task_id: str
    title: str
    description: str
    checks: tuple[str, ...]
    files: tuple[str, ...]
    attempt: int
    previous_error: str | None
    repo: str
    branch: str
    error_class: str = ""  # why the previous attempt failed: check_failed, timeout, limit, ...


@dataclass(frozen=True, slots=True)
class AgentInvocation:
    """The command to run in the sandbox and the variables to add to its environment."""

    argv: tuple[str, ...]
    env: dict[str, str]


def previous_error_file(prompt_file: Path) -> Path:
    """Where the previous attempt's full error output lives: beside the prompt."""
    return prompt_file.with_name(f"{prompt_file.stem}.previous_error.txt")


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _error_tail(error: str) -> str:
    if len(error) <= ERROR_TAIL_CHARS:
        return error
    return "[... earlier output cut ...]\n" + error[-ERROR_TAIL_CHARS:]


def render_prompt(task: AgentTask) -> str:
    """The markdown prompt for a task: what to do, how it is checked, and what went wrong last time."""
    lines = [
        f"# Task {task.task_id}: {task.title}",
        "",
        f"Repository `{task.repo}`, branch `{task.branch}`, attempt {task.attempt}.",
        "",
        "## What to do",
        "",
        task.description.strip() or task.title,
        "",
        "## Acceptance checks",
        "",
    ]
    if task.checks:
        lines.append("The task is done when each of these passes (run from the repository root):")
        lines.extend(f"- `{check}`" for check in task.checks)
    else:
        lines.append("No automatic checks are given: the repository's quality gates still run.")
    if task.files:
        lines += ["", "## Files", "", "Start with these files:"]
        lines.extend(f"- `{path}`" for path in task.files)
    lines += [
        "",
        "## Rules",
        "",
        "- Change files in the working directory only.",
        "- Do not commit, push or switch branches: Clarity commits your changes after the checks pass.",
        "- Do not tick the task in the task list: Clarity does that.",
    ]
    if task.attempt > 1 and task.previous_error:
        tail = _error_tail(task.previous_error.rstrip())
        fence = _fence(tail)
        lines += [
            "",
            "## Previous attempt",
            "",
            f"The previous attempt failed ({task.error_class}). Output:" if task.error_class
            else "The previous attempt failed. Output:",
            "",
            f"{fence}text",
            tail,
            fence,
            "",
            "Fix the cause of this failure.",
        ]
    return "\n".join(lines) + "\n"


def write_prompt(path: Path, task: AgentTask) -> Path:
    """Write the task's prompt to `path` (and the previous error beside it, when any); return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_prompt(task), encoding="utf-8")
    if task.previous_error:
        previous_error_file(path).write_text(
            task.previous_error[-PREVIOUS_ERROR_FILE_CHARS:], encoding="utf-8"
        )
    return path


def clarity_env(task: AgentTask, prompt_file: Path, workdir: Path) -> dict[str, str]:
    """The CLARITY_* variables every agent gets."""
    env = {
        "CLARITY_TASK_ID": task.task_id,
        "CLARITY_TASK_TITLE": task.title,
        "CLARITY_PROMPT_FILE": str(prompt_file),
        "CLARITY_ATTEMPT": str(task.attempt),
        "CLARITY_WORKDIR": str(workdir),
        "CLARITY_REPO": task.repo,
        "CLARITY_BRANCH": task.branch,
    }
    if task.previous_error:
        env["CLARITY_PREVIOUS_ERROR_FILE"] = str(previous_error_file(prompt_file))
    if task.error_class:
        env["CLARITY_PREVIOUS_ERROR_CLASS"] = task.error_class
    return env


def _format_token(token: str, values: Mapping[str, str]) -> str:
    """Fill {placeholders} in one token; only plain known names, so a template cannot reach attributes."""
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(token) if name is not None]
    except ValueError as exc:
        raise AgentError(f"command template token `{token}` is malformed: {exc}") from None
    for name in fields:
        if name not in values:
            raise AgentError(
                f"command template uses unknown placeholder {{{name}}}; known: "
                + ", ".join(f"{{{known}}}" for known in TEMPLATE_PLACEHOLDERS)
            )
    return token.format_map(values)


def _split_template(options: Mapping[str, str]) -> list[str]:
    template = options.get("command", "").strip()
    if not template:
        raise AgentError(
            "the command agent needs a `command` template, e.g. `python3 agent.py {prompt_file}`"
        )
    try:
        return shlex.split(template)
    except ValueError as exc:
        raise AgentError(f"command template `{template}` cannot be split: {exc}") from None


def _build_command(
    task: AgentTask, prompt_file: Path, workdir: Path, options: Mapping[str, str]
) -> list[str]:
    values = {
        "prompt_file": str(prompt_file),
        "task_id": task.task_id,
        "workdir": str(workdir),
        "attempt": str(task.attempt),
    }
    # Split first, then fill: a value with spaces or `;` stays one argv item and is never re-parsed.
    return [_format_token(token, values) for token in _split_template(options)]


def _aider_argv(
    task: AgentTask, prompt_file: Path, options: Mapping[str, str], model: str | None
) -> list[str]:
    history = prompt_file.parent
    argv = [
        options.get("executable", "aider"),
        "--message-file",
        str(prompt_file),
        "--yes-always",
        # The engine owns git: the workspace's .git is read-only in the sandbox, where aider's `git add` of a
        # new file (and its identity check, which writes .git/config) would fail the edit or the run.
        "--no-git",
        "--no-auto-commits",
        "--no-dirty-commits",
        "--no-gitignore",
        "--no-pretty",
        "--no-stream",
        "--no-check-update",
        "--no-show-release-notes",
        "--no-show-model-warnings",
        # aider's history files default to the repository root, where they would be committed.
        "--input-history-file",
        str(history / "aider.input.history"),
        "--chat-history-file",
        str(history / "aider.chat.history.md"),
        # Nothing leaves for aider's analytics; the local log is its only record of tokens and cost.
        "--analytics-disable",
        "--analytics-log",
        str(history / AIDER_ANALYTICS_LOG),
    ]
    if model:
        argv += ["--model", model]
    if options.get("model_timeout"):
        argv += ["--timeout", str(model_timeout(options))]
    # A hint that starts with "-" must not be read as a flag.
    argv += [f"./{path}" if path.startswith("-") else path for path in task.files]
    return argv


def _aider_model(options: Mapping[str, str]) -> str | None:
    """The model aider asks for: with an `api_base` (an OpenAI-compatible server) a model named without a
    provider is that server's, `openai/<model>`; litellm would not know where else to send it."""
    model = options.get("model", "").strip()
    if model and options.get("api_base") and "/" not in model:
        return f"openai/{model}"
    return model or None


def _build_aider(task: AgentTask, prompt_file: Path, workdir: Path, options: Mapping[str, str]) -> list[str]:
    return _aider_argv(task, prompt_file, options, _aider_model(options))


def _ollama_model(options: Mapping[str, str]) -> str:
    model = options.get("model", "").strip()
    if not model:
        raise AgentError("the ollama agent needs a `model`, e.g. `qwen2.5-coder:7b`")
    if model.startswith(("ollama_chat/", "ollama/")):
        return model
    return f"ollama_chat/{model}"


def _build_ollama(task: AgentTask, prompt_file: Path, workdir: Path, options: Mapping[str, str]) -> list[str]:
    return _aider_argv(task, prompt_file, options, _ollama_model(options))


def _build_claude(task: AgentTask, prompt_file: Path, workdir: Path, options: Mapping[str, str]) -> list[str]:
    prompt = prompt_file.read_text(encoding="utf-8")
    extra: list[str] = []
    if len(prompt.encode()) > MAX_PROMPT_ARG_BYTES:
        prompt = f"Read the task in {prompt_file} and carry it out in this repository."
        extra = ["--add-dir", str(prompt_file.parent)]
    argv = [
        options.get("executable", "claude"),
        "-p",
        prompt,
        # One JSON event a line as it happens (retries of a failing model included), the last one the
        # result with its usage and cost: runner.agentreport reads them, even from a run killed midway.
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        *extra,
    ]
    if options.get("model"):
        argv += ["--model", options["model"]]
    if options.get("max_turns"):
        argv += ["--max-turns", str(options["max_turns"])]
    if options.get("allowed_tools"):
        # Last on purpose: the flag takes a list, so nothing positional may follow it.
        argv += ["--allowedTools", options["allowed_tools"]]
    return argv


Builder = Callable[[AgentTask, Path, Path, Mapping[str, str]], list[str]]
BUILDERS: dict[str, Builder] = {
    "aider": _build_aider,
    "claude": _build_claude,
    "command": _build_command,
    "ollama": _build_ollama,
}


def model_timeout(options: Mapping[str, str]) -> float:
    """`model_timeout`: the seconds one model request may take before the tool calls it failed."""
    raw = options.get("model_timeout", "")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < 86400:
        raise AgentError(f"`model_timeout` must be a number of seconds above 0, got {raw!r}")
    return int(seconds) if seconds.is_integer() else seconds


def tool_env(agent: str, options: Mapping[str, str]) -> dict[str, str]:
    """The variables a networked tool gets from its options: where its model is, how long a request may take."""
    env = dict(TOOL_ENV.get(agent, {}))
    if agent == "ollama":
        env["OLLAMA_API_BASE"] = options.get("api_base") or DEFAULT_OLLAMA_API_BASE
    elif agent in API_BASE_VARIABLES and options.get("api_base"):
        env[API_BASE_VARIABLES[agent]] = options["api_base"]
    if agent == "claude" and options.get("model_timeout"):
        env["API_TIMEOUT_MS"] = str(round(float(model_timeout(options)) * 1000))
    return env


def _unknown(agent: str) -> AgentError:
    return AgentError(f"unknown agent `{agent}`; known: {', '.join(sorted(BUILDERS))}")


def build(
    agent: str,
    task: AgentTask,
    prompt_file: Path,
    workdir: Path,
    options: Mapping[str, str] | None = None,
) -> AgentInvocation:
    """The argv and environment that run `agent` on `task` in `workdir`."""
    builder = BUILDERS.get(agent)
    if builder is None:
        raise _unknown(agent)
    opts = options or {}
    argv = builder(task, prompt_file, workdir, opts)
    return AgentInvocation(tuple(argv), {**clarity_env(task, prompt_file, workdir), **tool_env(agent, opts)})


def model_apis(agent: str, options: Mapping[str, str] | None = None,
               env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The URLs of the model APIs `agent` is configured for: the egress proxy lets its runs reach these only.

    The tool's defaults, `api_base` from its options, base URLs in its environment (the vault's
    OLLAMA_API_BASE, say), and the provider of each API key aider gets. `command` has no network.
    """
    if agent not in DEFAULT_MODEL_APIS:
        return ()
    opts, variables = options or {}, env or {}
    urls = [*DEFAULT_MODEL_APIS[agent], *([opts["api_base"]] if opts.get("api_base") else [])]
    if agent == "ollama":
        urls.append(variables.get("OLLAMA_API_BASE") or opts.get("api_base") or DEFAULT_OLLAMA_API_BASE)
    urls += [variables[name] for name in BASE_URL_VARIABLES if variables.get(name)]
    if agent != "claude":
        urls += [url for key, url in KEY_APIS.items() if variables.get(key)]
    return tuple(dict.fromkeys(urls))


def executable(agent: str, options: Mapping[str, str] | None = None) -> str | None:
    """The program an agent runs, or None when it is only known once placeholders are filled."""
    opts = options or {}
    if agent not in BUILDERS:
        raise _unknown(agent)
    if agent == "command":
        program = _split_template(opts)[0]
        return None if "{" in program else program
    return opts.get("executable", "claude" if agent == "claude" else "aider")


def available(agent: str, options: Mapping[str, str] | None = None, path: str | None = None) -> str | None:
    """None when the agent's program can run on this worker, else a message saying why not."""
    try:
        program = executable(agent, options)
    except AgentError as exc:
        return str(exc)
    if program is None:
        return None
    if os.sep in program:
        if os.access(program, os.X_OK) and not os.path.isdir(program):
            return None
        return f"{program} is not an executable file on this worker"
    if shutil.which(program, path=path) is not None:
        return None
    via = f" (the {agent} agent runs {program})" if program != agent else ""
    return f"{program} is not installed on this worker (not on PATH){via}"
