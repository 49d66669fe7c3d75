"""One task, attempted up to 1 + retries times: agent in the sandbox, then acceptance checks.

Pure of GitHub: the step reports; this module only runs things and says what happened.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clarity import artifacts, budget
from clarity.budget import Usage
from clarity.redaction import redact
from clarity.tasklist import Task
from jobs.budgets import USAGE_ENV, USAGE_FILE, Meter
from jobs.failures import ErrorClass, classify_checks, classify_run, with_model
from runner import agentreport, agents, checks, exchange
from runner.agentreport import AgentReport
from runner.allowlist import Allowlist
from runner.checks import ALLOW_ALL, CheckResult
from runner.sandbox import Limits, Result, Sandbox

ERROR_CHARS = 6000
# From the exchange folder into the artifacts: what aider leaves beside the prompt.
TAKEN_OUT = ("aider.chat.history.md", "aider.input.history", agents.AIDER_ANALYTICS_LOG)
REPORT_MAX_BYTES = 1024 * 1024  # of a tool's own log read for its usage (aider's analytics)
# Of the agent's output quoted after a model error: the task's record keeps an error's last 2,000 characters,
# and the line that names the model's failure must stay in it.
MODEL_OUTPUT_CHARS = 1200
ARTIFACT_MAX_BYTES = artifacts.DEFAULT_MAX_BYTES  # a name of its own: AttemptPlan has a field `artifacts`


class Cancelled(Exception):
    """A stop was asked for while the task ran."""


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    """Everything needed to attempt one task."""

    task: Task
    agent: str
    agent_options: Mapping[str, str]
    checks: tuple[str, ...]
    workdir: Path
    artifacts: Path
    repo: str
    branch: str
    limits: Limits
    retries: int
    backoff: float
    diff: Callable[[], str] | None = None  # the workspace's uncommitted patch, saved as each attempt's diff.patch
    max_artifact_bytes: int = ARTIFACT_MAX_BYTES
    agent_env: Mapping[str, str] = field(default_factory=dict)  # the agent's extra variables (API keys, HOME)
    allow: Allowlist = ALLOW_ALL  # the command allowlist: the agent's program and every check's commands
    check_timeout: float | None = None  # each check's run, unless the check says `timeout=` (repo check_timeout)
    meter: Meter | None = None  # the execution's budget: checked before each attempt, caps the agent's clock
    # The one folder the sandbox may write besides the workspace (prompt in, usage out); None: `exchange`
    # beside the artifacts folder (for callers that hand the sandbox no other writable place).
    exchange: Path | None = None
    # The task's number for this plan's first attempt: attempts count on across rounds (a retry, a replay, a
    # recovered step) and tools, so each one's evidence has a folder of its own (`attempt-<n>/`, never reused).
    first_attempt: int = 1

    def number(self, attempt: int) -> int:
        """The task's number for this plan's `attempt` (1 = its first)."""
        return self.first_attempt + attempt - 1


@dataclass(frozen=True, slots=True)
class TaskResult:
    """How the task went over all attempts."""

    passed: bool
    attempts: int
    duration: float
    checks: tuple[CheckResult, ...] = ()
    last_error: str = ""
    agent_output: str = ""
    errors: tuple[str, ...] = field(default_factory=tuple)
    error_class: str = ""  # jobs.failures.ErrorClass of the last failed attempt
    error_classes: tuple[str, ...] = ()  # one per failed attempt, in order
    usage: Usage = field(default_factory=Usage)  # tokens and dollars the agent reported, over every attempt
    # How the last attempt's agent ended when it did not finish (so its checks never ran): "crashed",
    # "timed out", ... and its exit code; "" and None when the agent finished.
    agent_stop: str = ""
    agent_exit: int | None = None


@dataclass(frozen=True, slots=True)
class Attempted:
    """One attempt's end: its error (None: passed) and class, the agent's output tail, the checks, the usage."""

    error: str | None
    error_class: str
    output: str
    checks: tuple[CheckResult, ...]
    usage: Usage
    agent_stop: str = ""  # as TaskResult's
    agent_exit: int | None = None


Hook = Callable[[str, int, str], None]  # (event, attempt, detail): "attempt", "verifying", "failed"


def attempt_task(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, on: Hook) -> TaskResult:
    """Run the agent and the checks until they pass or retries run out; raise Cancelled on stop."""
    started = time.monotonic()
    previous_error: str | None = None
    errors: list[str] = []
    classes: list[str] = []
    results: tuple[CheckResult, ...] = ()
    output = ""
    used = Usage()
    done: Attempted | None = None
    for attempt in range(1, plan.retries + 2):
        _raise_if(cancel)
        if plan.meter is not None:
            plan.meter.check()  # raises jobs.budgets.Exhausted: the step pauses the execution
        on("attempt", attempt, "")
        done = _one_attempt(plan, sandbox, cancel, attempt, previous_error, classes[-1] if classes else "", on)
        error, error_class, output, results = done.error, done.error_class, done.output, done.checks
        used = budget.add(used, done.usage)
        if error is None:
            return TaskResult(True, attempt, time.monotonic() - started, results, "", output, tuple(errors),
                              error_classes=tuple(classes), usage=used)
        if error_class == ErrorClass.BUDGET and plan.meter is not None:
            plan.meter.check(out_of_time=True)  # the budget's clock killed the agent: pause, never retry
        errors.append(error)
        classes.append(error_class)
        previous_error = error
        on("failed", attempt, error)
        if error_class == ErrorClass.INFRA:
            break  # a missing tool or a failing machine: another attempt would fail the same way
        if attempt <= plan.retries and cancel.wait(min(plan.backoff * 2 ** (attempt - 1), 60.0)):
            raise Cancelled()
    return TaskResult(False, len(classes), time.monotonic() - started, results,
                      errors[-1] if errors else "", output, tuple(errors), classes[-1] if classes else "",
                      tuple(classes), used, done.agent_stop if done else "", done.agent_exit if done else None)


def _one_attempt(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, attempt: int,
                 previous_error: str | None, previous_class: str, on: Hook) -> Attempted:
    """One attempt: the agent in the sandbox, then (when it exited well) the acceptance checks."""
    number = plan.number(attempt)
    folder = plan.artifacts / f"attempt-{number}"  # the evidence: the worker's alone, one folder per attempt
    folder.mkdir(parents=True, exist_ok=True)
    box = exchange.fresh(exchange_of(plan) / f"attempt-{number}")  # the run's: emptied by us first
    agent_task = agents.AgentTask(
        task_id=plan.task.id, title=plan.task.title, description=plan.task.description,
        checks=plan.task.checks, files=plan.task.files, attempt=attempt, previous_error=previous_error,
        repo=plan.repo, branch=plan.branch, error_class=previous_class)
    prompt = _hand_in(agents.write_prompt(folder / "prompt.md", agent_task), box, plan.max_artifact_bytes)
    try:
        invocation = agents.build(plan.agent, agent_task, prompt, plan.workdir, plan.agent_options)
        refused = plan.allow.refuse_argv(invocation.argv)
        if refused:  # an AgentError: the next tool of the route is tried, else the execution blocks
            raise agents.AgentError(f"the agent `{plan.agent}` was not started: {refused}")
    except agents.AgentError:
        shutil.rmtree(folder, ignore_errors=True)  # no attempt ran: its number goes to the one that does
        raise
    # The agent's clock: min(task timeout, time left in the budget); the budget's kills are `budget`.
    timeout, budget_clock = budget.attempt_timeout(plan.limits.timeout,
                                                   plan.meter.time_left() if plan.meter is not None else None)
    # Model API keys go to the agent only: the checks below run with an environment of their own.
    result = sandbox.run(invocation.argv, plan.workdir,
                         {**invocation.env, USAGE_ENV: str(box / USAGE_FILE), **plan.agent_env},
                         dataclasses.replace(plan.limits, timeout=timeout), cancel=cancel)
    output = redact(result.output_tail(ERROR_CHARS))
    killed = f" (killed: {result.killed_by})" if result.killed_by else ""
    artifacts.write_text(folder / "agent.log", f"$ {' '.join(invocation.argv)}\nexit {result.exit_code}{killed} in "
                         f"{result.duration:.1f}s\n\n{result.stdout}\n{result.stderr}", plan.max_artifact_bytes)
    _save_diff(folder, plan)
    _take_out(box, folder, plan.max_artifact_bytes)
    report = _tool_report(plan.agent, box, result)
    own = Usage(cost=report.cost_usd, tokens=report.tokens)
    # What the agent reported spending, even when it failed: its usage report, else the tool's own account.
    spent = plan.meter.charge(box, plan.task.id, own) if plan.meter is not None else own
    model = f": its model failed: {redact(report.model_error)}" if report.model_error else ""
    _raise_if(cancel)
    if not result.ok:
        run_class = classify_run(result.exit_code, result.timed_out, result.killed_by, budget_clock)
        agent_class = with_model(run_class or ErrorClass.AGENT_CRASHED, bool(model))
        _save_result(folder, plan, number, result, None, agent_class)
        stop = _stopped(run_class, result)
        if run_class is ErrorClass.BUDGET or result.timed_out:
            why = stop
        elif (result.killed_by or "").startswith("signal:"):
            why = f"{stop}, exit code {result.exit_code}"
        else:
            why = result.killed_by or f"exited with code {result.exit_code}"
        head = f"The agent `{plan.agent}` {why} ({agent_class})"
        if agent_class is ErrorClass.MODEL_ERROR:  # the tool's own words say it; its output is in the artifacts
            return Attempted(f"{head}{model}\n{output[-MODEL_OUTPUT_CHARS:]}", agent_class, output, (), spent,
                             stop, result.exit_code)
        return Attempted(f"{head}.\n{output}", agent_class, output, (), spent, stop, result.exit_code)
    on("verifying", attempt, "")
    checks_started = time.monotonic()
    # Checks are offline whatever tool ran: the egress proxy (and the model's network) is the agent's alone.
    offline = dataclasses.replace(plan.limits, network=False, egress=())
    results = checks.run_checks(plan.checks, sandbox, plan.workdir, {}, offline, allow=plan.allow,
                                default_timeout=plan.check_timeout, cancel=cancel)
    checks_seconds = time.monotonic() - checks_started
    artifacts.write_text(folder / "checks.json", json.dumps([_check_json(r) for r in results], indent=2),
                         plan.max_artifact_bytes)
    checks_class = classify_checks(results)
    if checks_class is not None:
        checks_class = with_model(checks_class, bool(model))
    _save_result(folder, plan, number, result, checks_seconds, checks_class)
    _raise_if(cancel)
    failed = [r for r in results if not r.passed]
    if failed:  # the checks' output may quote a secret: redacted before the next prompt, the task row, GitHub
        head = (f"The agent `{plan.agent}` finished without a usable answer from its model "
                f"({ErrorClass.MODEL_ERROR}){model}\n\n" if checks_class is ErrorClass.MODEL_ERROR else "")
        text = redact("\n\n".join(f"Check `{r.name}` failed (exit {r.exit_code}):\n{r.output}" for r in failed))
        text = text[-MODEL_OUTPUT_CHARS:] if head else text[-ERROR_CHARS:]
        return Attempted(head + text, checks_class or ErrorClass.CHECK_FAILED, output, tuple(results), spent)
    return Attempted(None, "", output, tuple(results), spent)


def _stopped(run_class: ErrorClass | None, result: Result) -> str:
    """How an agent that did not finish ended, in words for the check run ("crashed", "timed out", ...)."""
    if run_class is ErrorClass.BUDGET:
        return "ran out of the execution's time budget"
    if result.timed_out:
        return "timed out"
    if run_class is ErrorClass.INFRA:
        return "could not be started"
    if result.killed_by and result.killed_by.startswith("signal:"):
        return f"crashed ({result.killed_by.removeprefix('signal:')})"
    if result.killed_by:
        return f"was killed for its {result.killed_by} limit" if run_class is ErrorClass.LIMIT else \
            f"was killed ({result.killed_by})"
    return "crashed"


def _tool_report(agent: str, box: Path, result: Result) -> AgentReport:
    """What the tool said about its run (usage, a failing model), from its output and the log it left in `box`."""
    analytics = exchange.take_text(box / agents.AIDER_ANALYTICS_LOG, REPORT_MAX_BYTES) \
        if agent in ("aider", "ollama") else None
    return agentreport.read(agent, result.stdout, result.stderr, analytics)


def exchange_of(plan: AttemptPlan) -> Path:
    """The folder the plan's sandbox may write (see AttemptPlan.exchange)."""
    return plan.exchange if plan.exchange is not None else plan.artifacts.with_name(f"{plan.artifacts.name}.exchange")


