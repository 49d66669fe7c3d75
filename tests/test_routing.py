"""Agent choice and fallback: routing decisions, `agents:` validation, adaptive routing, the tool chain
with real subprocesses and Redis, per-customer API keys, and one whole-stack fallback."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import devstack
from clarity import agentsecrets, repoconfig
from clarity.agentconfig import TOOLS, AgentsConfig, parse_agents
from clarity.status import ExecutionStatus
from clarity.tasklist import Task
from clarity.toolstats import ToolStats, ToolStatsStore
from clarity.vault import SecretInfo, Vault, generate_key
from jobs.attempts import AttemptPlan, exchange_of
from jobs.toolchain import Edges, options_for, run_chain
from runner import agents
from runner.agents import AgentError
from runner.routing import Route, adaptive_order, route
from runner.sandbox import Limits, LocalConfig, LocalSandbox
from tests.conftest import AGENT
from tests.e2e import REPO, check_for, git, store_of, wait_settled

TASK = Task(id="1.2", title="Add CI workflow", done=False, line=3, files=("a.py", "b.py"))


def config(yaml_text: str) -> AgentsConfig:
    return repoconfig.parse(yaml_text).agents


# -- the decision ------------------------------------------------------------------------------
ROUTES = [
    # (agents yaml, task changes, run override, labels, expected chain, expected why)
    ("", {}, None, None, ("command",), "the app's default, CLARITY_DEFAULT_AGENT"),
    ("agents: {default: aider, fallback: [claude, aider, claude]}", {}, None, None,
     ("aider", "claude"), "`agents.default`"),
    ("agents: {default: aider, fallback: [claude]}", {"tool": "ollama"}, None, None,
     ("ollama", "claude"), "task 1.2 says `tool: ollama`"),
    ("agents: {default: aider, fallback: [claude]}", {"tool": "ollama"}, "claude", None,
     ("claude",), "the run's `tool` option"),
    ("agents: {default: aider, rules: [{when: {files_over: 2}, use: claude}]}", {}, None, None,
     ("aider",), "`agents.default`"),
    ("agents: {default: aider, rules: [{when: {files_over: 1}, use: claude}]}", {}, None, None,
     ("claude",), "rule 1: files_over 1"),
    (("agents: {rules: [{when: {title_matches: '(?i)scaffold'}, use: claude},"
     " {when: {title_matches: '(?i)ci\\b'}, use: ollama}], fallback: [command]}"), {}, None, None,
     ("ollama", "command"), "rule 2: title_matches `(?i)ci\\b`"),
    ("agents: {rules: [{when: {labels: [docs]}, use: claude}, {when: {files_over: 0}, use: aider}]}",
     {}, None, None, ("aider",), "rule 2: files_over 0"),  # labels unknown: the label rule is skipped
    ("agents: {rules: [{when: {labels: [docs]}, use: claude}, {when: {files_over: 0}, use: aider}]}",
     {}, None, ("bug", "Docs"), ("claude",), "rule 1: labels docs"),
    ("agents: {rules: [{when: {labels: [docs], files_over: 5}, use: claude}]}", {}, None, ("docs",),
     ("command",), "the app's default, CLARITY_DEFAULT_AGENT"),  # every condition must hold
    ("agents: {default: claude, fallback: [claude]}", {}, None, None, ("claude",), "`agents.default`"),
]


@pytest.mark.parametrize(("yaml_text", "changes", "override", "labels", "chain", "why"), ROUTES)
def test_routing_decisions(yaml_text: str, changes: dict[str, str], override: str | None,
                           labels: tuple[str, ...] | None, chain: tuple[str, ...], why: str) -> None:
    task = Task(**{**{f: getattr(TASK, f) for f in ("id", "title", "done", "line", "files")}, **changes})
    decided = route(task, config(yaml_text), "command", override, labels)
    assert (decided.chain, decided.why) == (chain, why)


def test_route_describes_itself_for_logs_and_check_runs() -> None:
    decided = route(TASK, config("agents: {rules: [{when: {title_matches: CI}, use: aider}], fallback: [claude]}"),
                    "command")
    assert decided.describe() == "tool aider (rule 1: title_matches `CI`); fallback claude"


def test_known_tools_are_the_agent_builders() -> None:
    assert TOOLS == tuple(sorted(agents.BUILDERS))


BAD_AGENTS = [
    ("agents: {defualt: aider}", "`agents.defualt` is not a known key; known: default, fallback, rules"),
    ("agents: {default: copilot}", "`agents.default` names unknown tool 'copilot'; known: aider, claude"),
    ("agents: {fallback: [claude, gpt]}", "`agents.fallback[1]` names unknown tool 'gpt'"),
    ("agents: {routing: smart}", "`agents.routing` must be `static` or `adaptive`, got 'smart'"),
    ("agents: {rules: [{when: {title_matches: '(unclosed'}, use: aider}]}",
     "`agents.rules[1].when.title_matches` is not a valid regular expression: missing ), unterminated"),
    ("agents: {rules: [{when: {files_over: 1}, use: aider}, {when: {file_count: 2}, use: aider}]}",
     "`agents.rules[2].when.file_count` is not a known key; known: files_over, title_matches, labels"),
    ("agents: {rules: [{when: {files_over: -1}, use: aider}]}", "`agents.rules[1].when.files_over` must be"),
    ("agents: {rules: [{when: {files_over: 1}}]}", "`agents.rules[1].use` is missing"),
    ("agents: {rules: [{when: {files_over: 1}, use: gemini}]}", "`agents.rules[1].use` names unknown tool"),
    ("agents: {rules: [{use: aider}]}", "`agents.rules[1].when` must be a mapping"),
    ("agents: {rules: [{when: {labels: [1]}, use: aider}]}", "`agents.rules[1].when.labels` must be a list"),
    ("agents: {options: {ollama: {executable: /bin/sh}}}",
     "`agents.options.ollama.executable` is not a known key; known: model, api_base"),
    ("agents: {options: {copilot: {model: x}}}", "`agents.options.copilot` names unknown tool"),
    ("agents: {options: {claude: {model_timeout: soon}}}",
     "`agents.options.claude.model_timeout` must be a number of seconds above 0, got 'soon'"),
    ("agents: {options: {aider: {model_timeout: 0}}}", "`agents.options.aider.model_timeout` must be a number"),
]


@pytest.mark.parametrize(("yaml_text", "message"), BAD_AGENTS)
def test_invalid_agents_config_names_the_key(yaml_text: str, message: str) -> None:
    with pytest.raises(repoconfig.ConfigError) as caught:
        repoconfig.parse(yaml_text)
    assert str(caught.value).startswith(".github/clarity.yml: ")
    assert message in str(caught.value)


def test_full_agents_section_parses() -> None:
    parsed = parse_agents({"default": "aider", "fallback": "claude", "routing": "adaptive",
                           "rules": [{"when": {"labels": "docs"}, "use": "command"}],
                           "options": {"ollama": {"model": "qwen2.5-coder:7b", "api_base": "http://gpu:11434"},
                                       "claude": {"max_turns": 30}}})
    assert parsed.fallback == ("claude",) and parsed.routing == "adaptive"
    assert parsed.rules[0].labels == ("docs",)
    assert parsed.options == {"ollama": {"model": "qwen2.5-coder:7b", "api_base": "http://gpu:11434"},
                              "claude": {"max_turns": "30"}}
    assert options_for("ollama", parsed, "") == {"model": "qwen2.5-coder:7b", "api_base": "http://gpu:11434"}
    assert options_for("command", parsed, "python3 a.py {prompt_file}") == {"command": "python3 a.py {prompt_file}"}
    assert options_for("command", parsed, "") == {}


# -- adaptive routing ----------------------------------------------------------------------------
ADAPTIVE = [
    ({}, ("aider", "claude", "command"), "adaptive: exploring aider, 0 tries here so far (< 3)"),
    ({"aider": ToolStats(3, 0)}, ("claude", "command", "aider"), "adaptive: exploring claude, 0 tries"),
    ({"aider": ToolStats(1, 2), "claude": ToolStats(2, 1), "command": ToolStats(3, 0)},
     ("command", "claude", "aider"),
     "adaptive: best smoothed success rate here: command 0.80 (3/3), claude 0.60 (2/3), aider 0.40 (1/3)"),
    ({"aider": ToolStats(2, 1), "claude": ToolStats(2, 1), "command": ToolStats(1, 2)},
     ("aider", "claude", "command"), "adaptive: best smoothed success rate here: aider 0.60"),  # tie: order
    ({"aider": ToolStats(9, 1), "claude": ToolStats(1, 1), "command": ToolStats(0, 3)},
     ("claude", "aider", "command"), "adaptive: exploring claude, 2 tries here so far (< 3)"),
]


@pytest.mark.parametrize(("stats", "chain", "why"), ADAPTIVE)
def test_adaptive_order_explores_then_ranks_by_smoothed_success(stats: dict[str, ToolStats],
                                                                chain: tuple[str, ...], why: str) -> None:
    decided = adaptive_order(("aider", "claude", "command"), stats)
    assert decided.chain == chain
    assert decided.why.startswith(why)


def test_adaptive_routing_applies_only_when_nothing_more_specific_decides() -> None:
    agents_config = config("agents: {default: aider, fallback: [claude], routing: adaptive,"
                           " rules: [{when: {title_matches: docs}, use: command}]}")
    good = {"aider": ToolStats(0, 5), "claude": ToolStats(5, 0)}
    assert route(TASK, agents_config, "command", stats=good).chain == ("claude", "aider")
    assert route(TASK, agents_config, "command", override="aider", stats=good).chain == ("aider", "claude")
    docs = Task(id="2", title="Write docs", done=False, line=9)
    assert route(docs, agents_config, "command", stats=good).chain == ("command", "claude")


def simulate(success: dict[str, float], tasks: int, seed: int) -> list[str]:
    """Each task: route, then run the chain until a tool passes (with the given chance); record each try."""
    rng = random.Random(seed)
    agents_config = AgentsConfig(default="aider", fallback=("claude",), routing="adaptive")
    stats: dict[str, ToolStats] = {}
    primaries = []
    for _ in range(tasks):
        decided = route(TASK, agents_config, "command", stats=stats)
        primaries.append(decided.primary)
        for tool in decided.chain:
            passed = rng.random() < success[tool]
            stats[tool] = stats.get(tool, ToolStats()).after(passed, 1.0)
            if passed:
                break
    return primaries


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_adaptive_routing_converges_to_the_better_tool(seed: int) -> None:
    primaries = simulate({"aider": 0.3, "claude": 0.8}, tasks=200, seed=seed)
    assert primaries[0] == "aider"  # untried: the configured order explores first
    assert primaries[-50:].count("claude") >= 45, primaries[-50:]


def test_adaptive_routing_keeps_the_default_when_it_is_the_better_tool() -> None:
    primaries = simulate({"aider": 0.9, "claude": 0.2}, tasks=200, seed=7)
    assert primaries[-50:].count("aider") >= 45


# -- stats in Redis ------------------------------------------------------------------------------
def test_tool_stats_add_up_in_redis(redis_client: redis.Redis, namespace: str) -> None:
    stats = ToolStatsStore(redis_client, namespace)
    stats.record("acme/app", "aider", True, 2.5)
    stats.record("acme/app", "aider", False, 1.5)
    stats.record_for("acme/app")("claude", True, 4.0)
    stats.record("other/repo", "aider", True, 1.0)
    assert stats.read("acme/app") == {"aider": ToolStats(1, 1, 4.0), "claude": ToolStats(1, 0, 4.0)}
    assert stats.read("acme/app")["aider"].mean_seconds == 2.0
    assert stats.read("nobody/here") == {}


# -- the chain with real subprocesses ------------------------------------------------------------
@pytest.fixture
def visible_bin() -> Iterator[Path]:
    """A directory for fake agent programs that a bubblewrapped run can see: not under /tmp, which
    bwrap replaces with a private one (a real worker's tools live in /usr/bin or /usr/local/bin)."""
    folder = Path(__file__).resolve().parents[1] / ".pytest_cache" / f"clarity-bin-{uuid.uuid4().hex[:10]}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fake_bin(visible_bin: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`visible_bin` first on this process's PATH (and nothing else there named like an agent)."""
    monkeypatch.setenv("PATH", f"{visible_bin}{os.pathsep}{os.environ['PATH']}")
    return visible_bin


def fake_claude(folder: Path, body: str) -> None:
    script = folder / "claude"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)


