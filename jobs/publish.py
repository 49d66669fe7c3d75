"""What an execution shows on GitHub between and after its tasks: the summary check run and the PR."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from githubkit.exception import RequestFailed

from clarity import numbers, outcomes
from clarity.models import Execution, TaskProgress
from clarity.status import TaskStatus
from github_app.client import describe_error
from github_app.reporting import STOP, Reporter
from jobs import overrides, reports
from jobs.context import Engine

log = logging.getLogger(__name__)


SUMMARY = ":summary"  # the summary check run's entry in Store.checks (never a task id)
REPORT_THREADS = 32  # far more than one process ever waits on at once (a step nests two deep)
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> ThreadPoolExecutor:
    """The process's reporting threads, started when first needed and kept: starting three or four
    threads for every task cost more than the calls they made to a nearby GitHub. A forked work
    horse has none of its parent's threads, so it starts its own."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=REPORT_THREADS, thread_name_prefix="report"))
    return _pool[1]


def begin(*calls: Callable[[], object]) -> list[Future[object]]:
    """Start independent reporting calls, each in a thread, while the caller does something else."""
    return [_threads().submit(call) for call in calls]


def wait(started: list[Future[object]]) -> list[BaseException | None]:
    """Wait for calls `begin` started; each one's error (or None), in order."""
    return [future.exception() for future in started]  # exception() waits for the call


def at_once(*calls: Callable[[], object]) -> list[BaseException | None]:
    """Run independent reporting calls at once, each in a thread; each one's error (or None), in order.

    Each call spends its time waiting for GitHub (a round trip, 50 to 300 ms on github.com): a task's
    check run, the summary check run and the PR body need nothing of each other once a task is done.
    """
    return wait(begin(*calls))


def together(*calls: Callable[[], object]) -> None:
    """`at_once`, then raise the first error, if any."""
    for error in at_once(*calls):
        if error is not None:
            raise error


def end_summary(reporter: Reporter, ex: Execution, head_sha: str) -> None:
    """End the summary check run of an older commit (`neutral`, pointing at `head_sha`), ahead of a
    `summary(..., old_ended=True)` that moves it there; a failure is logged, as `summary` does."""
    if not (ex.summary_check_id and head_sha and ex.summary_sha != head_sha):
        return
    try:
        reporter.finish_check(ex.summary_check_id, "neutral", "Continued on a newer commit",
                              f"This execution continues on {head_sha[:10]}.")
    except RequestFailed as exc:
        log.warning("execution %s: old summary check not ended: %s", ex.id, describe_error(exc))


def summary(eng: Engine, reporter: Reporter, ex: Execution, head_sha: str, final: bool = False,
            tasks: Mapping[str, TaskProgress] | None = None, old_ended: bool = False) -> None:
    """The execution's summary check run ("Clarity: run until X") on the branch head, kept current.

    Check runs belong to a commit, so when a task's push moves the head the summary moves with it
    (the old run ends `neutral`, pointing at the new commit). Its conclusion changes the moment the
    execution pauses, completes, blocks or stops, which makes GitHub notify people too. `tasks` is the
    task table when the caller knows it better than the store does yet (a task done, not yet recorded);
    `old_ended`: `end_summary` has already ended the run of the older commit.
    """
    try:
        name, url, line = reports.summary_name(ex), eng.dashboard_url(ex.id), reports.summary_line(ex)
        said = f"{line}\n\n{reports.done_text(ex)}"  # the numbers, as the comments and the dashboard say them
        text = reports.progress_text(ex, eng.store.tasks(ex.id) if tasks is None else tasks)
        moved = bool(ex.summary_check_id and head_sha and ex.summary_sha != head_sha)
        if moved or not ex.summary_check_id:
            if not head_sha:
                return
            # Created with the progress already in it (no update right after), while the old one ends.
            old = ex.summary_check_id
            ended = _threads().submit(end_summary, reporter, ex, head_sha) if old and moved and not old_ended else None
            try:
                eng.store.record_check(ex.id, SUMMARY, sha=head_sha)  # where recovery looks if no answer is heard
                check_id = reporter.start_check(head_sha, name, url, f"{ex.id}:", said, actions=(STOP,),
                                                title=line, text=text)
            finally:
                failed = ended.exception() if ended is not None else None  # waits for it, whatever happened
            # Only once the old run has ended: a worker lost before this line leaves the old run recorded, and
            # the next step ends it (and recovery the new one, found by its commit); lost after, nothing spins.
            # (An installation's writes go one at a time, so the old run's end may well come after the create.)
            ex = eng.store.update(ex.id, summary_check_id=check_id, summary_sha=head_sha)
            eng.store.record_check(ex.id, SUMMARY, check_id)
            if failed is not None:  # end_summary logs GitHub's refusals: this is anything else
                raise failed
            if not final:
                return
        assert ex.summary_check_id is not None
        if final:
            conclusion, buttons = reports.summary_conclusion(ex.status)
            reporter.finish_check(ex.summary_check_id, conclusion, line, f"{said}\n\n{ex.reason}", text,
                                  actions=buttons)
        else:
            reporter.update_check(ex.summary_check_id, line, said, text)
    except RequestFailed as exc:  # reporting must never stop the engine
        log.warning("execution %s: summary check not updated: %s", ex.id, describe_error(exc))


