"""The real agent CLIs through the whole product: comment → worker → sandbox → checks → commit → tick → PR.

aider (against an OpenAI-compatible server), ollama (aider against an Ollama server) and claude (Claude
Code against an Anthropic Messages server) each complete a task against a scripted model server
(tests/model_servers.py), with the usage they report landing in the execution's budget and the task's
outcome; and each fails cleanly, `model_error` with the tool's own words, when its model server answers
HTTP 500, hangs, or answers nonsense. The tools run in the sandbox (bubblewrap where it works), reach
their server only through the egress proxy, and get their API keys from the vault.

Every scenario gets its repository and its server, and they overlap on one stack with a worker per
scenario: a failing model keeps its tool busy until the task's timeout (aider retries a failing model
for about a minute by itself), so one after another they would take minutes. Only their starts are
spaced (run_all), since a tool's start is what takes CPU.
The tools come from tests/fixtures/agents/install_real_agents.sh (`agent_tools`, tests/agent_tools.py).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from rq import Worker

import devstack
from clarity.models import Execution
from clarity.status import ExecutionStatus
from clarity.vault import Vault, generate_key
from tests.e2e import SETTLED, git, store_of, tasks_md
from tests.model_servers import AnthropicServer, Fault, OllamaServer, OpenAIServer, Script, ScriptedServer

pytestmark = pytest.mark.e2e

FAULT_TIMEOUT = "90s"  # the task's wall clock in the fault scenarios: each tool meets its model well before, even with
# two fleets of agents starting at once on 2 cores (xdist spreads this module over workers; each builds a fleet)
STARTING = 3  # tools starting at once (see run_all)
FLEET_SECONDS = 240  # for every execution to settle, at worst
MODEL_TIMEOUT = 3  # seconds one model request may take (`model_timeout`): a hung server fails well before that
SERVERS: dict[str, type[ScriptedServer]] = {"aider": OpenAIServer, "ollama": OllamaServer, "claude": AnthropicServer}
FAULTS = (Fault.HTTP_500, Fault.HANG, Fault.NONSENSE)
# What each tool says about its failing model, as the task's error quotes it.
SAYS = {
    ("aider", Fault.HTTP_500): "litellm.InternalServerError",
    ("aider", Fault.HANG): "litellm.Timeout",
    ("aider", Fault.NONSENSE): "litellm.",
    ("ollama", Fault.HTTP_500): "litellm.",
    ("ollama", Fault.HANG): "litellm.",
    ("ollama", Fault.NONSENSE): "litellm.",
    ("claude", Fault.HTTP_500): "HTTP 500",
    ("claude", Fault.HANG): "API Error",
    ("claude", Fault.NONSENSE): "API Error: JSON Parse error",
}


@dataclass
class Scenario:
    """One repository, its tool, its model server and how that server behaves; its execution once settled."""

    tool: str
    fault: Fault
    server: ScriptedServer
    execution: Execution | None = None

    @property
    def name(self) -> str:
        return self.tool if self.fault is Fault.NONE else f"{self.tool}-{self.fault}"

    @property
    def repo(self) -> str:
        return f"acme/{self.name.replace('_', '-')}"


@dataclass
class Fleet:
    """The stack and every scenario, run at once."""

    stack: devstack.Stack
    scenarios: dict[str, Scenario]

    def settled(self, name: str) -> Scenario:
        scenario = self.scenarios[name]
        assert scenario.execution is not None, f"{name}: no execution settled"
        return scenario


def repo_config(scenario: Scenario) -> str:
    """The scenario's `.github/clarity.yml`: its tool, pointed at its server (claude's through the vault)."""
    tool, url = scenario.tool, scenario.server.url
    options = {"aider": f"{{model: gpt-4o-mini, api_base: '{url}/v1'", "ollama": f"{{model: 'qwen2.5-coder:7b', "
               f"api_base: '{url}'", "claude": "{model: claude-sonnet-4-5"}[tool]
    lines = ["retries: 0", "agents:", f"  default: {tool}"]
    if scenario.fault is Fault.NONE:
        lines.append(f"  options: {{{tool}: {options}}}}}")
    else:
        lines.append(f"  options: {{{tool}: {options}, model_timeout: {MODEL_TIMEOUT}}}}}")
        lines.append(f"limits: {{timeout: {FAULT_TIMEOUT}}}")
    return "\n".join(lines) + "\n"


def vault_secrets(scenario: Scenario) -> dict[str, str]:
    """The scenario's per-customer secrets: an API key per tool, and claude's model server."""
    if scenario.tool == "claude":
        return {"ANTHROPIC_API_KEY": f"sk-ant-{scenario.name}-0123456789", "ANTHROPIC_BASE_URL": scenario.server.url}
    if scenario.tool == "aider":
        return {"OPENAI_API_KEY": f"sk-{scenario.name}-0123456789"}
    return {}


def start_fleet(redis_url: str, base: Path, tools: Path) -> Fleet:
    scenarios = {}
    for tool, server_type in SERVERS.items():
        for fault in (Fault.NONE, *FAULTS):
            server = server_type()
            server.reset(Script(fault=fault))
            scenario = Scenario(tool, fault, server)
            scenarios[scenario.name] = scenario
    allow = ",".join(s.server.endpoint for s in scenarios.values())
    stack = devstack.start(base / "stack", redis_url, namespace=f"real-{uuid.uuid4().hex[:8]}", extra_env={
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}", "CLARITY_SECRET_KEYS": generate_key(),
        "CLARITY_EGRESS_ALLOW": allow, "CLARITY_RETRY_BACKOFF": "0.05"})
    fleet = Fleet(stack, scenarios)
    try:
        for _ in range(len(scenarios) - 1):  # one step at a time per worker: a worker per scenario
            stack.start_worker(role="steps")
        vault = Vault(redis.Redis.from_url(stack.redis.url, decode_responses=True), stack.settings.namespace,
                      stack.settings.secret_keys)
        for scenario in scenarios.values():
            source = base / scenario.name
            (source / ".github").mkdir(parents=True)
            (source / "tasks_list.md").write_text(tasks_md(("1", "Write the greeting", False)))
            (source / "README.md").write_text("# greeting\n")
            (source / ".github" / "clarity.yml").write_text(repo_config(scenario))
            stack.create_repo(scenario.repo, source)
            stack.admin("PUT", f"/repos/{scenario.repo}/collaborators/ada", json={"permission": "write"})
            for variable, value in vault_secrets(scenario).items():
                vault.set(f"{variable}.{scenario.name}", value, scope=f"repo:{scenario.repo}")
        wait_for_workers(stack, len(scenarios))
        run_all(fleet)
    except BaseException:
        stop_fleet(fleet)
        raise
    return fleet


def wait_for_workers(stack: devstack.Stack, count: int) -> None:
    """Until every steps worker is up: their start-up (each imports the app) is not the tools' to share."""
    connection = redis.Redis.from_url(stack.redis.url)
    queue = f"{stack.settings.steps_queue}:"

    def up() -> bool:
        return sum(any(name.startswith(queue) for name in worker.queue_names())
                   for worker in Worker.all(connection=connection)) >= count

    devstack.wait_for(up, 60, interval=0.2, what=f"{count} steps workers (see {stack.base})")


