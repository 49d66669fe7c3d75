"""`clarity tasks`: a tasks_list.md's task tree and run order, as text or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clarity.tasklist import Task, TaskList, TaskListError, parse
from cli.args import fail


def cmd_tasks(args: argparse.Namespace) -> int:
    """Show the task tree of a tasks_list.md and the order its tasks would run in."""
    try:
        text = Path(args.file).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return fail(f"cannot read {args.file}: {getattr(err, 'strerror', None) or err}")
    try:
        tasks = parse(text, filename=args.file)
        order = tasks.run_order(args.until)
        until = tasks.get(args.until).id if args.until is not None else None
    except TaskListError as err:
        return fail(str(err))
    if args.json:
        print(json.dumps(_tasks_json(tasks, order, until), ensure_ascii=False, indent=2))
    else:
        print("\n".join(_tasks_tree(tasks, order, until)))
    return 0


def _tasks_json(tasks: TaskList, order: list[str], until: str | None) -> dict[str, Any]:
    """`done` is the effective state: a parent or group is done when all its leaves are."""
    return {
        "tasks": [
            {
                "id": t.id,
                "title": t.title,
                "done": tasks.is_done(t.id),
                "depends": list(t.depends),
                "checks": list(t.checks),
                "tool": t.tool,
                "parent": t.parent,
                "is_group": t.is_group,
                "line": t.line,
            }
            for t in tasks.tasks
        ],
        "order": order,
        "until": until,
    }


def _tasks_tree(tasks: TaskList, order: list[str], until: str | None) -> list[str]:
    leaves = tasks.leaves()
    done = sum(1 for leaf in leaves if leaf.done)
    lines = [f"{tasks.filename}: {len(leaves)} leaf tasks, {done} done"]
    depth: dict[str, int] = {}
    for t in tasks.tasks:
        depth[t.id] = depth[t.parent] + 1 if t.parent in depth else 0
        lines += _task_lines(t, tasks.is_done(t.id), "  " * depth[t.id])
    scope = f"until {until}" if until is not None else "all"
    lines.append("")
    lines.append(f"Run order ({scope}): " + (" → ".join(order) if order else "nothing to do"))
    return lines


def _task_lines(task: Task, done: bool, indent: str) -> list[str]:
    mark = "[x]" if done else "[ ]"
    title = f"{indent}{mark} {task.id} {task.title}".rstrip()
    if task.is_group:
        return [f"{title}  (group)"]
    details = [f"depends: {', '.join(task.depends)}"] if task.depends else []
    details += [f"tool: {task.tool}"] if task.tool else []
    details += [f"timeout: {task.timeout}"] if task.timeout else []
    lines = [f"{title}  ({'; '.join(details)})" if details else title]
    lines += [f"{indent}      check: {check}" for check in task.checks]
    return lines