def chain_plan(tmp_path: Path, title: str = "Do it", retries: int = 0,
               extra_checks: tuple[str, ...] = ()) -> AttemptPlan:
    workdir = tmp_path / "ws"
    workdir.mkdir(exist_ok=True)
    task = Task(id="1", title=title, done=False, line=1, checks=(check_for("1").removeprefix("check: "),))
    return AttemptPlan(task=task, agent="command", agent_options={}, checks=task.checks + extra_checks,
                       workdir=workdir, artifacts=tmp_path / "artifacts", repo="acme/app", branch="b",
                       limits=Limits(timeout=30), retries=retries, backoff=0.0)


class Recorder:
    """The chain's edges, recorded; stats go to real Redis."""

    def __init__(self, stats: ToolStatsStore, workdir: Path) -> None:
        self.lines: list[str] = []
        self.discards = 0
        self.events: list[tuple[str, int]] = []
        self.edges = Edges(say=self.lines.append, discard=self._discard, record=stats.record_for("acme/app"))
        self.workdir = workdir

    def _discard(self) -> None:
        self.discards += 1
        for path in (self.workdir / "done").glob("*"):
            path.unlink()

    def on(self, event: str, attempt: int, detail: str) -> None:
        self.events.append((event, attempt))


COMMAND = f"{sys.executable} {AGENT} {{prompt_file}}"


