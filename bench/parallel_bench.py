"""Executions on many repositories at once: wall time with 1 steps worker against N.

Run: `.venv/bin/python bench/parallel_bench.py [--repos 10] [--tasks 3] [--sleep 1] [--workers 1,2,4]`.

For each worker count, a fresh devstack (forge, web, one intake worker, N `clarity worker --role
steps` processes) gets `--repos` repositories, each of its own owner (so its own installation:
the scheduler's round-robin is across installations, see clarity/ready.py), each with `--tasks`
tasks whose agent sleeps `--sleep` seconds and then writes its file (IO-bound, like an agent waiting
on a model). One `/clarity run` comment per repository, sent back to back; the wall time runs from
the first comment to the end of the last execution's last step.

Reported per worker count: wall time and speedup against the first count, task steps per second,
the step time (start to end, median and p95), the wait for a worker (from the moment an execution
was ready, i.e. the end of its previous step or its comment, to its next step's start), and how
fair the turns were: when each repository's first task was done (round-robin: all of them after
about `repos` steps, not `repos × tasks`).

Prints a human table on stderr and ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from enginerun import (  # bench/ is on sys.path when this file is run as a script
    add_repo,
    agent_command,
    finish,
    launch,
    loadavg,
    median,
    pct,
    start_run,
    tasks_md,
    wait_settled,
    wait_steps,
)


def run_round(base: Path, workers: int, repos: int, tasks: int, sleep: float, timeout: float) -> dict[str, Any]:
    """One fresh stack with `workers` steps workers; every repository's execution, all at once."""
    stack = launch(base, workers, agent_command(sleep))
    try:
        names = [f"cust{i}/repo" for i in range(repos)]
        for name in names:
            add_repo(stack, name, tasks_md(tasks))
        sent = {name: start_run(stack, name) for name in names}
        executions = wait_settled(stack, names, timeout)
        bad = {n: f"{ex.status}: {ex.reason}" for n, ex in executions.items() if str(ex.status) != "completed"}
        if bad:
            raise RuntimeError(f"executions did not complete: {bad} (see {stack.base})")
        timelines = {n: wait_steps(stack, executions[n].id) for n in names}
    finally:
        keys = finish(stack)
    first_sent = min(sent.values())
    step_seconds, waits, first_done = [], [], []
    for name, steps in timelines.items():
        ready = sent[name]
        for step in steps:
            waits.append(step.started - ready)
            ready = step.finished
        task_steps = [s for s in steps if s.task]
        step_seconds += [s.seconds for s in task_steps]
        first_done.append(task_steps[0].finished - first_sent)
    wall = max(steps[-1].finished for steps in timelines.values()) - first_sent
    return {
        "workers": workers, "wall_s": round(wall, 2), "task_steps": len(step_seconds),
        "tasks_per_s": round(len(step_seconds) / wall, 3),
        "step_median_s": round(median(step_seconds), 3), "step_p95_s": round(pct(step_seconds, 0.95), 3),
        "wait_median_s": round(median(waits), 3), "wait_p95_s": round(pct(waits, 0.95), 3),
        "first_task_done_max_s": round(max(first_done), 2),  # every repo had its first task by then
        "first_task_done_median_s": round(median(first_done), 2),
        "keys_removed": keys,
    }


def main() -> int:
    """Run every worker count in turn; print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=3, help="tasks per repository")
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each agent run waits")
    parser.add_argument("--workers", default="1,2,4", help="steps worker counts, comma separated")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a round may take")
    args = parser.parse_args()
    counts = [int(c) for c in args.workers.split(",") if c.strip()]
    before = loadavg()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="clarity-parallel-") as tmp:
        for count in counts:
            started = time.monotonic()
            rounds.append(run_round(Path(tmp) / f"w{count}", count, args.repos, args.tasks, args.sleep, args.timeout))
            rounds[-1]["round_s"] = round(time.monotonic() - started, 1)
    base = rounds[0]["wall_s"]
    for row in rounds:
        row["speedup"] = round(base / row["wall_s"], 2)
    result = {"bench": "parallel", "repos": args.repos, "tasks": args.tasks, "sleep_s": args.sleep,
              "agent_seconds_total": round(args.repos * args.tasks * args.sleep, 1), "results": rounds,
              "loadavg_before": before, "loadavg_after": loadavg(), "cpus": os.cpu_count(),
              "python": platform.python_version()}
    table(result)
    print(json.dumps(result))
    return 0


def table(result: dict[str, Any]) -> None:
    """The human summary on stderr."""
    print(f"\n{result['repos']} repos × {result['tasks']} tasks, agent sleeps {result['sleep_s']} s "
          f"({result['agent_seconds_total']} s of agent time in all); seconds", file=sys.stderr)
    head = ("workers", "wall", "speedup", "tasks/s", "step p50", "step p95", "wait p50", "wait p95", "1st done")
    print("".join(f"{h:>10}" for h in head), file=sys.stderr)
    for r in result["results"]:
        cells = (r["workers"], r["wall_s"], r["speedup"], r["tasks_per_s"], r["step_median_s"], r["step_p95_s"],
                 r["wait_median_s"], r["wait_p95_s"], r["first_task_done_max_s"])
        print("".join(f"{c:>10}" for c in cells), file=sys.stderr)
    print("1st done: when the last repository had its first task done (fair turns keep it near repos × step)",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
