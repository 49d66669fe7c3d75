"""Time `tasklist.parse` and `tasklist.tick` on a generated tasks_list.md of 10,000 tasks.

Run: `.venv/bin/python bench/tasklist_bench.py [--tasks 10000] [--runs 30] [--profile]`.
Prints a human table on stderr and ONE JSON line on stdout. The goal is parse + tick (what a step
does to read the file and write the ticked box back) under 100 ms at the median, wall clock. CPU
time is reported beside it: on a busy machine wall clock includes time spent waiting for a core.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable

import clarity.tasklist
from clarity.tasklist import TaskList, parse, tick

GOAL_MS = 100.0


def generate(total: int = 10_000, seed: int = 6) -> str:
    """A realistic tasks_list.md: 3 levels, descriptions, checks, tools, timeouts and backward depends."""
    rng = random.Random(seed)
    lines = ["# Tasks", "", "Generated for the tasks_list.md benchmark.", ""]
    leaves: list[str] = []
    count = 0
    top = 0
    while count < total:
        top += 1
        lines.append(f"- [ ] {top}. Area {top}: build the part of the system numbered {top}")
        count += 1
        for mid in range(1, 21):
            if count >= total:
                break
            parent = f"{top}.{mid}"
            lines.append(f"  - [ ] {parent} Feature {parent}")
            lines.append(f"    - Everything feature {parent} needs, split into small steps.")
            count += 1
            for low in range(1, 20):
                if count >= total:
                    break
                count += 1
                leaves.append(_leaf(lines, rng, f"{parent}.{low}", leaves))
        lines.append("")
    return "\n".join(lines) + "\n"


def _leaf(lines: list[str], rng: random.Random, task_id: str, earlier: list[str]) -> str:
    box = "x" if rng.random() < 0.3 else " "
    lines.append(f"    - [{box}] {task_id} Implement step {task_id} of the feature")
    lines.append(f"      - Write the code for step {task_id}, with `tests` and a short docstring.")
    if rng.random() < 0.4:
        lines.append("      - Keep the public API unchanged; mention it in CHANGELOG.md.")
    if earlier and rng.random() < 0.25:
        deps = sorted(set(rng.sample(earlier[-50:], k=min(len(earlier[-50:]), rng.randint(1, 2)))))
        lines.append(f"      - depends: {', '.join(deps)}")
    if rng.random() < 0.6:
        lines.append(f"      - check: pytest -q tests/test_{task_id.replace('.', '_')}.py")
    if rng.random() < 0.1:
        lines.append("      - tool: aider")
    if rng.random() < 0.05:
        lines.append("      - timeout: 15m")
    return task_id


def measure(
    fn: Callable[[], object], runs: int, setup: Callable[[], object] = lambda: None
) -> dict[str, float]:
    """Median and p95 wall-clock milliseconds of `runs` calls (after a warm-up), and median CPU ms.

    `setup` runs before every call, outside the timing.
    """
    setup()
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        setup()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    wall.sort()
    p95 = wall[min(len(wall) - 1, round(0.95 * (len(wall) - 1)))]
    return {"median_ms": round(statistics.median(wall), 2), "p95_ms": round(p95, 2),
            "cpu_median_ms": round(statistics.median(cpu), 2)}


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--tasks", type=int, default=10_000)
    options.add_argument("--runs", type=int, default=30)
    options.add_argument("--profile", action="store_true", help="print a cProfile of parse + next + tick")
    args = options.parse_args(argv)

    text = generate(args.tasks)
    tasks = parse(text)
    open_leaf = next(t.id for t in tasks.leaves() if not t.done)

    def parse_and_tick() -> str:
        parse(text)
        return tick(text, [open_leaf])

    def forget() -> None:
        # tick reuses the reading of the text parsed last (as a step does: parse, run the task,
        # tick the same text); parsing another text first makes every row start from nothing.
        parse("")

    def step() -> TaskList:
        # What a step does with the file: read it, choose the next task, tick it, write it back.
        parsed = parse(text)
        chosen = parsed.next_task()
        tick(text, [chosen.id if chosen else open_leaf])
        return parsed

    results = {
        "parse": measure(lambda: parse(text), args.runs, forget),
        "tick": measure(lambda: tick(text, [open_leaf]), args.runs, forget),
        "parse+tick": measure(parse_and_tick, args.runs, forget),
        "parse+next+tick": measure(step, args.runs, forget),
    }
    if args.profile:
        forget()
        profiler = cProfile.Profile()
        profiler.runcall(step)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)

    total = results["parse+tick"]["median_ms"]
    line = {
        "bench": "tasklist", "tasks": len(tasks.tasks), "lines": text.count("\n"), "bytes": len(text.encode()),
        "runs": args.runs, "results": results, "goal_ms": GOAL_MS, "goal_met": total < GOAL_MS,
        "python": platform.python_version(), "machine": platform.machine(), "module": clarity.tasklist.__file__,
    }
    print(f"tasks_list.md: {line['tasks']} tasks, {line['lines']} lines, {line['bytes']} bytes; "
          f"{args.runs} runs", file=sys.stderr)
    print(f"{'operation':<18}{'median ms':>12}{'p95 ms':>10}{'CPU ms':>10}", file=sys.stderr)
    for name, numbers in results.items():
        print(f"{name:<18}{numbers['median_ms']:>12.2f}{numbers['p95_ms']:>10.2f}"
              f"{numbers['cpu_median_ms']:>10.2f}", file=sys.stderr)
    verdict = "met" if line["goal_met"] else "MISSED"
    print(f"goal: parse + tick < {GOAL_MS:.0f} ms at the median: {verdict}", file=sys.stderr)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
