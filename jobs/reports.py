"""The words of an execution: check-run texts, the escalation and the end-of-run comments."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

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
    return (f"{ex.status.badge} {ex.status}: {ex.tasks_completed}/{ex.tasks_total} tasks done"
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


def outcome(ex: Execution, task: Task, agent: str, result: TaskResult, base_sha: str) -> Outcome:
    """The `task_outcomes.md` section of a finished task."""
    return Outcome(task_id=task.id, title=task.title, tool=agent, attempts=result.attempts,
                   duration=result.duration, base_commit=base_sha, execution_id=ex.id,
                   checks=tuple(CheckLine(r.name, r.passed, r.duration) for r in result.checks),
                   finished_at=time.time(), tokens=result.usage.tokens, cost_usd=result.usage.cost)


def _checks_table(results: tuple[CheckResult, ...]) -> str:
    if not results:
        return "No acceptance checks are declared for this task."
    rows = ["| check | result | time |", "|---|---|---|"]
    rows += [f"| `{r.name}` | {'✅ passed' if r.passed else '❌ failed'} | {r.duration:.1f}s |" for r in results]
    return "\n".join(rows)


def task_summary(task: Task, agent: str, result: TaskResult, sha: str) -> str:
    """Check-run summary of a task that passed."""
    return (f"Task **{task.id} {task.title}** passed its checks with `{agent}` in {result.attempts} attempt(s), "
            f"{result.duration:.1f}s. Commit `{sha[:10]}`.\n\n{_checks_table(result.checks)}")


def failure_summary(task: Task, result: TaskResult) -> str:
    """Check-run summary of a task that ran out of attempts."""
    return (f"Task **{task.id} {task.title}** did not pass after {result.attempts} attempts. Nothing was "
            f"committed.\n\n{_checks_table(result.checks)}\n\n**Last error**\n\n```\n"
            f"{result.last_error[-EXCERPT:]}\n```")


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


def escalation(ex: Execution, task: Task, result: TaskResult, url: str) -> str:
    """The comment that hands a failed task to a human: the failure class and the last output (redacted tail)."""
    kind = (f"Failure class: `{result.error_class}` ({explain(result.error_class)}).\n\n"
            if result.error_class else "")
    tail = redact(result.last_error)[-EXCERPT:]
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", tail)), default=0))
    return (f"@{ex.requester} task **{task.id} {task.title}** failed after {result.attempts} attempts "
            f"(1 + {result.attempts - 1} retries), so execution [`{ex.id}`]({url}) is blocked and nothing of "
            f"this task was committed.\n\n{kind}Last output:\n\n{fence}\n{tail}\n{fence}\n\n"
            f"Artifacts of every attempt: {url}/artifacts/{task.id}\n\n"
            f"Fix the task or its checks, then comment `/clarity retry` — or `/clarity override {task.id} done` "
            f"(or `skipped`) if a person finished it, or `/clarity stop`.")


def finished(ex: Execution, reason: str, url: str, notify: tuple[str, ...] = ()) -> str:
    """The comment when an execution pauses, completes, blocks or stops (mentions the `notify:` users)."""
    head = {ExecutionStatus.PAUSED: "paused", ExecutionStatus.COMPLETED: "completed",
            ExecutionStatus.BLOCKED: "is blocked", ExecutionStatus.STOPPED: "stopped"}.get(ex.status, str(ex.status))
    lines = [f"@{ex.requester} execution [`{ex.id}`]({url}) {head} {ex.status.badge}: {reason}.",
             f"{ex.tasks_completed} of {ex.tasks_total} task(s) done."]
    if ex.pr_url and not ex.is_pull_request:
        lines.append(f"Pull request: {ex.pr_url}")
    if ex.status is ExecutionStatus.PAUSED:
        lines.append("Continue with `/clarity run` (to the end) or `/clarity run until <id>`.")
    others = [f"@{login.lstrip('@')}" for login in notify if login.lstrip("@").lower() != ex.requester.lower()]
    if others:
        lines.append("cc " + " ".join(dict.fromkeys(others)))
    return "\n".join(lines)
