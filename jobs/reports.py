"""The words of an execution: check-run texts, the escalation and the end-of-run comments."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

from clarity import numbers
from clarity.actors import literal, shown
from clarity.models import Execution, TaskProgress
from clarity.outcomes import CheckLine, Outcome
from clarity.redaction import redact
from clarity.status import ExecutionStatus
from clarity.tasklist import Task
from github_app.annotations import Annotation
from github_app.annotations import parse as parse_annotations
from github_app.reporting import RESUME, RETRY, STOP, Button, Conclusion
from jobs.attempts import TaskResult
from jobs.failures import explain
from runner.checks import CheckResult

EXCERPT = 3000


def check_name(task: Task) -> str:
    """One check run per task, named so it reads well in GitHub's checks list."""
    return f"Clarity: {task.id} {task.title}"[:100]


def summary_name(ex: Execution) -> str:
    """The summary check run's name: "Clarity: run until 2.3.1.4"."""
    return f"Clarity: run {scope(ex)}"


def summary_line(ex: Execution) -> str:
    """One line of progress for the summary check's title."""
    return (f"{ex.status.badge} {ex.status}: {numbers.of(ex).tasks_text()}"
            + (f", working on {ex.current_task}" if ex.current_task else ""))


def progress_text(ex: Execution, tasks: Mapping[str, TaskProgress]) -> str:
    """The summary check's progress table."""
    rows = ["| task | title | status | attempts | commit |", "|---|---|---|---|---|"]
    rows += [f"| {t.task_id} | {t.title} | {t.status} | {t.attempts} | {t.commit[:10]} |" for t in tasks.values()]
    return "\n".join(rows)


def summary_conclusion(status: ExecutionStatus) -> tuple[Conclusion, tuple[Button, ...]]:
    """How a settled execution reads in GitHub's checks, and the buttons it offers there."""
    table: dict[ExecutionStatus, tuple[Conclusion, tuple[Button, ...]]] = {
        ExecutionStatus.COMPLETED: ("success", ()),
        ExecutionStatus.PAUSED: ("neutral", (RESUME,)),
        ExecutionStatus.BLOCKED: ("action_required", (RETRY, STOP)),
        ExecutionStatus.STOPPED: ("cancelled", ()),
    }
    return table.get(status, ("failure", ()))


def scope(ex: Execution) -> str:
    """`until 1.2`, `only task 3` or `to the end of the list`."""
    if ex.only:
        return f"only task {ex.only}"
    return f"until {ex.stop_point}" if ex.stop_point else "to the end of the list"


def check_json(result: CheckResult) -> dict[str, object]:
    """A check verdict for the task table."""
    return {"name": result.name, "kind": result.kind, "passed": result.passed,
            "exitCode": result.exit_code, "duration": round(result.duration, 3),
            **({"details": dict(result.details)} if result.details else {})}  # http measurements, junit counts


def outcome(ex: Execution, task: Task, agent: str, result: TaskResult, base_sha: str, before: int = 0,
            artifacts_url: str = "") -> Outcome:
    """The `task_outcomes.md` section of a finished task (`before`: its attempts in earlier rounds)."""
    return Outcome(task_id=task.id, title=task.title, tool=agent, attempts=before + result.attempts,
                   duration=result.duration, base_commit=base_sha, execution_id=ex.id,
                   checks=tuple(CheckLine(r.name, r.passed, r.duration) for r in result.checks),
                   finished_at=time.time(), tokens=result.usage.tokens, cost_usd=result.usage.cost,
                   links=(("Artifacts of every attempt", artifacts_url),) if artifacts_url else ())


def attempts_said(count: int, before: int = 0) -> str:
    """`2 attempts`, or `2 attempts (6 in all)` when the task had `before` attempts in earlier rounds."""
    said = f"{count} attempt{'' if count == 1 else 's'}"
    return f"{said} ({before + count} in all)" if before else said


def _checks_said(result: TaskResult, declared: Sequence[str] = ()) -> str:
    """The checks' verdicts; or, when none ran, why not and which were declared (never "none declared" then)."""
    if result.checks:
        rows = ["| check | result | time |", "|---|---|---|"]
        rows += [f"| `{r.name}` | {'✅ passed' if r.passed else '❌ failed'} | {r.duration:.1f}s |"
                 for r in result.checks]
        return "\n".join(rows)
    named = f"checks declared: {', '.join(literal(spec) for spec in declared)}." if declared else \
        "no acceptance checks are declared for this task."
    if result.agent_stop:
        code = f" (exit {result.agent_exit})" if result.agent_exit is not None else ""
        return f"The agent {result.agent_stop} before the checks ran{code}; {named}"
    return f"The checks did not run; {named}" if declared else "No acceptance checks are declared for this task."


def task_summary(task: Task, agent: str, result: TaskResult, sha: str, before: int = 0) -> str:
    """Check-run summary of a task that passed."""
    return (f"Task **{task.id} {task.title}** passed its checks with `{agent}` in "
            f"{attempts_said(result.attempts, before)}, {result.duration:.1f}s. Commit `{sha[:10]}`.\n\n"
            f"{_checks_said(result)}")


def failure_summary(task: Task, result: TaskResult, declared: Sequence[str] = (), before: int = 0) -> str:
    """Check-run summary of a task that ran out of attempts: what the checks said, or why they never ran."""
    return (f"Task **{task.id} {task.title}** did not pass after {attempts_said(result.attempts, before)}. "
            f"Nothing was committed.\n\n{_checks_said(result, declared)}\n\n**Last error**\n\n```\n"
            f"{result.last_error[-EXCERPT:]}\n```")


