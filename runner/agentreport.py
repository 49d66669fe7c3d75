"""What a real agent tool says about its own run: the tokens and dollars it used, and whether its model failed.

Pure: the run's output (and aider's analytics log, which it writes beside the prompt) in, an AgentReport
out. Everything read here was written inside the sandbox, so it is parsed as untrusted text: capped,
never evaluated, and a line that does not parse is skipped. A lying tool can only misreport itself.

- aider (and the ollama tool, which is aider): the analytics log (`--analytics-log`) holds a
  `message_send` event per model answer with its tokens and cost; a model call that failed is printed
  as `litellm.<Error>: ...` (aider retries those for about a minute, then gives up and exits 0).
- claude (`--output-format stream-json --verbose`): one JSON event a line; the `result` event carries
  the session's `usage` and `total_cost_usd`, and `is_error` with the API's error when the model failed;
  `system`/`api_retry` events tell of failing model calls while Claude Code retries them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_ERROR_CHARS = 500
MAX_TOKENS = 10**12
MAX_COST = 1_000_000.0
# aider prints a failed model call as `litellm.InternalServerError: ...`, wrapped at the console's width.
LITELLM_ERROR = re.compile(r"^litellm\.(\w+): ")
AIDER_ERROR_END = re.compile(r"^(Retrying in |The API provider|Traceback \(most recent call last\)|$)")
AIDER_USAGE = re.compile(r"^Tokens: ")


@dataclass(frozen=True, slots=True)
class AgentReport:
    """A tool's own account of one run: tokens and dollars used, and the model's failure ("" when none)."""

    tokens: int = 0
    cost_usd: float = 0.0
    model_error: str = ""


def read(agent: str, stdout: str, stderr: str = "", analytics: str | None = None) -> AgentReport:
    """The report of a run of `agent` (aider, ollama, claude); an empty one for tools that report nothing."""
    if agent in ("aider", "ollama"):
        return aider(analytics or "", f"{stdout}\n{stderr}")
    if agent == "claude":
        return claude(stdout)
    return AgentReport()


# -- aider ------------------------------------------------------------------------------------------
def aider(analytics: str, output: str) -> AgentReport:
    """aider's usage from its analytics log, and the model error it was left with from its output."""
    tokens, cost = 0, 0.0
    for event in _json_lines(analytics):
        if event.get("event") != "message_send" or not isinstance(event.get("properties"), dict):
            continue
        props = event["properties"]
        tokens += _count(props.get("prompt_tokens")) + _count(props.get("completion_tokens"))
        cost += _dollars(props.get("cost"))
    return AgentReport(min(tokens, MAX_TOKENS), min(cost, MAX_COST), _aider_error(output))


def _aider_error(output: str) -> str:
    """The last model error aider printed, when no model answer came after it ("" otherwise)."""
    lines = output.splitlines()
    error, count = "", 0
    index = 0
    while index < len(lines):
        line = lines[index].rstrip()
        if AIDER_USAGE.match(line):  # an answer came (and was counted): earlier errors were overcome
            error, count = "", 0
        elif LITELLM_ERROR.match(line):
            parts = [line.split(" Traceback (most recent call last):")[0]]
            while index + 1 < len(lines) and not AIDER_ERROR_END.match(lines[index + 1].strip()) \
                    and not LITELLM_ERROR.match(lines[index + 1]) and len(" ".join(parts)) < MAX_ERROR_CHARS:
                index += 1
                parts.append(lines[index].strip())
            error, count = " ".join(parts), count + 1
        index += 1
    if not error:
        return ""
    return _cut(error if count == 1 else f"{error} (the model failed {count} times)")


# -- claude -----------------------------------------------------------------------------------------
def claude(output: str) -> AgentReport:
    """Claude Code's usage and model failure from its stream-json events."""
    result: dict[str, Any] | None = None
    retries: list[dict[str, Any]] = []
    turns: dict[str, dict[str, Any]] = {}
    for event in _json_lines(output):
        kind = event.get("type")
        if kind == "result":
            result = event
        elif kind == "system" and event.get("subtype") == "api_retry":
            retries.append(event)
        elif kind == "assistant" and isinstance(event.get("message"), dict):
            message = event["message"]
            if isinstance(message.get("usage"), dict):  # one API answer can come as several events
                turns[str(message.get("id", len(turns)))] = message["usage"]
    if result is not None:
        usage = result.get("usage")
        tokens = _claude_tokens(usage if isinstance(usage, dict) else {})
        return AgentReport(tokens, min(_dollars(result.get("total_cost_usd")), MAX_COST), _claude_error(result))
    # Killed before its result: what the answers so far said, and the retries it was stuck in.
    tokens = sum(_claude_tokens(usage) for usage in turns.values())
    return AgentReport(min(tokens, MAX_TOKENS), 0.0, _retry_error(retries))


def _claude_tokens(usage: dict[str, Any]) -> int:
    keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return min(sum(_count(usage.get(key)) for key in keys), MAX_TOKENS)


def _claude_error(result: dict[str, Any]) -> str:
    """The API error a result ended on ("" when it ended otherwise, even as another kind of error)."""
    text = result.get("result")
    text = text if isinstance(text, str) else ""
    if not result.get("is_error"):
        return ""
    if result.get("terminal_reason") == "api_error" or result.get("api_error_status") or text.startswith("API Error"):
        return _cut(text or f"API error {result.get('api_error_status')}")
    return ""


def _retry_error(retries: list[dict[str, Any]]) -> str:
    if not retries:
        return ""
    last = retries[-1]
    status = last.get("error_status")
    what = f"HTTP {status}" if isinstance(status, int) else "no answer"
    kind = last.get("error")
    attempts = len(retries)
    return _cut(f"API Error: the model request failed ({what}{f', {kind}' if isinstance(kind, str) else ''}); "
                f"Claude Code retried it {attempts} time{'' if attempts == 1 else 's'}")


# -- shared -----------------------------------------------------------------------------------------
def _json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines text; other lines are skipped."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, dict):
            yield value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, MAX_TOKENS)


def _dollars(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"
