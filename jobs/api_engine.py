"""The engine behind the REST API: `clarity.engine_port.EnginePort` on top of jobs.control and jobs.scheduler.

Every operation runs the same function a comment command, a button or a check-run action runs, with a
reporter for the execution's repository. Its comments wait for the outcome: when the control went
through they are posted on the issue (people following the issue see what a script did, as they see
a button press), and when it was refused nothing is posted and the comment's text becomes the
refusal the API answers with.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from githubkit.exception import GitHubException, RequestFailed
from rq import Worker

from clarity import repoconfig, tasklist
from clarity.actors import shown
from clarity.engine_port import (
    Conflict,
    Missing,
    QueueEntry,
    Resources,
    Start,
    TaskListing,
    Unavailable,
    Unprocessable,
    WorkerInfo,
)
from clarity.models import Execution
from clarity.status import ExecutionStatus
from clarity.store import NotFound
from github_app import repos
from github_app.client import describe_error
from github_app.commands import Command, Verb
from github_app.reporting import Reporter
from jobs import admission, control, scheduler, verbs
from jobs.comment_event import CommentEvent
from jobs.context import PRIORITIES, Engine

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
# What a control returns when it did nothing (its comment then says why).
_REFUSALS = ("refused", "nothing", "no execution", "already", "ignored")
QUEUED_SCAN = 1000  # newest executions looked at for ones waiting for their repository


def reaching_github(method: Callable[P, R]) -> Callable[P, R]:
    """GitHub failing under an operation is the API's 503 (with what GitHub said), not a crash."""
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except RequestFailed as exc:
            raise Unavailable(f"GitHub refused a call, try again later: {describe_error(exc)}") from exc
        except GitHubException as exc:
            raise Unavailable(f"GitHub could not be reached, try again later: {describe_error(exc)}") from exc
    return call


