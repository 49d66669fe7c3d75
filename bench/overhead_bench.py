"""Orchestration overhead per task: Clarity against a shell script doing the same git work.

Run: `.venv/bin/python bench/overhead_bench.py [--tasks 10] [--runs 1]`.

Clarity: a devstack (forge, web, one intake worker, one steps worker) runs an execution of `--tasks`
trivial tasks (the agent writes one file at once, the check greps it). The shell baseline does, per
task, what a step does in git terms, against the same forge over HTTP with the same auth header
(`http.extraHeader` carrying the installation token): fetch, `checkout -B` the branch, `reset --hard`,
`clean -ffdx`, run the agent's command, run the check, tick the box (sed), append to
`task_outcomes.md`, `add -A`, commit, push. A second baseline, `shell+api`, also makes as many REST
calls per task as Clarity made (GETs with curl, or Python where curl is missing, on one kept-alive connection; the engine's calls are
writes, which cost the forge more, so this is a lower bound of that part).

The goal (issue 6) is Clarity per task ≤ 1.3 × the shell per task. Clarity per task counts from the
first step's start to the last task's step end, divided by the tasks, so the hand-off between steps
is in it (the job taking the next step itself, jobs.chaining, as nobody else waits here); start-up
(webhook, intake) and the concluding step are reported apart. Each task step is cut at the marks
the worker writes to the execution's log: prepare (lease, git sync or resume, config and list,
check run, task table), agent (and the attempt's diff), finish (checks, tick, commit, push while
the task's check run is done, the PR body refreshed and the old summary ended, then the new summary
and the task table) and report (what is left after the "done" line: the step's end). REST calls
come from the forge's record, Redis commands from INFO (exact only on a private Redis: leave REDIS_URL
unset).

Prints a human table on stderr and ONE JSON line on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis
from enginerun import (  # bench/ is on sys.path when this file is run as a script
    add_repo,
    agent_command,
    finish,
    launch,
    loadavg,
    median,
    phases,
    start_run,
    tasks_md,
    wait_settled,
    wait_steps,
)

import devstack
from runner.workspace import basic_auth_header

GOAL_RATIO = 1.3
BRANCH = "clarity/issue-1"
# One task of the baseline. Same git flags and environment as runner.workspace (no system or global
# config, no hooks, the token only in the environment of the two network calls).
TASK_SCRIPT = r"""
set -euo pipefail
export LC_ALL=C GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench
export GIT_COMMITTER_EMAIL=bench@example.com
git() { command git -c credential.helper= -c core.hooksPath=/dev/null "$@"; }
net() { GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=http.extraHeader GIT_CONFIG_VALUE_0="$AUTH" git "$@"; }
mkdir -p "$WS" && cd "$WS"
[ -d .git ] || git init -q -b main .
net fetch --quiet --prune --no-tags "$URL" '+refs/heads/*:refs/remotes/origin/*'
start="refs/remotes/origin/$BRANCH"
git rev-parse --verify --quiet "$start" >/dev/null || start=refs/remotes/origin/main
git checkout -q -f --no-track -B "$BRANCH" "$start"
git reset -q --hard
git clean -q -ffdx
sh -c "mkdir -p done && echo ok $ID > done/$ID.txt"          # the agent
sh -c "grep -qx 'ok $ID' done/$ID.txt"                       # the check
sed -i "s/^- \[ \] $ID /- [x] $ID /" tasks_list.md
printf '\n## %s Task %s\n\n- Tool: command\n- Attempts: 1\n- Checks: 1/1 passed\n' "$ID" "$ID" >> task_outcomes.md
git add -A
git commit -q --no-verify -m "clarity: $ID Task $ID"
net push --quiet --no-verify "$URL" "HEAD:refs/heads/$BRANCH"
if [ "$API_CALLS" -gt 0 ]; then
  urls=(); for _ in $(seq "$API_CALLS"); do urls+=("$API_URL"); done
  if command -v curl >/dev/null 2>&1; then
    curl -sSf -H "Authorization: token $TOKEN" -H "Accept: application/vnd.github+json" "${urls[@]}" >/dev/null
  else  # a machine with only Python, git and make: the same GETs on one kept-alive connection, from Python
    "$PYTHON" -c "$GETS" "$API_URL" "$API_CALLS" "$TOKEN"
  fi
