"""One task's tools in turn: route, check each tool is installed, attempt, fall back, record stats.

Retry budget: every tool gets its own 1 + `retries` attempts (a fallback is a different tool, so the
primary's failures say little about it). The working tree is discarded before a fallback starts,
so each tool starts from the branch head; attempt numbers keep counting across tools (and across the
task's earlier rounds, `AttemptPlan.first_attempt`) in the task's record and its artifacts folders
(`attempt-N/`, one per attempt whatever tool ran it; `result.json` names the tool), while each tool's
prompt starts at attempt 1.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from githubkit import GitHub
from githubkit.exception import RequestFailed

from clarity import agentsecrets, budget
from clarity.agentconfig import NETWORKED, AgentsConfig
from clarity.models import Execution
from clarity.repoconfig import RepoConfig
from clarity.tasklist import Task
from clarity.toolstats import ToolStatsStore
from clarity.vault import Vault, VaultError
from github_app import repos
from github_app.client import describe_error
from jobs.attempts import AttemptPlan, Hook, TaskResult, attempt_task, exchange_of
from jobs.context import Engine
from runner import agents, egress, exchange, routing
from runner.agents import AgentError
from runner.routing import Route
from runner.sandbox import Sandbox

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolTry:
    """One tool's go at the task."""

    tool: str
    passed: bool
    attempts: int
    duration: float


