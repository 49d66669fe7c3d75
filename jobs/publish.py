"""What an execution shows on GitHub between and after its tasks: the summary check run and the PR."""

from __future__ import annotations

import logging

from githubkit.exception import RequestFailed

from clarity import outcomes
from clarity.models import Execution
from clarity.status import TaskStatus
from github_app.client import describe_error
from github_app.reporting import STOP, Reporter
from jobs import reports
from jobs.context import Engine

log = logging.getLogger(__name__)


def summary(eng: Engine, reporter: Reporter, ex: Execution, head_sha: str, final: bool = False) -> None:
    """The execution's summary check run ("Clarity: run until X") on the branch head, kept current.

    Check runs belong to a commit, so when a task's push moves the head the summary moves with it
    (the old run ends `neutral`, pointing at the new commit). Its conclusion changes the moment the
    execution pauses, completes, blocks or stops, which makes GitHub notify people too.
    """
    try:
        name, url = reports.summary_name(ex), eng.dashboard_url(ex.id)
        text = reports.progress_text(ex, eng.store.tasks(ex.id))
        if ex.summary_check_id and head_sha and ex.summary_sha != head_sha:
            reporter.finish_check(ex.summary_check_id, "neutral", "Continued on a newer commit",
                                       f"This execution continues on {head_sha[:10]}.")
            ex = eng.store.update(ex.id, summary_check_id=None)
        if not ex.summary_check_id:
            if not head_sha:
                return
            check_id = reporter.start_check(head_sha, name, url, f"{ex.id}:",
                                                 reports.summary_line(ex), actions=(STOP,))
            ex = eng.store.update(ex.id, summary_check_id=check_id, summary_sha=head_sha)
        assert ex.summary_check_id is not None
        if final:
            conclusion, buttons = reports.summary_conclusion(ex.status)
            reporter.finish_check(ex.summary_check_id, conclusion, reports.summary_line(ex),
                                       f"{reports.summary_line(ex)}\n\n{ex.reason}", text, actions=buttons)
        else:
            reporter.update_check(ex.summary_check_id, reports.summary_line(ex),
                                       reports.summary_line(ex), text)
    except RequestFailed as exc:  # reporting must never stop the engine
        log.warning("execution %s: summary check not updated: %s", ex.id, describe_error(exc))


def refresh_pull(eng: Engine, reporter: Reporter, ex: Execution, status: str, template: str | None,
                 draft: bool = True) -> None:
    """Open or refresh the execution's PR (on a PR, that PR is the one): draft while it runs."""
    if ex.is_pull_request:
        if ex.pr_number is None:
            eng.store.update(ex.id, pr_number=ex.issue_number)
        return
    done = [outcomes.DoneTask(t.task_id, t.title, t.commit, t.attempts,
                              sum(1 for c in t.checks if c.get("passed")), len(t.checks),
                              f"{eng.dashboard_url(ex.id)}/artifacts/{t.task_id}",
                              f"{eng.settings.web_url}/{ex.repo}/commit/{t.commit}")
            for t in eng.store.tasks(ex.id).values() if t.status is TaskStatus.COMPLETED]
    if not done:
        return
    body = outcomes.pull_body(ex.issue_number, False, reports.scope(ex), eng.dashboard_url(ex.id),
                              done, status, template)
    pull = reporter.ensure_pull(ex.branch, ex.base_branch, f"Clarity: tasks for #{ex.issue_number}",
                                     body, draft=draft)
    if ex.pr_number != pull.number:
        eng.store.update(ex.id, pr_number=pull.number, pr_url=pull.url)
