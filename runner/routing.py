"""Which tool runs a task, which tools follow it when it fails, and why: one pure decision.

Precedence for the first tool: the run's `tool X` > the task's `tool:` > the first matching
`agents.rules` entry > `agents.default` > the app's CLARITY_DEFAULT_AGENT. The chain goes on with
`agents.fallback` (first occurrence kept, the first tool left out). With `routing: adaptive` and
nothing more specific (no run override, no `tool:`, no rule), the default and the fallback tools
are ordered by their record in this repository (`adaptive_order`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from clarity.agentconfig import AgentRule, AgentsConfig
from clarity.tasklist import Task
from clarity.toolstats import ToolStats

EXPLORE_TRIES = 3  # a tool with fewer tries than this in a repo is tried before any ranking


@dataclass(frozen=True, slots=True)
class Route:
    """The tools to try in order (the first is the primary) and why the first was chosen."""

    chain: tuple[str, ...]
    why: str

    @property
    def primary(self) -> str:
        """The tool tried first."""
        return self.chain[0]

    def describe(self) -> str:
        """`tool aider (rule 2: title_matches ...)`, then the fallbacks: for logs and check runs."""
        rest = f"; fallback {', '.join(self.chain[1:])}" if len(self.chain) > 1 else ""
        return f"tool {self.primary} ({self.why}){rest}"


def route(task: Task, agents: AgentsConfig, app_default: str, override: str | None = None,
          labels: Sequence[str] | None = None, stats: Mapping[str, ToolStats] | None = None) -> Route:
    """Decide the tool chain of `task`. `labels`: the triggering issue's, None when unknown (label
    rules are then skipped); `stats`: this repository's record per tool (adaptive routing only)."""
    if override:
        return _with_fallback(override, "the run's `tool` option", agents.fallback)
    if task.tool:
        return _with_fallback(task.tool, f"task {task.id} says `tool: {task.tool}`", agents.fallback)
    for number, rule in enumerate(agents.rules, start=1):
        if rule_matches(rule, task, labels):
            return _with_fallback(rule.use, f"rule {number}: {rule.describe()}", agents.fallback)
    default, why = ((agents.default, "`agents.default`") if agents.default
                    else (app_default, "the app's default, CLARITY_DEFAULT_AGENT"))
    if agents.routing == "adaptive":
        return adaptive_order(_unique([default, *agents.fallback]), stats or {})
    return _with_fallback(default, why, agents.fallback)


def rule_matches(rule: AgentRule, task: Task, labels: Sequence[str] | None) -> bool:
    """Every condition of the rule holds; a label rule never matches when the labels are unknown."""
    if rule.files_over is not None and not len(task.files) > rule.files_over:
        return False
    if rule.title_matches is not None and not re.search(rule.title_matches, task.title):
        return False
    if rule.labels:
        if labels is None:
            return False
        wanted = {label.casefold() for label in rule.labels}
        if not any(label.casefold() in wanted for label in labels):
            return False
    return True


def adaptive_order(candidates: Sequence[str], stats: Mapping[str, ToolStats]) -> Route:
    """Order tools by their record: any with < EXPLORE_TRIES tries first (configured order), then the
    rest by Laplace-smoothed success rate (s+1)/(n+2), highest first; ties keep the configured order."""
    record = {tool: stats.get(tool, ToolStats()) for tool in candidates}
    explore = [tool for tool in candidates if record[tool].tries < EXPLORE_TRIES]
    ranked = sorted((tool for tool in candidates if tool not in explore),
                    key=lambda tool: (-record[tool].score, candidates.index(tool)))
    chain = (*explore, *ranked)
    first = chain[0]
    if explore:
        tries = record[first].tries
        why = f"adaptive: exploring {first}, {tries} {'try' if tries == 1 else 'tries'} here so far " \
              f"(< {EXPLORE_TRIES})"
    else:
        scores = ", ".join(f"{tool} {record[tool].score:.2f} ({record[tool].successes}/{record[tool].tries})"
                           for tool in ranked)
        why = f"adaptive: best smoothed success rate here: {scores}"
    return Route(chain, why)


def _with_fallback(primary: str, why: str, fallback: Iterable[str]) -> Route:
    return Route(_unique([primary, *fallback]), why)


def _unique(tools: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(tools))
