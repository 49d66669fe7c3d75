"""One task, attempted up to 1 + retries times: agent in the sandbox, then acceptance checks.

Pure of GitHub: the step reports; this module only runs things and says what happened.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clarity import artifacts, budget
from clarity.redaction import redact
from clarity.tasklist import Task
from jobs.budgets import USAGE_ENV, USAGE_FILE, Meter
from jobs.failures import ErrorClass, classify_checks, classify_run
from runner import agents, checks, exchange
from runner.allowlist import Allowlist
from runner.checks import ALLOW_ALL, CheckResult
from runner.sandbox import Limits, Result, Sandbox

ERROR_CHARS = 6000
TAKEN_OUT = ("aider.chat.history.md", "aider.input.history")  # from the exchange folder into the artifacts
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


Hook = Callable[[str, int, str], None]  # (event, attempt, detail): "attempt", "verifying", "failed"


def attempt_task(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, on: Hook) -> TaskResult:
    """Run the agent and the checks until they pass or retries run out; raise Cancelled on stop."""
    started = time.monotonic()
    previous_error: str | None = None
    errors: list[str] = []
    classes: list[str] = []
    results: list[CheckResult] = []
    output = ""
    for attempt in range(1, plan.retries + 2):
        _raise_if(cancel)
        if plan.meter is not None:
            plan.meter.check()  # raises jobs.budgets.Exhausted: the step pauses the execution
        on("attempt", attempt, "")
        error, error_class, output, results = _one_attempt(plan, sandbox, cancel, attempt, previous_error,
                                                           classes[-1] if classes else "", on)
        if error is None:
            return TaskResult(True, attempt, time.monotonic() - started, tuple(results), "", output, tuple(errors),
                              error_classes=tuple(classes))
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
    return TaskResult(False, len(classes), time.monotonic() - started, tuple(results),
                      errors[-1] if errors else "", output, tuple(errors), classes[-1] if classes else "",
                      tuple(classes))


def _one_attempt(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, attempt: int,
                 previous_error: str | None, previous_class: str,
                 on: Hook) -> tuple[str | None, str, str, list[CheckResult]]:
    """One attempt: (error or None, its ErrorClass or "", agent output tail, check results)."""
    folder = plan.artifacts / f"attempt-{attempt}"  # the evidence: the worker's alone
    folder.mkdir(parents=True, exist_ok=True)
    box = exchange.fresh(exchange_of(plan) / f"attempt-{attempt}")  # the run's: emptied by us first
    agent_task = agents.AgentTask(
        task_id=plan.task.id, title=plan.task.title, description=plan.task.description,
        checks=plan.task.checks, files=plan.task.files, attempt=attempt, previous_error=previous_error,
        repo=plan.repo, branch=plan.branch, error_class=previous_class)
    prompt = _hand_in(agents.write_prompt(folder / "prompt.md", agent_task), box, plan.max_artifact_bytes)
    invocation = agents.build(plan.agent, agent_task, prompt, plan.workdir, plan.agent_options)
    refused = plan.allow.refuse_argv(invocation.argv)
    if refused:  # an AgentError: the next tool of the route is tried, else the execution blocks
        raise agents.AgentError(f"the agent `{plan.agent}` was not started: {refused}")
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
    if plan.meter is not None:
        plan.meter.charge(box, plan.task.id)  # what the agent reported spending, even when it failed
    _raise_if(cancel)
    if not result.ok:
        agent_class = classify_run(result.exit_code, result.timed_out, result.killed_by,
                                   budget_clock) or ErrorClass.AGENT_CRASHED
        _save_result(folder, plan, attempt, result, None, agent_class)
        why = "ran out of the execution's time budget" if agent_class is ErrorClass.BUDGET else \
            "timed out" if result.timed_out else (result.killed_by or f"exited with code {result.exit_code}")
        return f"The agent `{plan.agent}` {why} ({agent_class}).\n{output}", agent_class, output, []
    on("verifying", attempt, "")
    checks_started = time.monotonic()
    # Checks are offline whatever tool ran: the egress proxy (and the model's network) is the agent's alone.
    offline = dataclasses.replace(plan.limits, network=False, egress=())
    results = checks.run_checks(plan.checks, sandbox, plan.workdir, {}, offline, allow=plan.allow,
                                default_timeout=plan.check_timeout)
    checks_seconds = time.monotonic() - checks_started
    artifacts.write_text(folder / "checks.json", json.dumps([_check_json(r) for r in results], indent=2),
                         plan.max_artifact_bytes)
    checks_class = classify_checks(results)
    _save_result(folder, plan, attempt, result, checks_seconds, checks_class)
    _raise_if(cancel)
    failed = [r for r in results if not r.passed]
    if failed:  # the checks' output may quote a secret: redacted before the next prompt, the task row, GitHub
        return redact("\n\n".join(f"Check `{r.name}` failed (exit {r.exit_code}):\n{r.output}" for r in failed))[
            -ERROR_CHARS:], checks_class or ErrorClass.CHECK_FAILED, output, results
    return None, "", output, results


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
    timings = {"attempt": attempt, "agent_seconds": round(agent.duration, 3),
               "checks_seconds": None if checks_seconds is None else round(checks_seconds, 3),
               "usage": agent.usage, "isolation": agent.isolation}
    artifacts.write_text(folder / "timings.json", json.dumps(timings, indent=2), plan.max_artifact_bytes)
    verdict = {"attempt": attempt, "passed": error_class is None, "error_class": error_class or "",
               "agent_exit_code": agent.exit_code, "timed_out": agent.timed_out, "killed_by": agent.killed_by}
    artifacts.write_text(folder / "result.json", json.dumps(verdict, indent=2), plan.max_artifact_bytes)


def _check_json(result: CheckResult) -> dict[str, object]:
    return {"name": result.name, "kind": result.kind, "passed": result.passed,
            "exit_code": result.exit_code, "duration": round(result.duration, 3), "output": result.output,
            **({"details": dict(result.details)} if result.details else {})}


def _raise_if(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()