def _hand_in(prompt: Path, box: Path, max_bytes: int) -> Path:
    """Redact the prompt in the artifacts folder, copy it (and the previous error beside it) into the
    run's exchange folder, and return the copy the agent reads."""
    artifacts.write_text(prompt, prompt.read_text(encoding="utf-8"), max_bytes)
    for source in (prompt, agents.previous_error_file(prompt)):
        if source.is_file():
            (box / source.name).write_bytes(source.read_bytes())
    return box / prompt.name


def _take_out(box: Path, folder: Path, max_bytes: int) -> None:
    """Copy what the run may leave for people (an agent's chat history) into the artifacts: regular files
    only, no link followed, capped and redacted like every artifact."""
    for name in TAKEN_OUT:
        text = exchange.take_text(box / name, max_bytes)
        if text is not None:
            artifacts.write_text(folder / name, text, max_bytes)


def _save_diff(folder: Path, plan: AttemptPlan) -> None:
    """The attempt's changes (after the agent, before the checks) as `diff.patch`."""
    if plan.diff is None:
        return
    try:
        patch = plan.diff()
    except Exception as exc:  # noqa: BLE001 - an artifact must never fail the attempt
        patch = f"[the diff could not be taken: {exc}]\n"
    artifacts.write_text(folder / "diff.patch", patch, plan.max_artifact_bytes)