def pull_text(eng: Engine, ex: Execution, status: str, template: str | None,
              tasks: Mapping[str, TaskProgress] | None = None) -> str | None:
    """The body of the execution's PR (its numbers as every surface shows them); None before a task is done."""
    done = [outcomes.DoneTask(t.task_id, t.title, t.commit, t.attempts,
                              sum(1 for c in t.checks if c.get("passed")), len(t.checks),
                              f"{eng.dashboard_url(ex.id)}/artifacts/{t.task_id}",
                              f"{eng.settings.web_url}/{ex.repo}/commit/{t.commit}" if t.commit else "",
                              overrides.mark(t))
            for t in (eng.store.tasks(ex.id) if tasks is None else tasks).values()
            if t.status is TaskStatus.COMPLETED or overrides.is_waived(t)]
    if not done:
        return None
    return outcomes.pull_body(ex.issue_number, False, reports.scope(ex), eng.dashboard_url(ex.id),
                              done, f"{status} · {numbers.of(ex).tasks_text()}", template)


def refresh_pull(eng: Engine, reporter: Reporter, ex: Execution, status: str, template: str | None,
                 draft: bool = True, tasks: Mapping[str, TaskProgress] | None = None) -> None:
    """Open or refresh the execution's PR (on a PR, that PR is the one): draft while it runs.

    `tasks` as for `summary`.
    """
    if ex.is_pull_request:
        if ex.pr_number is None:
            eng.store.update(ex.id, pr_number=ex.issue_number)
        return
    body = pull_text(eng, ex, status, template, tasks)
    if body is None:
        return
    # Where GitHub refuses drafts it is asked once per repository (the store remembers, not the reporter:
    # each step has its own, and the next execution here should not ask again); the PR is then never a draft.
    if reporter.drafts and eng.store.drafts_refused(ex.repo):
        reporter.drafts = False
    asked = reporter.drafts
    # The PR this execution opened is refreshed by its number (no search first); if it was closed or
    # is gone, the branch's open PR is found, or a new one opened, as the first time.
    try:
        pull = reporter.refresh_pull(ex.pr_number, ex.branch, body, draft) if ex.pr_number is not None else None
        if pull is None:
            pull = reporter.ensure_pull(ex.branch, ex.base_branch, f"Clarity: tasks for #{ex.issue_number}",
                                        body, draft=draft)
    finally:
        if asked and not reporter.drafts:
            eng.store.refuse_drafts(ex.repo)
            log.info("execution %s: %s takes no draft pull requests; its PRs open ready for review", ex.id,
                     ex.repo)
    if ex.pr_number != pull.number:
        eng.store.update(ex.id, pr_number=pull.number, pr_url=pull.url)