@dataclass(frozen=True, slots=True)
class ChainResult:
    """How the task went over every tool: the last tool's result with attempts and time summed."""

    result: TaskResult
    tool: str  # the tool that ran last: the one that passed, when the task passed
    tries: tuple[ToolTry, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (tool, why it could not run)

    def summary(self) -> str:
        """`claude failed (4 attempts), command passed (1 attempt); skipped aider (...)`."""
        ran = ", ".join(f"{t.tool} {'passed' if t.passed else 'failed'} ({t.attempts} attempt"
                        f"{'' if t.attempts == 1 else 's'})" for t in self.tries)
        gone = "; ".join(f"skipped {tool} ({why})" for tool, why in self.skipped)
        return "; ".join(part for part in (ran, gone) if part)


@dataclass(frozen=True, slots=True)
class Edges:
    """What the chain does outside itself: log a line, reset the working tree, record a try."""

    say: Callable[[str], None]
    discard: Callable[[], None]
    record: Callable[[str, bool, float], None]


def options_for(tool: str, config: AgentsConfig, app_command: str) -> dict[str, str]:
    """A tool's builder options: the repo's `agents.options.<tool>`, and the command template."""
    options = dict(config.options.get(tool, {}))
    if tool == "command" and (config.command or app_command):
        options["command"] = config.command or app_command
    return options


def plan_for(plan: AttemptPlan, tool: str, ran_before: int, options: Mapping[str, str],
             keys: Mapping[str, str], attempts_before: int = 0) -> AttemptPlan:
    """The attempt plan of one tool: networked tools get their model APIs (through the egress proxy, nothing
    else), a writable HOME and the API keys. `attempts_before`: the attempts earlier tools made this round,
    so this tool's go on from them (`attempt-N/` folders are never shared)."""
    box = exchange_of(plan)
    if ran_before:
        box = box / f"fallback-{ran_before}-{tool}"
    first = plan.first_attempt + attempts_before
    if tool not in NETWORKED:
        return dataclasses.replace(plan, agent=tool, agent_options=options, exchange=box, agent_env={},
                                   first_attempt=first)
    models = egress.endpoints(agents.model_apis(tool, options, keys))  # all the network the tool gets
    home = box / "home"  # the run's to write, like the rest of its exchange folder; never the artifacts
    return dataclasses.replace(plan, agent=tool, agent_options=options, exchange=box,
                               limits=dataclasses.replace(plan.limits, network=True, egress=models),
                               agent_env={**keys, "HOME": str(home)}, first_attempt=first)


def run_chain(plan: AttemptPlan, route: Route, sandbox: Sandbox, cancel: threading.Event, on: Hook,
              edges: Edges, options: Callable[[str], dict[str, str]],
              keys: Mapping[str, str] | None = None) -> ChainResult:
    """Try the route's tools in order until one passes; raise AgentError when none can run at all."""
    tries: list[ToolTry] = []
    skipped: list[tuple[str, str]] = []
    last: TaskResult | None = None
    errors: list[str] = []
    used = budget.Usage()
    for tool in route.chain:
        tool_options = options(tool)
        missing = agents.available(tool, tool_options)
        if missing is not None:
            edges.say(f"tool {tool} cannot run here: {missing}; trying the next tool")
            skipped.append((tool, missing))
            continue
        if tries:
            edges.discard()  # the next tool starts from the branch head, not from the last one's edits
            edges.say(f"falling back to tool {tool} after {tries[-1].tool} failed")
        done = sum(t.attempts for t in tries)
        tool_plan = plan_for(plan, tool, len(tries), tool_options, keys or {}, done)
        try:
            result = _attempt(tool_plan, sandbox, cancel, _offset(on, done))
        except AgentError as exc:  # the tool cannot be built as configured (ollama without a model, say)
            edges.say(f"tool {tool} cannot run: {exc}; trying the next tool")
            skipped.append((tool, str(exc)))
            continue
        edges.record(tool, result.passed, result.duration)
        tries.append(ToolTry(tool, result.passed, result.attempts, result.duration))
        errors.extend(result.errors)
        used = budget.add(used, result.usage)
        last = result
        if result.passed:
            break
    if last is None:
        tried = "; ".join(f"{tool}: {why}" for tool, why in skipped)
        raise AgentError(f"no tool can run this task on this worker (tried {tried})")
    total = dataclasses.replace(last, attempts=sum(t.attempts for t in tries),
                                duration=sum(t.duration for t in tries), errors=tuple(errors), usage=used)
    return ChainResult(total, tries[-1].tool, tuple(tries), tuple(skipped))


def _offset(on: Hook, done: int) -> Hook:
    """The hook with attempt numbers counted across tools (the task's record), not per tool."""
    return lambda event, attempt, detail: on(event, done + attempt, detail)


def _attempt(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, on: Hook) -> TaskResult:
    home = plan.agent_env.get("HOME")
    if home:
        exchange.fresh(Path(home))
    try:
        return attempt_task(plan, sandbox, cancel, on)
    finally:
        if home:  # whatever a tool kept in its HOME (sessions, caches) never outlives its try
            shutil.rmtree(home, ignore_errors=True)


# -- the I/O the step needs around the chain ---------------------------------------------------
def choose(eng: Engine, ex: Execution, config: RepoConfig, task: Task, gh: GitHub) -> Route:
    """The task's route: issue labels read only when a rule needs them, stats only when adaptive."""
    labels: tuple[str, ...] | None = None
    if any(rule.labels for rule in config.agents.rules):
        try:
            labels = repos.issue_labels(gh, ex.repo, ex.issue_number)
        except RequestFailed as exc:
            log.warning("execution %s: labels of #%s unknown (%s): label rules skipped",
                        ex.id, ex.issue_number, describe_error(exc))
    stats = stats_store(eng).read(ex.repo) if config.agents.routing == "adaptive" else None
    return routing.route(task, config.agents, eng.settings.default_agent, ex.tool, labels, stats)


def stats_store(eng: Engine) -> ToolStatsStore:
    """The per-repository tool statistics of this deployment."""
    return ToolStatsStore(eng.store.r, eng.store.namespace)


def agent_keys(eng: Engine, ex: Execution) -> dict[str, str]:
    """The customer's model API keys for the agent's environment; none unless CLARITY_SECRET_KEYS is set."""
    if not eng.settings.secret_keys:
        return {}
    try:
        vault = Vault(eng.store.r, eng.store.namespace, eng.settings.secret_keys)
        return agentsecrets.agent_env(vault, ex.repo, ex.installation_id)
    except VaultError as exc:
        raise AgentError(f"the agent's API keys cannot be read: {exc}") from None