fi
"""


# The API part of the baseline where curl is missing: N GETs of one URL on one kept-alive connection.
GETS = """
import http.client, sys, urllib.parse
url, count, token = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = (http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection)(url.netloc)
for _ in range(count):
    conn.request("GET", url.path, headers={"Authorization": f"token {token}",
                                           "Accept": "application/vnd.github+json"})
    answer = conn.getresponse()
    answer.read()
    if answer.status >= 400:
        sys.exit(f"GET {sys.argv[1]}: {answer.status}")
"""


def run_clarity(stack: devstack.Stack, repo: str, tasks: int, timeout: float) -> dict[str, Any]:
    """One execution of `tasks` tasks; timings, phases, REST calls and Redis commands."""
    add_repo(stack, repo, tasks_md(tasks))
    stack.admin("DELETE", "/calls")
    conn = redis.Redis.from_url(stack.redis.url)
    commands_before = int(conn.info("stats")["total_commands_processed"])
    sent = start_run(stack, repo)
    ex = wait_settled(stack, [repo], timeout)[repo]
    if str(ex.status) != "completed":
        raise RuntimeError(f"the execution of {repo} ended {ex.status}: {ex.reason} (see {stack.base})")
    redis_commands = int(conn.info("stats")["total_commands_processed"]) - commands_before
    steps = wait_steps(stack, ex.id)
    calls = stack.admin("GET", "/calls")
    rest = [c for c in calls if c["surface"] == "rest"]  # cleared before the comment; nothing else ran
    task_steps = [s for s in steps if s.task and "completed" in s.outcome]
    if len(task_steps) != tasks:
        raise RuntimeError(f"{repo}: {len(task_steps)} task steps seen, expected {tasks}")
    span = task_steps[-1].finished - steps[0].started
    handoffs = [b.started - a.finished for a, b in itertools.pairwise(steps)]
    cut = [phases(s) for s in task_steps]
    kinds = Counter(f"{c['method']} {_shape(c['path'], repo)}" for c in rest)
    return {
        "total_s": round(ex.finished_at - sent, 3),
        "per_task_s": round(span / tasks, 4),
        "step_median_s": round(median([s.seconds for s in task_steps]), 4),
        "first_step_s": round(task_steps[0].seconds, 4),
        "handoff_median_s": round(median(handoffs), 4),
        "startup_s": round(steps[0].started - sent, 3),  # webhook → intake → first step picked up
        "conclude_s": round(steps[-1].finished - task_steps[-1].finished, 3),  # the last step: summary, PR, comment
        "phases_median_s": {k: round(median([p[k] for p in cut if p]), 4)
                            for k in ("prepare", "agent", "finish", "report")},
        "rest_calls": len(rest),
        "rest_calls_per_task": round(len(rest) / tasks, 2),  # the execution's fixed calls spread over its tasks
        "rest_server_ms_per_task": round(sum(c["duration_ms"] for c in rest) / tasks, 1),
        "rest_calls_by_kind": dict(kinds.most_common()),
        "git_http_calls": sum(1 for c in calls if c["surface"] == "git" and repo in c["path"]),
        "redis_commands_per_task": round(redis_commands / tasks, 1),
    }


def _shape(path: str, repo: str) -> str:
    """A call's path with the repo and numbers generalised, for counting calls by kind."""
    parts = path.replace(repo, "{repo}").split("/")
    return "/".join("{n}" if p.isdigit() else p for p in parts)


def run_shell(stack: devstack.Stack, repo: str, tasks: int, api_calls: int) -> dict[str, Any]:
    """The baseline: one bash process per task, same workspace across tasks (like the engine's cache)."""
    created = add_repo(stack, repo, tasks_md(tasks))
    token = stack.admin("POST", "/tokens", json={"installation_id": created["installation_id"]})["token"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(stack.base), "WS": str(stack.base / "shell-ws"
           / repo), "URL": created["clone_url"], "BRANCH": BRANCH, "AUTH": basic_auth_header(token), "TOKEN": token,
           "API_CALLS": str(api_calls), "API_URL": f"{stack.settings.github_api_url.rstrip('/')}/repos/{repo}",
           "PYTHON": sys.executable, "GETS": GETS}
    times = []
    started = time.monotonic()
    for i in range(1, tasks + 1):
        began = time.monotonic()
        subprocess.run(["bash", "-c", TASK_SCRIPT], env={**env, "ID": str(i)}, check=True)
        times.append(time.monotonic() - began)
    total = time.monotonic() - started
    return {"total_s": round(total, 3), "per_task_s": round(total / tasks, 4), "task_median_s": round(median(times), 4),
            "first_task_s": round(times[0], 4), "api_calls_per_task": api_calls}


