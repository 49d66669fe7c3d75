"""What real agent tools report about their runs (runner.agentreport), and what an attempt makes of it:
usage for the budget and the outcome, `model_error` when the tool's model failed it.

The parsers get the tools' real output shapes (copied from aider 0.86 and Claude Code 2.1 runs against
tests/model_servers.py) and hostile variations; the attempts run stand-ins for the tools, which print
what the real ones print, in the real sandbox (tests/test_real_agents.py drives the real tools).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from clarity.budget import Budget, Usage
from clarity.models import Execution
from clarity.store import Store
from clarity.tasklist import Task
from jobs import budgets
from jobs.attempts import AttemptPlan, TaskResult, attempt_task
from jobs.failures import ErrorClass, with_model
from runner import agentreport
from runner.agentreport import AgentReport
from runner.sandbox import Limits, LocalSandbox

# -- aider ------------------------------------------------------------------------------------------
SEND = {"event": "message_send", "properties": {"main_model": "openai/REDACTED", "edit_format": "whole",
                                                 "prompt_tokens": 1200, "completion_tokens": 34,
                                                 "total_tokens": 1234, "cost": 0.0002004, "total_cost": 0.0002004}}
ANALYTICS = "\n".join(json.dumps(e) for e in (
    {"event": "launched", "properties": {}}, {"event": "message_send_starting", "properties": {}}, SEND, SEND,
    {"event": "exit", "properties": {"reason": "Completed --message-file"}}))
AIDER_500 = """Aider v0.86.2
Model: openai/gpt-4o-mini with whole edit format

litellm.InternalServerError: InternalServerError: OpenAIException - the scripted
server failed
The API provider's servers are down or overloaded.
Retrying in 0.2 seconds...
litellm.InternalServerError: InternalServerError: OpenAIException - the scripted
server failed
The API provider's servers are down or overloaded.
Retrying in 0.5 seconds...
"""
AIDER_TRACEBACK = """litellm.APIConnectionError: Expecting value: line 1 column 1 (char 0)
Traceback (most recent call last):
  File "/opt/aider/lib/python3.11/site-packages/litellm/main.py", line 3909, in completion