def reached_model(scenario: Scenario) -> bool:
    return any(scenario.server.is_model_call(r.path, r.body) for r in list(scenario.server.requests))


def run_all(fleet: Fleet) -> None:
    """Comment `/clarity run` on every repository and wait until each execution settled.

    At most STARTING tools start at once (a scenario is through its start once its server heard from its tool):
    a tool's start costs seconds of CPU (aider imports litellm), and a fault scenario's clock (its task's
    timeout) must not run out while its tool waits for a core. The successes go first.
    """
    store = store_of(fleet.stack)
    waiting = sorted(fleet.scenarios.values(), key=lambda s: s.fault is not Fault.NONE)
    started: list[Scenario] = []
    deadline = time.monotonic() + FLEET_SECONDS
    while True:
        for scenario in started:
            found = store.executions(repo=scenario.repo) if scenario.execution is None else []
            if found and str(found[0].status) in SETTLED:
                scenario.execution = found[0]
        if all(s.execution is not None for s in fleet.scenarios.values()):
            return
        starting = [s for s in started if s.execution is None and not reached_model(s)]
        while waiting and len(starting) < STARTING:
            scenario = waiting.pop(0)
            fleet.stack.comment(scenario.repo, 1, "/clarity run", user="ada")
            started.append(scenario)
            starting.append(scenario)
        if time.monotonic() > deadline:
            left = [s.name for s in fleet.scenarios.values() if s.execution is None]
            raise TimeoutError(f"executions of {left} did not settle in {FLEET_SECONDS}s (see {fleet.stack.base})")
        time.sleep(0.2)