def run(plan: AttemptPlan, chain: tuple[str, ...], recorder: Recorder, keys: dict[str, str] | None = None,
        command: str = COMMAND) -> object:
    agents_config = AgentsConfig(options={"ollama": {}})
    exchange_of(plan).mkdir(parents=True, exist_ok=True)  # as jobs.sandboxes.for_task makes it
    # The test agent lives in tests/fixtures: shown as the operator's tools are (jobs.sandboxes.operator_tools).
    sandbox = LocalSandbox(writable=(exchange_of(plan),), config=LocalConfig(tools=(AGENT,)))
    return run_chain(plan, Route(chain, "test"), sandbox, threading.Event(),
                     recorder.on, recorder.edges, lambda tool: options_for(tool, agents_config, command), keys)


def test_primary_failing_its_checks_falls_back_and_stats_are_recorded(
        tmp_path: Path, fake_bin: Path, redis_client: redis.Redis, namespace: str) -> None:
    fake_claude(fake_bin, 'echo "fake claude ran"\n'
                          'mkdir -p done && echo "wrong $CLARITY_TASK_ID" > "done/$CLARITY_TASK_ID.txt"\n')
    stats = ToolStatsStore(redis_client, namespace)
    plan = chain_plan(tmp_path, retries=1)
    recorder = Recorder(stats, plan.workdir)
    ran = run(plan, ("claude", "command"), recorder)
    assert ran.tool == "command" and ran.result.passed  # type: ignore[attr-defined]
    assert ran.result.attempts == 3  # type: ignore[attr-defined]  # claude twice, then command once
    assert ran.summary() == "claude failed (2 attempts), command passed (1 attempt)"  # type: ignore[attr-defined]
    assert recorder.discards == 1
    assert recorder.lines == ["falling back to tool command after claude failed"]
    assert [n for event, n in recorder.events if event == "attempt"] == [1, 2, 3]
    assert "fake claude ran" in (plan.artifacts / "attempt-2" / "agent.log").read_text()
    assert "ok 1" in (plan.workdir / "done" / "1.txt").read_text()
    # One folder per attempt, numbered on across tools: the fallback's first attempt is the task's third.
    assert json.loads((plan.artifacts / "attempt-3" / "result.json").read_text())["tool"] == "command"
    assert json.loads((plan.artifacts / "attempt-2" / "result.json").read_text())["tool"] == "claude"
    assert not (plan.artifacts / "fallback-1-command").exists()
    assert not (exchange_of(plan) / "home").exists()  # claude's HOME went with its try
    read = stats.read("acme/app")
    assert (read["claude"].successes, read["claude"].failures) == (0, 1)
    assert (read["command"].successes, read["command"].failures) == (1, 0)
    assert read["command"].seconds > 0


