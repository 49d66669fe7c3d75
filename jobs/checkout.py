"""The branch as a step sees it: the workspace synced (or resumed where this job last pushed), the repo's
config, PR template and task list read from it, and the task table brought in line with it.

Git is the truth for progress: every step re-reads `tasks_list.md` from the branch, so a replayed step
never repeats a pushed task (DESIGN §8). What the branch shows ticked, the table records as done; what
people decided by hand (jobs.overrides) is written to the branch before any task is chosen.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from githubkit.exception import RequestFailed

from clarity import numbers, outcomes, repoconfig, tasklist
from clarity.models import Execution
from clarity.repoconfig import RepoConfig
from clarity.status import TaskStatus
from clarity.store import Store
from clarity.tasklist import TaskList
from github_app.reporting import Reporter
from jobs import chaining, overrides
from jobs.context import Engine
from runner.workspace import Workspace

OPEN_TASK = (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING)
SUBJECT_SCAN = 500  # commits of the branch searched for a task's commit


class Blocked(Exception):
    """The execution cannot go on without a human; the message says why."""


@dataclass(frozen=True, slots=True)
class Checkout:
    """The branch checked out for this step, and what the repository says about itself there."""

    ws: Workspace
    workdir: Path  # where agents and checks run
    config: RepoConfig  # `.github/clarity.yml`
    pr_template: str | None  # `.github/clarity_pr_template.md`, if the repo has one


@dataclass(frozen=True, slots=True)
class TaskFile:
    """The task list as the branch has it: its text (ticked back byte for byte) and what it says."""

    text: str
    tasks: TaskList


def sync(eng: Engine, warm: chaining.Warm | None, ex: Execution) -> tuple[Workspace, Path]:
    """The repository's workspace on the branch: as this job's last step left it, after its push, or
    synced with the remote (fetch) as any step that starts a job does."""
    root = eng.settings.workspaces_dir / ex.repo
    pushed = warm.pushed if warm else None
    if warm is not None:
        warm.pushed = None  # a step that fails before its own push leaves nothing to resume from
        if warm.workspace is not None and warm.workspace.root == root and pushed and pushed[0] == ex.branch:
            return warm.workspace, warm.workspace.resume(ex.branch, pushed[1])
    author = eng.identity.author(ex.installation_id)  # the app's bot, as GitHub links commits to it
    ws = Workspace(root, eng.github.clone_url(ex.installation_id, ex.repo),
                   lambda: eng.github.installation_token(ex.installation_id), author_name=author.name,
                   author_email=author.email, on_push=lambda sha: eng.pushed.record(ex.repo, sha))
    if warm is not None:
        warm.workspace = ws
    return ws, ws.sync(ex.branch, ex.base_branch)


def open_checkout(ws: Workspace, workdir: Path) -> Checkout:
    """Read the repo's config and PR template from the synced branch (repoconfig.ConfigError if invalid)."""
    config = repoconfig.parse(ws.read(repoconfig.CONFIG_PATH))
    template = ws.read(outcomes.PR_TEMPLATE_PATH)
    return Checkout(ws, workdir, config, template.decode("utf-8", "replace") if template else None)


def read_tasks(checkout: Checkout, ex: Execution) -> TaskFile:
    """Parse the task list; Blocked when the branch has none, TaskListError when it (or the execution's
    stop point or `only`) is wrong."""
    name = checkout.config.tasks_file
    raw = checkout.ws.read(name)
    if raw is None:
        raise Blocked(f"`{name}` does not exist on branch `{ex.branch}`")
    text = raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8")
    tasks = tasklist.parse(text, name)
    scope = ex.only or ex.stop_point
    if scope:
        tasks.get(scope)  # unknown stop point → TaskListError naming it
    return TaskFile(text, tasks)


def settle_overrides(eng: Engine, checkout: Checkout, ex: Execution, listed: TaskFile) -> TaskFile | None:
    """People's overrides written to the branch (outcomes committed, done ones ticked; the agent never runs
    for them): the list as it is now, or None when there were none."""
    config = checkout.config
    ticked = overrides.tick_overridden(eng.store, checkout.ws, ex, (config.tasks_file, config.outcomes_file),
                                       listed.text, listed.tasks, eng.dashboard_url(ex.id))
    return None if ticked is None else TaskFile(ticked, tasklist.parse(ticked, config.tasks_file))


def follow_git(store: Store, reporter: Reporter, ex: Execution, ws: Workspace, tasks: TaskList) -> Execution:
    """Record as completed, once, each task the branch shows ticked that the table still shows open.

    A worker lost between `git push` and the store update leaves exactly that. Git is the truth:
    the ticked box keeps the task from running (and being committed) again, and this keeps the
    table and `tasks_completed` in step with it.
    """
    ticked = {t.id for t in tasks.leaves() if t.done}
    found = [p for p in store.tasks(ex.id).values() if p.task_id in ticked and p.status in OPEN_TASK]
    if not found:
        return ex
    writes, shas = [], {}
    for progress in found:
        if progress.status in (TaskStatus.IN_PROGRESS, TaskStatus.ERROR_SOLVING):
            writes.append(dataclasses.replace(progress, status=TaskStatus.PENDING))
        shas[progress.task_id] = sha = commit_of(ws, progress.task_id)
        writes.append(dataclasses.replace(progress, status=TaskStatus.COMPLETED, commit=sha, last_error=""))
        if progress.check_run_id is not None:
            with contextlib.suppress(RequestFailed):
                reporter.finish_check(progress.check_run_id, "success", f"Task {progress.task_id} done",
                                      f"Found done on `{ex.branch}`: the step that ran it ended before "
                                      "recording it (its worker lost, or GitHub asked us to slow down).")
    ex = store.settle_tasks(ex.id, writes, current_task=None)  # table and counter together
    for task_id, sha in shas.items():
        store.log(ex.id, f"task {task_id}: found done on `{ex.branch}`"
                         f"{f' (commit {sha[:10]})' if sha else ''}; recorded as completed", task=task_id)
    return ex


def track_scope(store: Store, ex: Execution, tasks: TaskList) -> Execution:
    """Record the open tasks the execution covers as its list says now (its numbers are counted from them)."""
    return store.set_scope(ex.id, numbers.scope(tasks, ex.stop_point, ex.only), {t.id: t.title for t in tasks.leaves()})


def commit_of(ws: Workspace, task_id: str) -> str:
    """The sha of the branch's commit for a task (`clarity: <id> ...`), or "" if there is none."""
    prefix = f"clarity: {task_id} "
    return next((sha for sha, subject in ws.history(SUBJECT_SCAN) if subject.startswith(prefix)), "")