class HeldReporter(Reporter):
    """A reporter whose comments are held until the caller knows whether the control went through."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(reporter.gh, reporter.repo)
        self.held: list[tuple[int, str]] = []

    def comment(self, issue_number: int, body: str) -> str:
        """Hold the comment (posted by `post`)."""
        self.held.append((issue_number, body))
        return ""

    def post(self) -> None:
        """Post the held comments, in order; the control is done by now, so a failure is only logged."""
        for issue_number, body in self.held:
            try:
                Reporter.comment(self, issue_number, body)
            except GitHubException as exc:
                log.warning("could not comment on %s#%s: %s", self.repo, issue_number, describe_error(exc))
        self.held.clear()

    def last(self, fallback: str) -> str:
        """The last comment held (the control's answer), else `fallback`."""
        return self.held[-1][1] if self.held else fallback


@dataclass(frozen=True, slots=True)
class ApiEngine:
    """The REST API's engine: one per web process, built by `app.create_app`."""

    eng: Engine

    # -- acting -------------------------------------------------------------------------------
    @reaching_github
    def installation_of(self, repository: str) -> int | None:
        """The installation covering the repository (app JWT call); None when not installed there."""
        try:
            return self.eng.github.installation_id_for(repository)
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return None
            raise

    @reaching_github
    def initialize(self, start: Start) -> Execution:
        """`/clarity run` on the named issue, or on a tracking issue opened for it."""
        installation = self.installation_of(start.repository)
        if installation is None:
            raise Missing(f"Clarity is not installed on {start.repository}")
        reporter = HeldReporter(Reporter(self.eng.github.client(installation), start.repository))
        if start.issue_number is None:
            disabled = admission.refusal(admission.config_at(reporter, start.repository, ("",)))
            if disabled:  # before a tracking issue is opened for a run that cannot start
                raise Conflict(disabled)
            self._known(reporter, start.repository, ("",), start.stop_point, "stopPoint")
            scope = f"until task {start.stop_point}" if start.stop_point else "to the end of the list"
            number = reporter.open_issue(f"Clarity: run {scope}", (
                f"Started through the REST API by {shown(start.actor)}. This issue tracks the execution: its pull "
                "request refers to it, and `/clarity` commands written here steer it."))
            issue = repos.IssueRef(number, False, False, "open")
        else:
            found = repos.issue(reporter.gh, start.repository, start.issue_number)
            if found is None:
                raise Missing(f"{start.repository} has no issue or pull request #{start.issue_number}")
            if found.locked:
                raise Conflict(f"#{found.number} is locked: Clarity cannot comment there")
            issue = found
        event = CommentEvent(delivery="api", installation_id=installation, repo=start.repository,
                             account=start.repository.split("/", 1)[0], issue_number=issue.number,
                             is_pull_request=issue.is_pull_request, locked=False, comment_id=0, body="",
                             author=start.actor, author_is_bot=False)
        command = Command(Verb.RUN, 0, "initialize (REST API)", until=start.stop_point, tool=start.tool,
                          priority=start.priority, budget=start.budget or None)
        result = verbs.run(self.eng, reporter, event, command)
        if result == "refused: unknown task":
            raise Unprocessable(reporter.last(result), "stopPoint")
        return self._done(reporter, result, result.rsplit(" ", 1)[-1])

    @reaching_github
    def stop(self, execution_id: str, actor: str) -> Execution:
        """As `/clarity stop`."""
        target, reporter = self._target(execution_id)
        return self._done(reporter, control.stop_execution(self.eng, reporter, target, actor), target.id)

    @reaching_github
    def resume(self, execution_id: str, actor: str) -> Execution:
        """As `/clarity resume`."""
        target, reporter = self._target(execution_id)
        return self._done(reporter, control.resume_execution(self.eng, reporter, target, actor), target.id)

    @reaching_github
    def set_stop_point(self, execution_id: str, task_id: str, actor: str) -> Execution:
        """As `/clarity stop-point <id>`."""
        target, reporter = self._target(execution_id)
        result = control.move_stop_point(self.eng, reporter, target, task_id)
        if result == "refused: unknown task":
            raise Unprocessable(reporter.last(result), "stopPoint")
        return self._done(reporter, result, target.id)

    @reaching_github
    def override(self, execution_id: str, task_id: str, outcome: str, actor: str, reason: str = "") -> Execution:
        """As `/clarity override <id> done|skipped [because <reason>]`."""
        target, reporter = self._target(execution_id)
        self._known(reporter, target.repo, (target.branch, target.base_branch), task_id, "taskId")
        return self._done(reporter, control.override_task(self.eng, reporter, target, task_id, outcome, actor,
                                                          reason), target.id)

    @reaching_github
    def replay(self, execution_id: str, actor: str, from_task: str | None = None, tool: str | None = None,
               stop_point: str | None = None) -> Execution:
        """Run a blocked or paused execution again from a task (jobs.control.replay_execution)."""
        target, reporter = self._target(execution_id)
        refs = (target.branch, target.base_branch)
        self._known(reporter, target.repo, refs, from_task, "fromTask")
        self._known(reporter, target.repo, refs, stop_point, "stopPoint")
        result = control.replay_execution(self.eng, reporter, target, actor, from_task, tool, stop_point)
        return self._done(reporter, result, target.id)

    @reaching_github
    def prioritise(self, execution_id: str, priority: int, actor: str) -> Execution:
        """As `/clarity priority <n>` (a manager's)."""
        target, reporter = self._target(execution_id)
        return self._done(reporter, control.prioritise_execution(self.eng, reporter, target, priority, actor),
                          target.id)

    def _target(self, execution_id: str) -> tuple[Execution, HeldReporter]:
        try:
            target = self.eng.store.get(execution_id)
        except NotFound:
            raise Missing(f"no execution {execution_id}") from None
        return target, HeldReporter(Reporter(self.eng.github.client(target.installation_id), target.repo))

    @staticmethod
    def _known(reporter: Reporter, repo: str, refs: tuple[str, ...], task_id: str | None, field: str) -> None:
        problem = control.unknown_task(reporter, repo, refs, task_id)
        if problem:
            raise Unprocessable(problem, field)

    def _done(self, reporter: HeldReporter, result: str, execution_id: str) -> Execution:
        """Post what the control said and return the execution; a refusal posts nothing and is raised."""
        if result.startswith(_REFUSALS):
            raise Conflict(reporter.last(result))
        reporter.post()
        return self.eng.store.get(execution_id)

    # -- reading ------------------------------------------------------------------------------
    @reaching_github
    def task_list(self, repository: str, installation_id: int, ref: str | None = None) -> TaskListing:
        """The task list on `ref` (else the default branch), found as the step finds it: `tasks_file` of the config."""
        gh = self.eng.github.client(installation_id)
        branch = ref or repos.default_branch(gh, repository)
        try:
            config = repoconfig.parse(repos.read_file(gh, repository, repoconfig.CONFIG_PATH, branch))
        except repoconfig.ConfigError as exc:
            raise Unprocessable(str(exc), repoconfig.CONFIG_PATH) from None
        raw = repos.read_file(gh, repository, config.tasks_file, branch)
        if raw is None:
            raise Missing(f"{repository} has no {config.tasks_file} on `{branch}`")
        try:
            tasks = tasklist.parse(raw.decode("utf-8-sig", "replace"), config.tasks_file)
        except tasklist.TaskListError as exc:
            raise Unprocessable(str(exc), config.tasks_file) from None
        return TaskListing(repository, branch, config.tasks_file, tasks)

    def estimate(self, execution: Execution) -> tuple[float | None, float | None]:
        """Seconds to its next step and to its end (jobs.scheduler.estimate)."""
        est = scheduler.estimate(self.eng, execution)
        return est.starts_in, est.finishes_in

    def queue(self) -> list[QueueEntry]:
        """Ready executions in the order workers take them, then those waiting for their repository."""
        store = self.eng.store
        workers = scheduler.capacity(self.eng)
        entries: list[QueueEntry] = []
        for index, ready in enumerate(scheduler.ready_order(self.eng)):
            try:
                execution = store.get(ready.execution_id)
            except NotFound:
                continue
            per_task = scheduler.task_seconds(store.durations(execution.repo) or store.durations())
            entries.append(QueueEntry(execution.id, execution.installation_id, execution.repo, str(execution.status),
                                      ready.priority, index + 1, "worker", (index // workers) * per_task))
        for execution in store.executions(limit=QUEUED_SCAN):
            if execution.status is ExecutionStatus.QUEUED:
                entries.append(QueueEntry(execution.id, execution.installation_id, execution.repo, str(execution.status),
                                          execution.priority, scheduler.position(self.eng, execution) or 0,
                                          "repository", scheduler.estimate(self.eng, execution).starts_in))
        return entries

    def resources(self) -> Resources:
        """Steps workers, busy slots, queue depths per priority; CPU and memory of this host."""
        workers = tuple(WorkerInfo(w.name, str(w.get_state()), w.get_current_job_id())
                        for w in Worker.all(queue=self.eng.steps_queues[0]))
        total, available = memory(Path("/proc/meminfo"))
        return Resources(
            workers=workers, slots_in_use=sum(1 for w in workers if w.current),
            ready=len(self.eng.store.ready.entries()),
            queue_depths={p: q.count for p, q in zip(PRIORITIES, self.eng.steps_queues, strict=True)},
            cpu_count=os.cpu_count() or 0, load_average=os.getloadavg(),
            memory_total_bytes=total, memory_available_bytes=available)


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo's text (0 for what it does not say)."""
    sizes: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        words = value.split()
        if words and words[0].isdigit():
            sizes[key.strip()] = int(words[0]) * (1024 if len(words) > 1 and words[1] == "kB" else 1)
    return sizes.get("MemTotal", 0), sizes.get("MemAvailable", sizes.get("MemFree", 0))


def memory(path: Path) -> tuple[int, int]:
    """The host's total and available memory in bytes; zeros where /proc is not there (macOS)."""
    try:
        return parse_meminfo(path.read_text())
    except OSError:
        return 0, 0
