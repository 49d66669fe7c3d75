"""The optional per-repository `.github/clarity.yml` (DESIGN §6), validated into a frozen value."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from clarity.agentconfig import AgentConfigError, AgentsConfig, parse_agents
from clarity.budget import Budget, BudgetError, parse_config

CONFIG_PATH = ".github/clarity.yml"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_KNOWN = {"tasks_file", "outcomes_file", "image", "setup", "gates", "agents", "retries", "on_failure",
          "limits", "notify", "managers", "allowed_commands", "check_timeout", "budget", "enabled",
          "maxParallelTasks"}
# Executions of one repository that run at once. The scheduler gives each repository one lease and
# each worker one workspace per repository (`<workspaces>/<owner>/<name>`), so two executions of a
# repository would share a working tree: `maxParallelTasks` above this is accepted and clamped.
PARALLEL_EXECUTIONS = 1
MAX_PARALLEL_TASKS = 100  # the largest `maxParallelTasks` read (beyond it is surely a typo)


class ConfigError(ValueError):
    """`.github/clarity.yml` is not valid; the message quotes the offending key."""


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """What a repository tells Clarity about itself; defaults work without a file."""

    tasks_file: str = "tasks_list.md"
    outcomes_file: str = "task_outcomes.md"
    image: str | None = None  # the docker sandbox's image; None: the app's CLARITY_DOCKER_IMAGE
    setup: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()  # post_task gates: after every task, with its checks (a plain list means these)
    pre_gates: tuple[str, ...] = ()  # before an execution's first task (each start or resume)
    post_execution_gates: tuple[str, ...] = ()  # when the execution reaches its stop point or completes
    allowed_commands: tuple[str, ...] = ()  # narrows CLARITY_COMMAND_ALLOWLIST; never widens it
    check_timeout: float | None = None  # each check's run, unless the check says `timeout=`
    agent_default: str | None = None
    agent_fallback: tuple[str, ...] = ()
    agent_command: str | None = None
    agents: AgentsConfig = field(default_factory=AgentsConfig)  # the whole `agents:` section (rules, routing, options)
    retries: int | None = None
    on_failure: str = "stop"
    timeout: float | None = None
    managers: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)  # every execution's limits unless it sets its own
    enabled: bool = True  # `enabled: false`: Clarity refuses to start or resume runs here (the PRD's key)
    max_parallel_tasks: int = 1  # the PRD's `maxParallelTasks` as written; `parallel_executions` is what runs
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def parallel_executions(self) -> int:
        """Executions of this repository that run at once: `maxParallelTasks`, clamped to what the scheduler runs."""
        return min(self.max_parallel_tasks, PARALLEL_EXECUTIONS)


def parse_duration(value: Any, key: str) -> float:
    """`15m`, `90s`, `1h`, `500ms` or a number of seconds → seconds."""
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"{CONFIG_PATH}: `{key}` must be a duration like 90s, 15m or 1h, got {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def parse(text: str | bytes | None) -> RepoConfig:
    """Parse and validate the YAML; None or empty means all defaults."""
    if not text:
        return RepoConfig()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{CONFIG_PATH}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_PATH}: expected a mapping of settings at the top level")
    agents = _mapping(data, "agents")
    try:
        agents_config = parse_agents(data.get("agents"))
    except AgentConfigError as exc:
        raise ConfigError(f"{CONFIG_PATH}: {exc}") from None
    limits = _mapping(data, "limits")
    on_failure = str(data.get("on_failure", "stop"))
    if on_failure not in ("stop", "continue"):
        raise ConfigError(f"{CONFIG_PATH}: `on_failure` must be `stop` or `continue`, got {on_failure!r}")
    try:
        budget = parse_config(data.get("budget"))
    except BudgetError as exc:
        raise ConfigError(f"{CONFIG_PATH}: {exc}") from None
    retries = data.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10):
        raise ConfigError(f"{CONFIG_PATH}: `retries` must be a whole number from 0 to 10, got {retries!r}")
    return RepoConfig(
        tasks_file=_path(data, "tasks_file", "tasks_list.md"),
        outcomes_file=_path(data, "outcomes_file", "task_outcomes.md"),
        image=_optional_str(data, "image") or None,
        setup=_strings(data, "setup"),
        **_gates(data),
        allowed_commands=_strings(data, "allowed_commands"),
        check_timeout=parse_duration(data["check_timeout"], "check_timeout") if "check_timeout" in data else None,
        agent_default=_optional_str(agents, "agents.default"),
        agent_fallback=_strings(agents, "fallback", prefix="agents."),
        agent_command=_optional_str(agents, "agents.command"),
        agents=agents_config,
        retries=retries,
        on_failure=on_failure,
        timeout=parse_duration(limits["timeout"], "limits.timeout") if "timeout" in limits else None,
        managers=_strings(data, "managers"),
        notify=_strings(data, "notify"),
        budget=budget,
        enabled=_enabled(data),
        max_parallel_tasks=_parallel(data),
        extra={k: v for k, v in data.items() if k not in _KNOWN},
    )


def _enabled(data: dict[str, Any]) -> bool:
    value = data.get("enabled", True)
    if not isinstance(value, bool):
        raise ConfigError(f"{CONFIG_PATH}: `enabled` must be true or false, got {value!r}")
    return value


def _parallel(data: dict[str, Any]) -> int:
    value = data.get("maxParallelTasks", 1)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PARALLEL_TASKS:
        raise ConfigError(f"{CONFIG_PATH}: `maxParallelTasks` must be a whole number from 1 to "
                          f"{MAX_PARALLEL_TASKS}, got {value!r}")
    return value


def _gates(data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """`gates:` as a list (post_task, the old form) or as `{pre, post_task, post_execution}`."""
    value = data.get("gates")
    if not isinstance(value, dict):
        return {"gates": _strings(data, "gates")}
    unknown = sorted(set(value) - {"pre", "post_task", "post_execution"})
    if unknown:
        raise ConfigError(f"{CONFIG_PATH}: `gates` must be a list of strings or a mapping of phases "
                          f"(pre, post_task, post_execution); `gates.{unknown[0]}` is not a phase")
    return {"pre_gates": _strings(value, "pre", prefix="gates."),
            "gates": _strings(value, "post_task", prefix="gates."),
            "post_execution_gates": _strings(value, "post_execution", prefix="gates.")}


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_PATH}: `{key}` must be a mapping")
    return value


def _strings(data: dict[str, Any], key: str, prefix: str = "") -> tuple[str, ...]:
    value = data.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{CONFIG_PATH}: `{prefix}{key}` must be a list of strings")
    return tuple(value)


def _optional_str(data: dict[str, Any], dotted: str) -> str | None:
    value = data.get(dotted.rsplit(".", 1)[-1])
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{CONFIG_PATH}: `{dotted}` must be a string")
    return value


def _path(data: dict[str, Any], key: str, default: str) -> str:
    value = str(data.get(key, default))
    if value.startswith("/") or ".." in value.split("/"):
        raise ConfigError(f"{CONFIG_PATH}: `{key}` must be a path inside the repository, got {value!r}")
    return value
