"""`task_outcomes.md`: one appended section per finished task, and the PR body built from the same facts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from clarity.actors import literal, shown

HEADER = "# Task outcomes\n\nWritten by Clarity: one section per finished task.\n"
PR_TEMPLATE_PATH = ".github/clarity_pr_template.md"
TEMPLATE_FIELDS = ("{tasks}", "{status}", "{dashboard}", "{scope}", "{issue}")


@dataclass(frozen=True, slots=True)
class CheckLine:
    """One acceptance check's verdict."""

    name: str
    passed: bool
    duration: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one task."""

    task_id: str
    title: str
    tool: str
    attempts: int
    duration: float
    checks: tuple[CheckLine, ...] = ()
    base_commit: str = ""
    execution_id: str = ""
    links: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    finished_at: float = 0.0
    tokens: int = 0  # what the agent reported using over every attempt (tokens, US dollars)
    cost_usd: float = 0.0
    override: str = ""  # "done" or "skipped" when a person settled the task, not the agent; then
    override_by: str = ""  # who (an actor: a login or `token:<name>`), `finished_at` is when,
    reason: str = ""  # and this is why, as they wrote it ("" when they gave none)


def when(timestamp: float) -> str:
    """A moment as outcomes write it: `2026-05-01 12:00:00Z`."""
    return datetime.fromtimestamp(timestamp or 0, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def decision(outcome: str, by: str, at: float, reason: str) -> str:
    """A person's override in one line: `marked done by @ada at …, without the agent: `why``."""
    what = (f"marked done by {shown(by)} at {when(at)}, without the agent" if outcome == "done" else
            f"skipped by {shown(by)} at {when(at)}: never run, nor the tasks that depend on it")
    return f"{what}; reason: {literal(reason)}" if reason else f"{what}; no reason given"


def render(outcome: Outcome) -> str:
    """The markdown section for one task (commit filled in when known)."""
    if outcome.override:
        return _render_override(outcome)
    lines = [
        f"## {outcome.task_id} {outcome.title}", "",
        f"- Status: completed at {when(outcome.finished_at)}",
        f"- Tool: {outcome.tool}",
        f"- Attempts: {outcome.attempts}",
        f"- Duration: {outcome.duration:.1f}s",
    ]
    if outcome.tokens or outcome.cost_usd:
        lines.append(f"- Usage: {outcome.tokens:,} tokens, ${outcome.cost_usd:.4f} (as the agent reported it)")
    if outcome.base_commit:
        # The task's own commit is the one that adds this section; its parent pins where it started.
        lines.append(f"- Commit: the one adding this section, on top of {outcome.base_commit}")
    if outcome.execution_id:
        lines.append(f"- Execution: {outcome.execution_id}")
    if outcome.checks:
        lines += ["- Checks:"]
        lines += [f"  - {'✅' if c.passed else '❌'} `{c.name}` ({c.duration:.1f}s)" for c in outcome.checks]
    else:
        lines.append("- Checks: none declared")
    lines += [f"- [{label}]({url})" for label, url in outcome.links]
    return "\n".join(lines) + "\n"


def _render_override(outcome: Outcome) -> str:
    """The section of a task a person settled: who, when, why, and what the agent had done before."""
    lines = [f"## {outcome.task_id} {outcome.title}", "",
             f"- Status: {decision(outcome.override, outcome.override_by, outcome.finished_at, outcome.reason)}",
             f"- Attempts before: {outcome.attempts}" + (f" (tool {outcome.tool})" if outcome.tool else ""),
             "- Checks: not run for this outcome (a person's decision)"]
    if outcome.base_commit:
        lines.append(f"- Commit: the one adding this section, on top of {outcome.base_commit}")
    if outcome.execution_id:
        lines.append(f"- Execution: {outcome.execution_id}")
    lines += [f"- [{label}]({url})" for label, url in outcome.links]
    return "\n".join(lines) + "\n"


def append(existing: bytes | None, outcome: Outcome) -> bytes:
    """The outcomes file with `outcome` appended, keeping the existing bytes and line endings as they are."""
    text = existing.decode("utf-8") if existing else ""
    newline = "\r\n" if "\r\n" in text else "\n"
    if not text.strip():
        text = HEADER
    if not text.endswith(("\n", "\r\n")):
        text += newline
    section = render(outcome)
    if newline != "\n":
        section = section.replace("\n", newline)
    return (text + newline + section).encode("utf-8")


@dataclass(frozen=True, slots=True)
class DoneTask:
    """A finished task as the PR body shows it: its commit and the evidence behind it."""

    task_id: str
    title: str
    sha: str
    attempts: int
    checks_passed: int = 0
    checks_total: int = 0
    artifacts_url: str = ""
    commit_url: str = ""
    mark: str = ""  # a person's override, said in the checks column instead ("✋ marked done by @ada …")

    def row(self) -> str:
        """One line of the PR's task table."""
        checks = f"{self.checks_passed}/{self.checks_total} passed" if self.checks_total else "–"
        if self.mark:
            checks = self.mark.replace("|", "\\|")  # a table cell: even a code span's `|` would end it
        evidence = f"[artifacts]({self.artifacts_url})" if self.artifacts_url else ""
        commit = f"[{self.sha[:10]}]({self.commit_url})" if self.commit_url else self.sha[:10]
        return f"| {self.task_id} | {self.title} | {commit} | {self.attempts} | {checks} | {evidence} |"


def pull_body(issue_number: int | None, is_pull_request: bool, scope: str, dashboard_url: str,
              done: Sequence[DoneTask], status: str, template: str | None = None) -> str:
    """The execution PR's body: what was done, with commits, checks and links to every attempt's artifacts.

    A repository template (`.github/clarity_pr_template.md`) may place `{tasks}`, `{status}`,
    `{dashboard}`, `{scope}` and `{issue}`; everything else in it is kept as written.
    """
    table = ["| task | title | commit | attempts | checks | evidence |", "|---|---|---|---|---|---|"]
    table += [task.row() for task in done]
    if template is not None:
        values = {"{tasks}": "\n".join(table), "{status}": status, "{dashboard}": dashboard_url, "{scope}": scope,
                  "{issue}": f"#{issue_number}" if issue_number else ""}
        for field, value in values.items():
            template = template.replace(field, value)
        return template
    lines = ["Opened by Clarity, working through `tasks_list.md` " + scope + "."]
    if issue_number and not is_pull_request:
        lines.append(f"\nRefs #{issue_number}.")
    lines += ["", f"**Status:** {status} · [live execution]({dashboard_url})", "", *table]
    if not done:
        lines.append("| – | nothing finished yet | | | | |")
    lines += ["", ("Each task has a check run with its acceptance checks and log excerpt, and its artifacts "
                   "(prompt, agent log, diff, check results, timings of every attempt); "
                   "`task_outcomes.md` records every outcome.")]
    return "\n".join(lines)
