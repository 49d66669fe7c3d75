"""The controls against a running execution, through forge comments and real workers:
stop-point moved mid-run, pause after the task in progress, resume, each task committed once."""

from __future__ import annotations

import time
from pathlib import Path

import devstack
from clarity.status import ExecutionStatus as E
from tests.e2e import REPO, git, make_repo, store_of, tasks_md, wait_settled


def test_stop_point_moved_mid_run_then_pause_then_resume_each_take_effect_between_tasks(stack, tmp_path: Path) -> None:
    ids = ["1", "2", "3", "4"]
    make_repo(stack, tmp_path, tasks_md(*((i, f"Part {i} [slow:1]", False) for i in ids)))
    store = store_of(stack)

    def working_on(task_id: str) -> bool:
        found = store.executions(repo=REPO)
        return bool(found) and found[0].status is E.TASK_EXECUTING and found[0].current_task == task_id

    stack.comment(REPO, 1, "/clarity run", user="ada")  # to the end of the list
    devstack.wait_for(lambda: working_on("1"), 30, interval=0.05, what="task 1 to be under way")
    stack.comment(REPO, 1, "/clarity stop-point 2", user="ada")
    ex = wait_settled(stack, timeout=60)
    assert (ex.status, ex.reason, ex.tasks_completed) == (E.PAUSED, "stop point 2 reached", 2)

    since = time.time()
    stack.comment(REPO, 1, "/clarity resume", user="ada")  # the stop point is behind it: on to the end
    devstack.wait_for(lambda: working_on("3"), 30, interval=0.05, what="task 3 to be under way")
    stack.comment(REPO, 1, "/clarity pause", user="ada")
    ex = wait_settled(stack, timeout=60, since=since)
    assert (ex.status, ex.tasks_completed) == (E.PAUSED, 3), ex.reason  # task 3 finished, 4 never began
    assert "pause" in ex.reason

    since = time.time()
    stack.comment(REPO, 1, "/clarity resume", user="ada")
    ex = wait_settled(stack, timeout=60, since=since)
    assert (ex.status, ex.tasks_completed) == (E.COMPLETED, 4), ex.reason
    subjects = [s for s in git(stack, "log", "--format=%s", "clarity/issue-1").splitlines() if s.startswith("clarity:")]
    assert sorted(s.split()[1] for s in subjects) == ids  # one commit per task, none repeated