def test_a_missing_tool_is_skipped_with_a_log_line(tmp_path: Path, fake_bin: Path,
                                                    redis_client: redis.Redis, namespace: str) -> None:
    plan = chain_plan(tmp_path)
    recorder = Recorder(ToolStatsStore(redis_client, namespace), plan.workdir)
    ran = run(plan, ("claude", "ollama", "command"), recorder)
    assert ran.tool == "command" and ran.result.passed  # type: ignore[attr-defined]
    assert recorder.lines[0] == ("tool claude cannot run here: claude is not installed on this worker "
                                 "(not on PATH); trying the next tool")
    assert recorder.lines[1].startswith("tool ollama cannot run here: aider is not installed")
    assert recorder.discards == 0
    assert (plan.artifacts / "attempt-1" / "prompt.md").is_file()  # the first tool that ran keeps the folder
    assert set(ToolStatsStore(redis_client, namespace).read("acme/app")) == {"command"}


def test_no_tool_available_blocks_listing_what_was_tried(tmp_path: Path, fake_bin: Path,
                                                         redis_client: redis.Redis, namespace: str) -> None:
    plan = chain_plan(tmp_path)
    recorder = Recorder(ToolStatsStore(redis_client, namespace), plan.workdir)
    with pytest.raises(AgentError) as caught:
        run(plan, ("claude", "command"), recorder, command="")
    assert str(caught.value) == (
        "no tool can run this task on this worker (tried claude: claude is not installed on this worker "
        "(not on PATH); command: the command agent needs a `command` template, e.g. "
        "`python3 agent.py {prompt_file}`)")


