"""One task, attempted up to 1 + retries times: agent in the sandbox, then acceptance checks.

Pure of GitHub: the step reports; this module only runs things and says what happened.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clarity.redaction import redact
from clarity.tasklist import Task
from runner import agents, checks
from runner.checks import CheckResult
from runner.sandbox import Limits, Sandbox

ERROR_CHARS = 6000


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


Hook = Callable[[str, int, str], None]  # (event, attempt, detail): "attempt", "verifying", "failed"


def attempt_task(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, on: Hook) -> TaskResult:
    """Run the agent and the checks until they pass or retries run out; raise Cancelled on stop."""
    started = time.monotonic()
    previous_error: str | None = None
    errors: list[str] = []
    results: list[CheckResult] = []
    output = ""
    for attempt in range(1, plan.retries + 2):
        _raise_if(cancel)
        on("attempt", attempt, "")
        error, output, results = _one_attempt(plan, sandbox, cancel, attempt, previous_error, on)
        if error is None:
            return TaskResult(True, attempt, time.monotonic() - started, tuple(results), "", output, tuple(errors))
        errors.append(error)
        previous_error = error
        on("failed", attempt, error)
        if attempt <= plan.retries and cancel.wait(min(plan.backoff * 2 ** (attempt - 1), 60.0)):
            raise Cancelled()
    return TaskResult(False, plan.retries + 1, time.monotonic() - started, tuple(results),
                      errors[-1] if errors else "", output, tuple(errors))


def _one_attempt(plan: AttemptPlan, sandbox: Sandbox, cancel: threading.Event, attempt: int,
                 previous_error: str | None, on: Hook) -> tuple[str | None, str, list[CheckResult]]:
    folder = plan.artifacts / f"attempt-{attempt}"
    folder.mkdir(parents=True, exist_ok=True)
    agent_task = agents.AgentTask(
        task_id=plan.task.id, title=plan.task.title, description=plan.task.description,
        checks=plan.task.checks, files=plan.task.files, attempt=attempt, previous_error=previous_error,
        repo=plan.repo, branch=plan.branch)
    prompt = agents.write_prompt(folder / "prompt.md", agent_task)
    invocation = agents.build(plan.agent, agent_task, prompt, plan.workdir, plan.agent_options)
    result = sandbox.run(invocation.argv, plan.workdir, invocation.env, plan.limits, cancel=cancel)
    output = redact(result.output_tail(ERROR_CHARS))
    (folder / "agent.log").write_text(redact(f"$ {' '.join(invocation.argv)}\nexit {result.exit_code} "
                                             f"in {result.duration:.1f}s\n\n{result.stdout}\n{result.stderr}"))
    _raise_if(cancel)
    if not result.ok:
        why = "timed out" if result.timed_out else (result.killed_by or f"exited with code {result.exit_code}")
        return f"The agent `{plan.agent}` {why}.\n{output}", output, []
    on("verifying", attempt, "")
    results = checks.run_checks(plan.checks, sandbox, plan.workdir, {}, plan.limits)
    (folder / "checks.json").write_text(redact(json.dumps([_check_json(r) for r in results], indent=2)))
    _raise_if(cancel)
    failed = [r for r in results if not r.passed]
    if failed:
        return "\n\n".join(f"Check `{r.name}` failed (exit {r.exit_code}):\n{r.output}" for r in failed)[
            -ERROR_CHARS:], output, results
    return None, output, results


def _check_json(result: CheckResult) -> dict[str, object]:
    return {"name": result.name, "kind": result.kind, "passed": result.passed,
            "exit_code": result.exit_code, "duration": round(result.duration, 3), "output": result.output}


def _raise_if(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()