def stop_fleet(fleet: Fleet) -> None:
    for scenario in fleet.scenarios.values():
        scenario.server.stop()
    fleet.stack.forget()
    fleet.stack.stop()


@pytest.fixture(scope="module")
def fleet(redis_url: str, tmp_path_factory: pytest.TempPathFactory, agent_tools: Path) -> Iterator[Fleet]:
    """Every scenario run through one stack (started once for the module), settled."""
    running = start_fleet(redis_url, tmp_path_factory.mktemp("real-agents"), agent_tools)
    try:
        yield running
    finally:
        stop_fleet(running)


def artifact(fleet: Fleet, scenario: Scenario, name: str) -> str:
    assert scenario.execution is not None
    return (fleet.stack.settings.artifacts_dir / scenario.execution.id / "1" / "attempt-1" / name).read_text()


# -- a task done, its usage counted ------------------------------------------------------------------
def branch_file(fleet: Fleet, scenario: Scenario, path: str) -> str:
    return git(fleet.stack, "show", f"clarity/issue-1:{path}", repo=scenario.repo)


def assert_completed_through_the_product(fleet: Fleet, scenario: Scenario) -> None:
    """Completed: the tool's file committed on the branch, the task ticked, a PR opened, the tool recorded."""
    ex = scenario.execution
    assert ex is not None
    assert ex.status is ExecutionStatus.COMPLETED, (ex.reason, artifact(fleet, scenario, "agent.log"))
    assert branch_file(fleet, scenario, "done/1.txt") == "ok 1\n"
    assert "- [x] 1 Write the greeting" in branch_file(fleet, scenario, "tasks_list.md")
    assert git(fleet.stack, "log", "--format=%s", "clarity/issue-1", repo=scenario.repo).splitlines()[0] == \
        "clarity: 1 Write the greeting"
    pulls = [i for i in fleet.stack.admin("GET", "/state")["issues"]
             if i["repo"] == scenario.repo and i.get("pull") and i["pull"]["head_ref"] == "clarity/issue-1"]
    assert len(pulls) == 1, "no pull request was opened"
    assert store_of(fleet.stack).task(ex.id, "1").tool == scenario.tool


def assert_usage_landed(fleet: Fleet, scenario: Scenario, cost_per_answer: float) -> None:
    """The execution's budget holds what the server reported, and so does the task's outcome section."""
    ex = scenario.execution
    assert ex is not None
    answers = scenario.server.answered()
    assert answers, "the tool never asked its model"
    assert ex.tokens_used == scenario.server.tokens() == sum(a.usage.total for a in answers if a.usage)
    assert ex.cost_usd == pytest.approx(cost_per_answer * len(answers), rel=1e-6, abs=1e-12)
    outcome = branch_file(fleet, scenario, "task_outcomes.md")
    assert f"- Usage: {ex.tokens_used:,} tokens, ${ex.cost_usd:.4f} (as the agent reported it)" in outcome