def test_a_tool_that_cannot_be_built_is_skipped(tmp_path: Path, fake_bin: Path,
                                                redis_client: redis.Redis, namespace: str) -> None:
    (fake_bin / "aider").write_text("#!/bin/sh\nexit 0\n")
    (fake_bin / "aider").chmod(0o755)
    plan = chain_plan(tmp_path)
    recorder = Recorder(ToolStatsStore(redis_client, namespace), plan.workdir)
    ran = run(plan, ("ollama", "command"), recorder)
    assert ran.tool == "command"  # type: ignore[attr-defined]
    assert recorder.lines[0] == ("tool ollama cannot run: the ollama agent needs a `model`, e.g. "
                                 "`qwen2.5-coder:7b`; trying the next tool")


def test_api_keys_reach_the_networked_agent_only_never_the_checks(
        tmp_path: Path, fake_bin: Path, redis_client: redis.Redis, namespace: str) -> None:
    seen = tmp_path / "artifacts.exchange" / "seen"  # in the run's writable folder: bwrap hides the rest of /tmp
    seen.mkdir(parents=True)
    fake_claude(fake_bin, f'echo "$ANTHROPIC_API_KEY" > {seen}/claude.key\n'
                          f'touch "$HOME/state" && echo "$HOME" > {seen}/claude.home\n'
                          'mkdir -p done && echo "ok $CLARITY_TASK_ID" > "done/$CLARITY_TASK_ID.txt"\n')
    # The gate records what a check sees; the command agent must not see the key either (it is offline).
    plan = chain_plan(tmp_path, extra_checks=(f'echo "key=${{ANTHROPIC_API_KEY:-}}" > {seen}/check.key',))
    vault = Vault(redis_client, namespace, [generate_key()])
    vault.set("ANTHROPIC_API_KEY.acme", "sk-ant-test-0123456789", scope="repo:acme/app")
    vault.set("ANTHROPIC_API_KEY.other", "sk-ant-other-999", scope="repo:other/app")
    keys = agentsecrets.agent_env(vault, "acme/app", 7)
    assert keys == {"ANTHROPIC_API_KEY": "sk-ant-test-0123456789"}
    recorder = Recorder(ToolStatsStore(redis_client, namespace), plan.workdir)
    ran = run(plan, ("claude",), recorder, keys)
    assert ran.result.passed, ran.result.last_error  # type: ignore[attr-defined]
    assert (seen / "claude.key").read_text() == "sk-ant-test-0123456789\n"
    assert (seen / "claude.home").read_text().strip() == str(exchange_of(plan) / "home")
    assert (seen / "check.key").read_text() == "key=\n"
    assert "sk-ant-test" not in (plan.artifacts / "attempt-1" / "agent.log").read_text()


