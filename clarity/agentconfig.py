"""The `agents:` section of `.github/clarity.yml` (DESIGN §6): which tool runs a task, and what comes next.

```yaml
agents:
  default: aider
  fallback: [claude, command]
  routing: static            # or adaptive: order default + fallback by each tool's record in this repo
  rules:
    - {when: {files_over: 3}, use: claude}
    - {when: {title_matches: "(?i)scaffold|test"}, use: ollama}
    - {when: {labels: [docs]}, use: command}
  command: "python3 tools/agent.py {prompt_file}"
  options:                   # per tool; api_base: where its model is (aider: an OpenAI-compatible /v1 URL)
    ollama: {model: "qwen2.5-coder:7b", api_base: "http://gpu.lan:11434"}
    claude: {model: opus, max_turns: 30, model_timeout: 120}   # seconds one model request may take
```
Validation errors name the key; `clarity.repoconfig` adds the file name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOOLS = ("aider", "claude", "command", "ollama")  # the builders of runner.agents (a test keeps them equal)
NETWORKED = frozenset({"aider", "claude", "ollama"})  # tools that talk to a model over the network
ROUTINGS = ("static", "adaptive")
_KEYS = ("default", "fallback", "rules", "routing", "command", "options")
_RULE_KEYS = ("when", "use")
_WHEN_KEYS = ("files_over", "title_matches", "labels")
_OPTION_KEYS = ("model", "api_base", "max_turns", "allowed_tools", "model_timeout")


class AgentConfigError(ValueError):
    """The `agents:` section is not valid; the message names the key."""


@dataclass(frozen=True, slots=True)
class AgentRule:
    """`{when: {...}, use: tool}`: every condition given must hold (labels: any one of them)."""

    use: str
    files_over: int | None = None
    title_matches: str | None = None
    labels: tuple[str, ...] = ()

    def describe(self) -> str:
        """The conditions as the config spells them, for logs and check runs."""
        parts = []
        if self.files_over is not None:
            parts.append(f"files_over {self.files_over}")
        if self.title_matches is not None:
            parts.append(f"title_matches `{self.title_matches}`")
        if self.labels:
            parts.append(f"labels {', '.join(self.labels)}")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    """The repository's agent choice: default, fallback chain, rules, routing mode, tool options."""

    default: str | None = None
    fallback: tuple[str, ...] = ()
    rules: tuple[AgentRule, ...] = ()
    routing: str = "static"
    command: str | None = None
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def parse_agents(data: Any) -> AgentsConfig:
    """Validate the `agents:` mapping (None: defaults); raise AgentConfigError naming the key."""
    if data is None:
        return AgentsConfig()
    if not isinstance(data, dict):
        raise AgentConfigError("`agents` must be a mapping")
    _no_unknown(data, _KEYS, "agents")
    routing = data.get("routing", "static")
    if routing not in ROUTINGS:
        raise AgentConfigError(f"`agents.routing` must be `static` or `adaptive`, got {routing!r}")
    command = data.get("command")
    if command is not None and not isinstance(command, str):
        raise AgentConfigError("`agents.command` must be a string (a command template)")
    fallback = data.get("fallback") or []
    if isinstance(fallback, str):
        fallback = [fallback]
    if not isinstance(fallback, list):
        raise AgentConfigError("`agents.fallback` must be a list of tools")
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise AgentConfigError("`agents.rules` must be a list of `{when: {...}, use: tool}`")
    return AgentsConfig(
        default=_tool(data["default"], "agents.default") if data.get("default") is not None else None,
        fallback=tuple(_tool(name, f"agents.fallback[{i}]") for i, name in enumerate(fallback)),
        rules=tuple(_rule(rule, number) for number, rule in enumerate(rules, start=1)),
        routing=routing,
        command=command,
        options=_options(data.get("options")),
    )


def _no_unknown(data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = [str(key) for key in data if key not in known]
    if unknown:
        raise AgentConfigError(f"`{where}.{unknown[0]}` is not a known key; known: {', '.join(known)}")


def _tool(name: Any, key: str) -> str:
    if not isinstance(name, str) or name not in TOOLS:
        raise AgentConfigError(f"`{key}` names unknown tool {name!r}; known: {', '.join(TOOLS)}")
    return name


def _rule(rule: Any, number: int) -> AgentRule:
    where = f"agents.rules[{number}]"  # 1-based, as logs and check runs say "rule N"
    if not isinstance(rule, dict):
        raise AgentConfigError(f"`{where}` must be a mapping `{{when: {{...}}, use: tool}}`")
    _no_unknown(rule, _RULE_KEYS, where)
    if "use" not in rule:
        raise AgentConfigError(f"`{where}.use` is missing: which tool does the rule choose?")
    when = rule.get("when")
    if not isinstance(when, dict) or not when:
        raise AgentConfigError(f"`{where}.when` must be a mapping with one of: {', '.join(_WHEN_KEYS)}")
    _no_unknown(when, _WHEN_KEYS, f"{where}.when")
    files_over = when.get("files_over")
    if files_over is not None and (not isinstance(files_over, int) or isinstance(files_over, bool)
                                   or files_over < 0):
        raise AgentConfigError(f"`{where}.when.files_over` must be a whole number ≥ 0, got {files_over!r}")
    pattern = when.get("title_matches")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise AgentConfigError(f"`{where}.when.title_matches` must be a regular expression string")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise AgentConfigError(f"`{where}.when.title_matches` is not a valid regular expression: {exc}") \
                from None
    labels = when.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise AgentConfigError(f"`{where}.when.labels` must be a list of label names")
    return AgentRule(_tool(rule["use"], f"{where}.use"), files_over, pattern, tuple(labels))


def _options(data: Any) -> dict[str, dict[str, str]]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AgentConfigError("`agents.options` must map tools to their options")
    out: dict[str, dict[str, str]] = {}
    for tool, options in data.items():
        _tool(tool, f"agents.options.{tool}")
        if not isinstance(options, dict):
            raise AgentConfigError(f"`agents.options.{tool}` must be a mapping")
        _no_unknown(options, _OPTION_KEYS, f"agents.options.{tool}")
        for key, value in options.items():
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise AgentConfigError(f"`agents.options.{tool}.{key}` must be a string or a number")
            if key == "model_timeout" and not _seconds(value):
                raise AgentConfigError(f"`agents.options.{tool}.model_timeout` must be a number of seconds above 0, "
                                       f"got {value!r}")
        out[tool] = {key: str(value) for key, value in options.items()}
    return out


def _seconds(value: str | float) -> bool:
    """Whether a value is a number of seconds above 0 (and below a day)."""
    try:
        return 0 < float(value) < 86400
    except ValueError:
        return False