def test_aider_completes_a_task_against_an_openai_compatible_server_and_its_usage_reaches_the_budget(
        fleet: Fleet) -> None:
    scenario = fleet.settled("aider")
    assert_completed_through_the_product(fleet, scenario)
    # gpt-4o-mini as litellm prices it: $0.15 per million tokens in, $0.60 out; 1200 in, 34 out per answer.
    assert_usage_landed(fleet, scenario, (1200 * 0.15 + 34 * 0.60) / 1e6)
    first = scenario.server.answered()[0]
    assert first.path == "/v1/chat/completions" and first.body["model"] == "gpt-4o-mini"
    assert first.headers["authorization"] == "Bearer sk-aider-0123456789"  # the repository's key, from the vault
    assert any("# Task 1: Write the greeting" in str(m["content"]) for m in first.body["messages"])
    assert "message_send" in artifact(fleet, scenario, "aider.analytics.jsonl")


def test_ollama_is_aider_against_an_ollama_server_and_its_tokens_reach_the_budget(fleet: Fleet) -> None:
    scenario = fleet.settled("ollama")
    assert_completed_through_the_product(fleet, scenario)
    assert_usage_landed(fleet, scenario, 0.0)  # a local model costs nothing
    assert {r.path for r in scenario.server.requests} >= {"/api/chat", "/api/show"}
    assert scenario.server.answered()[0].body["model"] == "qwen2.5-coder:7b"


def test_claude_writes_the_file_through_tool_use_and_its_usage_and_cost_reach_the_budget(fleet: Fleet) -> None:
    scenario = fleet.settled("claude")
    assert_completed_through_the_product(fleet, scenario)
    # claude-sonnet-4-5 as Claude Code prices it: $3 per million tokens in, $15 out.
    assert_usage_landed(fleet, scenario, (1200 * 3 + 34 * 15) / 1e6)
    answers = scenario.server.answered()
    assert len(answers) == 2  # the Write tool_use, then the final text after the tool's result
    assert answers[0].headers["x-api-key"] == "sk-ant-claude-0123456789"
    assert any(b.get("type") == "tool_result" for b in answers[1].body["messages"][-1]["content"])
    log = artifact(fleet, scenario, "agent.log")
    assert '"type":"result"' in log and '"is_error":false' in log


# -- a failing model: a named class, the tool's own words, never "internal error" ----------------------
@pytest.mark.parametrize("fault", FAULTS, ids=str)
@pytest.mark.parametrize("tool", list(SERVERS))
def test_a_failing_model_blocks_the_execution_with_model_error_in_the_tools_words(
        fleet: Fleet, tool: str, fault: Fault) -> None:
    scenario = fleet.settled(f"{tool}-{fault}")
    ex = scenario.execution
    assert ex is not None
    assert ex.status is ExecutionStatus.BLOCKED, ex.reason
    assert ex.reason == "task 1 failed after 1 attempts" and "internal error" not in ex.reason
    progress = store_of(fleet.stack).task(ex.id, "1")
    assert progress.error_class == "model_error", (progress.error_class, progress.last_error)
    assert progress.last_error.startswith(f"The agent `{tool}` "), progress.last_error
    assert "(model_error): its model failed: " in progress.last_error or \
        "finished without a usable answer from its model (model_error)" in progress.last_error, progress.last_error
    assert SAYS[(tool, fault)] in progress.last_error, progress.last_error
    assert scenario.server.requests, "the tool never reached its model server"
    assert not scenario.server.answered()
    assert ex.tokens_used == 0 and ex.cost_usd == 0
    comments = fleet.stack.admin("GET", "/state")["comments"]
    assert any(c["repo"] == scenario.repo and "Failure class: `model_error`" in c["body"] for c in comments), \
        [(c["repo"], c["body"][:200]) for c in comments]