def commit_message(task: Task, agent: str, result: TaskResult, before: int, artifacts_url: str) -> str:
    """The task's commit: `clarity: <id> <title>` (what `checkout.follow_git` looks for), then the evidence in brief."""
    passed = sum(1 for r in result.checks if r.passed)
    checks = (f"{passed} of {len(result.checks)} passed ({', '.join(r.name for r in result.checks)})"
              if result.checks else "none declared")
    return "\n".join([f"clarity: {task.id} {task.title}", "",
                      f"Tool: {agent}", f"Attempts: {result.attempts}" + (f" ({before + result.attempts} in all)" if before else ""),
                      f"Checks: {checks}", f"Artifacts: {artifacts_url}"])


_NEXT = {
    ExecutionStatus.PAUSED: "Continue with `/clarity resume` (`/clarity stop-point <id>` first to stop at another "
                            "task), or end it with `/clarity stop`.",
    ExecutionStatus.BLOCKED: "Fix the cause, then `/clarity retry`; `/clarity override <id> done` (or `skipped`) "
                             "settles a task by hand, `/clarity stop` ends the execution.",
    ExecutionStatus.STOPPED: "`/clarity run` starts a new execution, which goes on from the branch's commits.",
    ExecutionStatus.FAILED: "`/clarity run` starts a new execution, which goes on from the branch's commits.",
    ExecutionStatus.QUEUED: "It starts when the repository is free; `/clarity stop` takes it out of the line.",
}
_LIVE = "`/clarity pause` pauses it after the task in progress; `/clarity stop` ends it."


def next_move(ex: Execution, reason: str | None = None) -> str:
    """The command that moves `ex` on from where it is, as a sentence; "" when its reason (`ex.reason` unless
    given) names one already (a budget pause, a moved branch) or nothing is left to do."""
    if "`/clarity " in (ex.reason if reason is None else reason) or ex.status is ExecutionStatus.COMPLETED:
        return ""
    return _LIVE if ex.status.is_active else _NEXT.get(ex.status, "")


def annotations_for(result: TaskResult, workdir: str) -> list[Annotation]:
    """File/line findings from the failing checks of the last attempt."""
    found: list[Annotation] = []
    for check in result.checks:
        if not check.passed:
            found += parse_annotations(check.output, workdir, title=check.name)
    return found


def task_text(result: TaskResult, diff_stat: str, artifacts_url: str = "") -> str:
    """Check-run details: diff stat, check outputs, the agent's log excerpt and a link to every artifact."""
    parts = []
    if artifacts_url:
        parts.append(f"[Artifacts of every attempt]({artifacts_url}): prompt, agent log, diff, checks, timings.")
    if diff_stat:
        parts.append(f"### Changes\n```\n{diff_stat}\n```")
    for r in result.checks:
        parts.append(f"### `{r.name}` ({'passed' if r.passed else 'failed'})\n```\n{r.output[-EXCERPT:]}\n```")
    if result.agent_output:
        parts.append(f"### Agent output (tail)\n```\n{result.agent_output[-EXCERPT:]}\n```")
    return "\n\n".join(parts)


def escalation(ex: Execution, task: Task, result: TaskResult, url: str, before: int = 0) -> str:
    """The comment that hands a failed task to a human: the failure class and the last output (redacted tail)."""
    kind = (f"Failure class: `{result.error_class}` ({explain(result.error_class)}).\n\n"
            if result.error_class else "")
    tail = redact(result.last_error)[-EXCERPT:]
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", tail)), default=0))
    total = f"; {before + result.attempts} in all for this task" if before else ""
    return (f"{shown(ex.requester)} task **{task.id} {task.title}** failed after {result.attempts} attempts "
            f"(1 + {result.attempts - 1} retries{total}), so execution [`{ex.id}`]({url}) is blocked and nothing of "
            f"this task was committed.\n\n{kind}Last output:\n\n{fence}\n{tail}\n{fence}\n\n"
            f"Artifacts of every attempt: {url}/artifacts/{task.id}\n\n"
            f"Fix the task or its checks, then comment `/clarity retry` — or `/clarity override {task.id} done` "
            f"(or `skipped`) if a person finished it, or `/clarity stop`.")


def done_text(ex: Execution) -> str:
    """"4 of 4 task(s) done; 5 attempt(s), 1 failed; success rate 100%." (clarity.numbers)."""
    found = numbers.of(ex)
    return f"{found.done} of {found.total} task(s) done; {found.detail_text()}."


def finished(ex: Execution, reason: str, url: str, notify: tuple[str, ...] = ()) -> str:
    """The comment when an execution pauses, completes, blocks or stops (mentions the `notify:` users)."""
    head = {ExecutionStatus.PAUSED: "paused", ExecutionStatus.COMPLETED: "completed",
            ExecutionStatus.BLOCKED: "is blocked", ExecutionStatus.STOPPED: "stopped"}.get(ex.status, str(ex.status))
    lines = [f"{shown(ex.requester)} execution [`{ex.id}`]({url}) {head} {ex.status.badge}: {reason}.",
             done_text(ex)]
    if ex.pr_url and not ex.is_pull_request:
        lines.append(f"Pull request: {ex.pr_url}")
    if next_move(ex, reason):
        lines.append(next_move(ex, reason))
    others = [f"@{login.lstrip('@')}" for login in notify if login.lstrip("@").lower() != ex.requester.lower()]
    if others:
        lines.append("cc " + " ".join(dict.fromkeys(others)))
    return "\n".join(lines)