def test_agent_keys_come_from_the_repo_or_installation_scope_only() -> None:
    infos = [SecretInfo("ANTHROPIC_API_KEY", "global", 0, "", 1),
             SecretInfo("ANTHROPIC_API_KEY.inst", "installation:7", 0, "", 1),
             SecretInfo("OPENAI_API_KEY.b", "installation:7", 0, "", 1),
             SecretInfo("OPENAI_API_KEY.a", "repo:acme/app", 0, "", 1),
             SecretInfo("OLLAMA_API_BASE", "installation:8", 0, "", 1),
             SecretInfo("GITHUB_TOKEN", "repo:acme/app", 0, "", 1),
             SecretInfo("CLARITY_TASK_ID", "repo:acme/app", 0, "", 1)]
    assert agentsecrets.choose(infos, "acme/app", 7) == {"ANTHROPIC_API_KEY": "ANTHROPIC_API_KEY.inst",
                                                         "OPENAI_API_KEY": "OPENAI_API_KEY.a"}
    assert agentsecrets.choose(infos, "acme/app", 8) == {"OLLAMA_API_BASE": "OLLAMA_API_BASE",
                                                         "OPENAI_API_KEY": "OPENAI_API_KEY.a"}


# -- the whole stack ------------------------------------------------------------------------------
@pytest.fixture
def routed_stack(redis_url: str, tmp_path: Path, visible_bin: Path) -> Iterator[devstack.Stack]:
    """The stack with a fake `claude` on the worker's PATH (it writes the wrong answer) and a vault key."""
    folder = visible_bin
    fake_claude(folder, 'echo "fake claude: key=$ANTHROPIC_API_KEY"\n'
                        'mkdir -p done && echo "wrong $CLARITY_TASK_ID" > "done/$CLARITY_TASK_ID.txt"\n')
    key = generate_key()
    running = devstack.start(tmp_path / "stack", redis_url, agent_command=COMMAND,
                             namespace=f"e2e-{os.urandom(4).hex()}",
                             extra_env={"CLARITY_RETRY_BACKOFF": "0.05", "CLARITY_SECRET_KEYS": key,
                                        "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})
    try:
        yield running
    finally:
        running.forget()
        running.stop()


@pytest.mark.e2e
def test_primary_fails_its_checks_and_the_fallback_passes_end_to_end(routed_stack: devstack.Stack,
                                                                     tmp_path: Path) -> None:
    stack = routed_stack
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    Vault(client, stack.settings.namespace, stack.settings.secret_keys).set(
        "ANTHROPIC_API_KEY.widgets", "sk-ant-e2e-secret-42", scope=f"repo:{REPO}")
    source = tmp_path / "src"
    (source / ".github").mkdir(parents=True)
    (source / "tasks_list.md").write_text("# Tasks\n\n- [ ] 1 Build the widget\n  - " + check_for("1") + "\n")
    (source / ".github" / "clarity.yml").write_text(  # the gate fails if a check could see the key
        "retries: 0\ngates: ['test -z \"${ANTHROPIC_API_KEY:-}\"']\n"
        "agents: {default: claude, fallback: [aider, command]}\n")
    stack.create_repo(REPO, source)
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    store = store_of(stack)
    progress = store.task(ex.id, "1")
    assert (progress.tool, progress.attempts) == ("command", 2)
    lines = [entry["message"] for entry in store.log_lines(ex.id, 500) if entry["kind"] == "log"]
    assert "task 1: tool claude (`agents.default`); fallback aider, command" in lines
    assert any(line.startswith("task 1: tool aider cannot run here: aider is not installed") for line in lines)
    assert "task 1: falling back to tool command after claude failed" in lines
    assert any("claude failed (1 attempt), command passed (1 attempt); skipped aider" in line for line in lines)
    claude_log = (stack.settings.artifacts_dir / ex.id / "1" / "attempt-1" / "agent.log").read_text()
    assert "fake claude: key=" in claude_log and "sk-ant-e2e-secret-42" not in claude_log
    stats = ToolStatsStore(client, stack.settings.namespace).read(REPO)
    assert (stats["claude"].failures, stats["command"].successes) == (1, 1)
    assert "- Tool: command" in git(stack, "show", "clarity/issue-1:task_outcomes.md")
    [run_check] = [r for r in stack.admin("GET", "/state")["check_runs"] if r["name"] == "Clarity: 1 Build the widget"]
    assert run_check["conclusion"] == "success"