def main() -> int:
    """Run both sides `--runs` times (alternating) and report medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1, help="executions per side, alternating")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds an execution may take")
    args = parser.parse_args()
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="clarity-overhead-") as tmp:
        stack = launch(Path(tmp) / "stack", 1, agent_command())
        try:
            clarity, shell, shell_api = [], [], []
            for run in range(args.runs):
                clarity.append(run_clarity(stack, f"bench/clarity-{run}", args.tasks, args.timeout))
                per_task_calls = int(clarity[-1]["rest_calls_per_task"])
                shell.append(run_shell(stack, f"bench/shell-{run}", args.tasks, 0))
                shell_api.append(run_shell(stack, f"bench/shellapi-{run}", args.tasks, per_task_calls))
        finally:
            keys = finish(stack)
    result = summarize(args, clarity, shell, shell_api)
    result.update({"keys_removed": keys, "loadavg_before": before, "loadavg_after": loadavg(),
                   "redis": stack.redis.source, "cpus": os.cpu_count(), "python": platform.python_version()})
    table(result)
    print(json.dumps(result))
    return 0


def summarize(args: argparse.Namespace, clarity: list[dict[str, Any]], shell: list[dict[str, Any]],
              shell_api: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs, the ratios and the goal."""
    def mid(rows: list[dict[str, Any]], key: str) -> float:
        return round(median([float(r[key]) for r in rows]), 4)

    per_task = mid(clarity, "per_task_s")
    ratio = round(per_task / mid(shell, "per_task_s"), 2)
    return {"bench": "overhead", "tasks": args.tasks, "runs": args.runs,
            "clarity_per_task_s": per_task, "shell_per_task_s": mid(shell, "per_task_s"),
            "shell_api_per_task_s": mid(shell_api, "per_task_s"),
            "ratio": ratio, "ratio_vs_shell_api": round(per_task / mid(shell_api, "per_task_s"), 2),
            "goal_ratio": GOAL_RATIO, "goal_met": ratio <= GOAL_RATIO,
            "results": {"clarity": clarity, "shell": shell, "shell_api": shell_api}}


def table(result: dict[str, Any]) -> None:
    """The human summary on stderr."""
    def say(text: str = "") -> None:
        print(text, file=sys.stderr)

    runs = result["results"]
    say(f"\n{result['tasks']} trivial tasks, {result['runs']} run(s); medians over runs; seconds")
    say(f"{'side':<12}{'per task':>10}{'total':>9}")
    say(f"{'clarity':<12}{result['clarity_per_task_s']:>10.3f}{median([r['total_s'] for r in runs['clarity']]):>9.2f}")
    say(f"{'shell':<12}{result['shell_per_task_s']:>10.3f}{median([r['total_s'] for r in runs['shell']]):>9.2f}")
    say(f"{'shell+api':<12}{result['shell_api_per_task_s']:>10.3f}"
        f"{median([r['total_s'] for r in runs['shell_api']]):>9.2f}")
    say(f"ratio clarity/shell {result['ratio']} (goal ≤ {result['goal_ratio']}: "
        f"{'met' if result['goal_met'] else 'NOT met'}); clarity/shell+api {result['ratio_vs_shell_api']}")
    last = runs["clarity"][-1]
    say("\nClarity, last run: one task step, median seconds per phase")
    for name, seconds in last["phases_median_s"].items():
        say(f"  {name:<10}{seconds:>8.3f}")
    say(f"  {'hand-off':<10}{last['handoff_median_s']:>8.3f}   (step end → next step start)")
    say(f"start-up {last['startup_s']:.2f} s, conclude {last['conclude_s']:.2f} s, first task step "
        f"{last['first_step_s']:.2f} s; per task: {last['rest_calls_per_task']} REST calls, "
        f"{last['redis_commands_per_task']} Redis commands")
    say("REST calls by kind: " + ", ".join(f"{k} ×{n}" for k, n in last["rest_calls_by_kind"].items()))


if __name__ == "__main__":
    sys.exit(main())