Retrying in 0.2 seconds...
"""


@pytest.mark.parametrize(("analytics", "output", "expected"), [
    (ANALYTICS, "Tokens: 1.2k sent, 34 received. Cost: $0.00020 message, $0.00040 session.\n",
     AgentReport(2468, 0.0004008, "")),
    ("", AIDER_500, AgentReport(0, 0.0, "litellm.InternalServerError: InternalServerError: OpenAIException - the "
                                        "scripted server failed (the model failed 2 times)")),
    ("", AIDER_TRACEBACK, AgentReport(0, 0.0, "litellm.APIConnectionError: Expecting value: line 1 column 1 "
                                              "(char 0)")),
    # An error overcome: an answer (its usage line) came after it.
    (json.dumps(SEND), AIDER_500 + "Tokens: 1.2k sent, 34 received.\n", AgentReport(1234, 0.0002004, "")),
    # Hostile or broken logs count for nothing, and never raise.
    (('{"event": "message_send", "properties": {"prompt_tokens": -5, "completion_tokens": true, "cost": "NaN"}}\n'
     '{"event": "message_send", "properties": [1]}\n[1, 2]\n{"event": "message_send", "properties": '
     '{"prompt_tokens": 10, "cost": 1e999}}\n{not json'), "", AgentReport(10, 0.0, "")),
], ids=["usage", "http-500", "traceback-cut", "error-overcome", "hostile-log"])
def test_aider_reports_usage_from_its_analytics_log_and_the_model_error_it_was_left_with(
        analytics: str, output: str, expected: AgentReport) -> None:
    report = agentreport.read("aider", output, "", analytics)
    assert report.tokens == expected.tokens and report.model_error == expected.model_error
    assert report.cost_usd == pytest.approx(expected.cost_usd)
    assert agentreport.read("ollama", output, "", analytics) == report  # the ollama tool is aider


def test_an_endless_aider_error_is_cut() -> None:
    error = agentreport.aider("", "litellm.APIError: " + "x" * 10_000 + "\n").model_error
    assert len(error) == agentreport.MAX_ERROR_CHARS and error.endswith("…")


# -- claude -----------------------------------------------------------------------------------------
def result_event(**fields: object) -> str:
    base = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "result": "done",
            "total_cost_usd": 0.00822, "usage": {"input_tokens": 2400, "output_tokens": 68,
                                                 "cache_creation_input_tokens": 10, "cache_read_input_tokens": 5,
                                                 "server_tool_use": {"web_search_requests": 0}}}
    return json.dumps({**base, **fields})


INIT = json.dumps({"type": "system", "subtype": "init", "cwd": "/ws", "tools": ["Write"]})
RETRY = json.dumps({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10,
                    "error_status": 500, "error": "server_error"})
HUNG = json.dumps({"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, "error_status": None,
                   "error": "unknown"})
API_ERROR = result_event(is_error=True, terminal_reason="api_error", total_cost_usd=0, usage={},
                         result="API Error: JSON Parse error: Unrecognized token '<'")
TURN = json.dumps({"type": "assistant", "message": {"id": "msg_1", "usage": {"input_tokens": 1200,
                                                                              "output_tokens": 34}}})


@pytest.mark.parametrize(("output", "expected"), [
    (f"{INIT}\n{TURN}\n{TURN}\n{result_event()}\n", AgentReport(2483, 0.00822, "")),
    (f"{INIT}\n{API_ERROR}\n", AgentReport(0, 0.0, "API Error: JSON Parse error: Unrecognized token '<'")),
    # Another kind of error (turns ran out) is not the model's.
    (result_event(is_error=True, subtype="error_max_turns", result="max turns"), AgentReport(2483, 0.00822, "")),
    # Killed while retrying a failing model: the retries say it; the answers so far count (once per message).
    (f"{INIT}\n{TURN}\n{TURN}\n{RETRY}\n{RETRY}\n",
     AgentReport(1234, 0.0, "API Error: the model request failed (HTTP 500, server_error); Claude Code retried it "
                            "2 times")),
    (f"{INIT}\n{HUNG}\n", AgentReport(0, 0.0, "API Error: the model request failed (no answer, unknown); Claude "
                                              "Code retried it 1 time")),
    # A model cannot forge events: its words sit inside a line's JSON. Garbage lines are skipped.
    (('{"type": "assistant", "message": {"content": "{\\"type\\": \\"result\\", \\"is_error\\": true}"}}\nnot json\n'
     '{"type": "result", "usage": {"input_tokens": -1, "output_tokens": "9"}, "total_cost_usd": -3}\n'),
     AgentReport(0, 0.0, "")),
], ids=["usage", "api-error", "other-error", "killed-retrying", "killed-hung", "hostile"])
def test_claude_reports_usage_and_its_models_failure_from_its_stream_json_events(
        output: str, expected: AgentReport) -> None:
    report = agentreport.read("claude", output)
    assert (report.tokens, report.model_error) == (expected.tokens, expected.model_error)
    assert report.cost_usd == pytest.approx(expected.cost_usd)


def test_the_command_agent_reports_nothing() -> None:
    assert agentreport.read("command", result_event(), "", ANALYTICS) == AgentReport()


# -- the class ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("error_class", "model_failed", "expected"), [
    (ErrorClass.TIMEOUT, True, ErrorClass.MODEL_ERROR),
    (ErrorClass.AGENT_CRASHED, True, ErrorClass.MODEL_ERROR),
    (ErrorClass.CHECK_FAILED, True, ErrorClass.MODEL_ERROR),
    (ErrorClass.BUDGET, True, ErrorClass.BUDGET),  # the budget pauses the execution whatever the model did
    (ErrorClass.LIMIT, True, ErrorClass.LIMIT),
    (ErrorClass.INFRA, True, ErrorClass.INFRA),
    (ErrorClass.TIMEOUT, False, ErrorClass.TIMEOUT),
])
def test_a_failing_model_explains_timeouts_crashes_and_failed_checks_only(
        error_class: ErrorClass, model_failed: bool, expected: ErrorClass) -> None:
    assert with_model(error_class, model_failed) is expected


# -- attempts with stand-ins for the tools, in the real sandbox -------------------------------------------
CHECK = "grep -qx 'ok 1' done/1.txt"


def stand_in(tmp_path: Path, name: str, body: str) -> Path:
    """A program named like the tool, where the sandbox shows it (the artifacts folder it may write)."""
    program = tmp_path / "artifacts" / name
    program.parent.mkdir(parents=True, exist_ok=True)
    program.write_text(f"#!/bin/sh\n{body}")
    program.chmod(0o755)
    return program


def run_tool(tmp_path: Path, agent: str, program: Path, meter: budgets.Meter | None = None) -> TaskResult:
    workdir = tmp_path / "ws"
    workdir.mkdir()
    plan = AttemptPlan(task=Task(id="1", title="Greet", done=False, line=1), agent=agent,
                       agent_options={"executable": str(program), **({"model": "m"} if agent == "ollama" else {})},
                       checks=(CHECK,), workdir=workdir, artifacts=tmp_path / "artifacts" / "1", repo="a/b",
                       branch="b", limits=Limits(timeout=30), retries=0, backoff=0.0, meter=meter)
    return attempt_task(plan, LocalSandbox(writable=(tmp_path / "artifacts",)), threading.Event(), lambda *a: None)


def test_claude_whose_model_answers_nonsense_fails_with_model_error_in_its_own_words(tmp_path: Path) -> None:
    failed = API_ERROR.replace("'", "'\\''")
    result = run_tool(tmp_path, "claude", stand_in(tmp_path, "claude", f"echo '{INIT}'\necho '{failed}'\nexit 1\n"))
    assert (result.passed, result.error_class) == (False, "model_error")
    assert result.last_error.startswith("The agent `claude` exited with code 1 (model_error): its model failed: "
                                        "API Error: JSON Parse error: Unrecognized token '<'\n")


def test_aider_that_gave_up_on_its_model_leaves_failing_checks_explained_as_model_error(tmp_path: Path) -> None:
    printed = AIDER_500.replace("'", "'\\''")
    result = run_tool(tmp_path, "aider", stand_in(tmp_path, "aider", f"printf '%s' '{printed}'\nexit 0\n"))
    assert (result.passed, result.error_class) == (False, "model_error")
    assert result.last_error.startswith(
        "The agent `aider` finished without a usable answer from its model (model_error): its model failed: "
        "litellm.InternalServerError: InternalServerError: OpenAIException - the scripted server failed")
    assert f"Check `{CHECK}` failed" in result.last_error


def test_the_tools_own_usage_reaches_the_budget_and_the_task_result_unless_it_wrote_a_report(
        tmp_path: Path, store: Store) -> None:
    ex = store.create(Execution(id="", installation_id=1, repo="a/b", account="a", issue_number=1,
                                is_pull_request=False, branch="b", base_branch="main", requester="ada"), actor="t")
    meter = budgets.Meter(store, ex, Budget(), time.monotonic())
    # Like aider: its analytics log where the builder said (the argument after --analytics-log), then the file.
    body = ('while [ "$1" != --analytics-log ]; do shift; done\n'
            f"echo '{json.dumps(SEND)}' > \"$2\"\nmkdir -p done && echo 'ok 1' > done/1.txt\n")
    result = run_tool(tmp_path / "a", "ollama", stand_in(tmp_path / "a", "aider", body), meter)
    assert result.passed and result.usage == Usage(cost=0.0002004, tokens=1234)
    # A tool that writes Clarity's usage report is taken at its word over its own log.
    body += 'echo \'{"tokens": 7, "cost_usd": 0.5}\' > "$CLARITY_USAGE_FILE"\n'
    again = run_tool(tmp_path / "b", "aider", stand_in(tmp_path / "b", "aider", body), meter)
    assert again.usage == Usage(cost=0.5, tokens=7)
    after = store.get(ex.id)
    assert (after.tokens_used, round(after.cost_usd, 7)) == (1241, 0.5002004)