def _save_result(folder: Path, plan: AttemptPlan, attempt: int, agent: Result, checks_seconds: float | None,
                 error_class: str | None) -> None:
    """`timings.json` (agent and checks durations, the sandbox's usage) and `result.json` (the verdict)."""
    timings = {"attempt": attempt, "tool": plan.agent, "agent_seconds": round(agent.duration, 3),
               "checks_seconds": None if checks_seconds is None else round(checks_seconds, 3),
               "usage": agent.usage, "isolation": agent.isolation}
    artifacts.write_text(folder / "timings.json", json.dumps(timings, indent=2), plan.max_artifact_bytes)
    verdict = {"attempt": attempt, "tool": plan.agent, "passed": error_class is None, "error_class": error_class or "",
               "agent_exit_code": agent.exit_code, "timed_out": agent.timed_out, "killed_by": agent.killed_by}
    artifacts.write_text(folder / "result.json", json.dumps(verdict, indent=2), plan.max_artifact_bytes)


def _check_json(result: CheckResult) -> dict[str, object]:
    return {"name": result.name, "kind": result.kind, "passed": result.passed,
            "exit_code": result.exit_code, "duration": round(result.duration, 3), "output": result.output,
            **({"details": dict(result.details)} if result.details else {})}


def _raise_if(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()
