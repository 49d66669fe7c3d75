"""Run executions on a whole local Clarity (devstack) and read back where their time went.

Shared by `overhead_bench.py` and `parallel_bench.py`: start the stack with one intake worker and N
steps workers, create repositories of N trivial tasks, start executions with a `/clarity run` comment
and read each step's phases from the execution's log stream (the times the worker wrote there).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rq import Worker

import devstack
from clarity.models import Execution
from clarity.store import Store

SETTLED = {"paused", "completed", "blocked", "failed", "stopped"}
USER = "ada"


def agent_command(sleep: float = 0.0) -> str:
    """A `command` agent that (after `sleep` seconds, like an agent waiting on a model) writes done/<id>.txt."""
    wait = f"sleep {sleep:g}; " if sleep > 0 else ""
    return f"sh -c '{wait}mkdir -p done && echo ok {{task_id}} > done/{{task_id}}.txt'"


def check_for(task_id: str) -> str:
    """The task's acceptance check: the agent's file says ok."""
    return f'grep -qx "ok {task_id}" done/{task_id}.txt'


def tasks_md(count: int) -> str:
    """A tasks_list.md of `count` top-level leaves, each with one check."""
    lines = ["# Tasks", ""]
    for i in range(1, count + 1):
        lines += [f"- [ ] {i} Task {i}", f"  - check: {check_for(str(i))}"]
    return "\n".join(lines) + "\n"


def launch(base: Path, steps_workers: int, agent: str) -> devstack.Stack:
    """Redis, forge, web, one intake worker and `steps_workers` steps workers, all heartbeating."""
    # The web app and the forge run in this process: keep their request lines out of the bench's table.
    for name in ("httpx", "werkzeug", "github_app", "forge"):
        logging.getLogger(name).setLevel(logging.WARNING)
    stack = devstack.start(base, os.environ.get("REDIS_URL"), agent_command=agent, workers=0,
                           namespace=f"bench-{uuid.uuid4().hex[:8]}", extra_env={"CLARITY_RETRY_BACKOFF": "0"})
    try:
        stack.start_worker(role="intake")
        for _ in range(steps_workers):
            stack.start_worker(role="steps")
        conn = redis.Redis.from_url(stack.redis.url)
        prefix = f"{stack.settings.namespace}:"

        def listening() -> bool:
            ours = [w for w in Worker.all(connection=conn) if any(q.name.startswith(prefix) for q in w.queues)]
            return len(ours) == steps_workers + 1

        devstack.wait_for(listening, 60, interval=0.1, what=f"{steps_workers + 1} workers to listen")
    except BaseException:
        finish(stack)
        raise
    return stack


def finish(stack: devstack.Stack) -> int:
    """Delete the stack's Redis keys and stop it; the number of keys removed."""
    try:
        return stack.forget()
    finally:
        stack.stop()


def add_repo(stack: devstack.Stack, full_name: str, tasks: str) -> dict[str, Any]:
    """A forge repository holding `tasks_list.md`, a README and issue #1; the forge's answer."""
    source = stack.base / "sources" / full_name.replace("/", "-")
    source.mkdir(parents=True)
    (source / "tasks_list.md").write_text(tasks)
    (source / "README.md").write_text(f"# {full_name}\n")
    created: dict[str, Any] = stack.create_repo(full_name, source)
    stack.admin("PUT", f"/repos/{full_name}/collaborators/{USER}", json={"permission": "write"})
    stack.admin("POST", f"/repos/{full_name}/issues", json={"title": "Work the list", "user": USER, "body": "."})
    return created


def start_run(stack: devstack.Stack, repo: str) -> float:
    """Comment `/clarity run` on issue #1 (the forge delivers the webhook); when it was sent."""
    sent = time.time()
    answer = stack.comment(repo, 1, "/clarity run", user=USER)
    if answer.get("status_code") != 202:
        raise RuntimeError(f"the webhook for {repo} was answered {answer.get('status_code')}")
    return sent


def wait_settled(stack: devstack.Stack, repos: list[str], timeout: float) -> dict[str, Execution]:
    """Wait until every repo's execution has settled; repo → execution."""
    store = Store.from_url(stack.redis.url, stack.settings.namespace)
    done: dict[str, Execution] = {}

    def all_settled() -> bool:
        for repo in repos:
            if repo not in done:
                found = store.executions(repo=repo)
                if found and str(found[0].status) in SETTLED:
                    done[repo] = found[0]
        return len(done) == len(repos)

    devstack.wait_for(all_settled, timeout, interval=0.05, what=f"{len(repos)} execution(s) to settle "
                                                                f"(see the worker logs in {stack.base})")
    return done


@dataclass
class StepTimes:
    """One step as its log stream tells it (epoch seconds; 0.0 where a mark is absent)."""

    started: float
    finished: float = 0.0
    outcome: str = ""
    task: str = ""
    marks: dict[str, float] = field(default_factory=dict)  # attempt, verifying, done

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def steps_of(stack: devstack.Stack, execution_id: str) -> list[StepTimes]:
    """The execution's steps, in order, with the times of the marks a task step writes."""
    store = Store.from_url(stack.redis.url, stack.settings.namespace)
    steps: list[StepTimes] = []
    for entry in store.log_lines(execution_id, count=5000):
        kind, at, message = entry.get("kind"), float(entry.get("time", 0.0)), str(entry.get("message", ""))
        if kind == "step.started":
            steps.append(StepTimes(started=at))
        elif not steps:
            continue
        elif kind == "step.finished":
            steps[-1].finished, steps[-1].outcome = at, str(entry.get("outcome", ""))
        elif kind == "log" and message.startswith("task "):
            task, _, rest = message[5:].partition(": ")
            mark = ("attempt" if rest.startswith("attempt 1 started") else
                    "verifying" if rest.startswith("agent done") else
                    "done" if rest.startswith("done in") else "")
            if mark and mark not in steps[-1].marks:
                steps[-1].task = task
                steps[-1].marks[mark] = at
    return steps


def wait_steps(stack: devstack.Stack, execution_id: str, timeout: float = 30.0) -> list[StepTimes]:
    """The steps once the last one has ended.

    A settled status is written before the last step's summary check run, PR and closing comment.
    """
    def ended() -> list[StepTimes] | None:
        steps = steps_of(stack, execution_id)
        return steps if steps and steps[-1].finished else None

    found: list[StepTimes] = devstack.wait_for(ended, timeout, interval=0.05, what="the last step's end")
    return found


def phases(step: StepTimes) -> dict[str, float]:
    """A task step cut at its marks: seconds in each phase (empty when a mark is missing)."""
    marks = step.marks
    if not step.finished or not all(k in marks for k in ("attempt", "verifying", "done")):
        return {}
    return {
        "prepare": marks["attempt"] - step.started,  # lease, sync or resume, config + list, check run, table
        "agent": marks["verifying"] - marks["attempt"],  # the agent in the sandbox, the attempt's diff
        "finish": marks["done"] - marks["verifying"],  # checks, tick, commit, push + reports, summary, table
        "report": step.finished - marks["done"],  # the rest: the summary's wait, the step's end
    }


def median(values: list[float]) -> float:
    """The median, 0.0 for no values."""
    return statistics.median(values) if values else 0.0


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`, 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
