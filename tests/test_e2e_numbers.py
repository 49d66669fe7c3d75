"""End to end (forge + web + a real worker): one execution's numbers read the same on every surface.

Issue 15: `resume` of a blocked execution, then `override 1.4 done` while it ran, ended `completed` with
tasksCompleted 4 / tasksTotal 3 ("✅ completed: 4/3 tasks done", "4 of 3 task(s) done", a 4/3 bar), and
its success rate said 80% on the overview where the Metrics page said 100%.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

import devstack
from clarity.status import ExecutionStatus
from tests.e2e import REPO, check_for, git, store_of, wait_comment, wait_settled

# 1.2 fails until a person pushes `fixed.txt`; 1.3 takes long enough for a comment to arrive while it runs.
TASKS = f"""# Tasks

- [ ] 1 Widgets
  - [ ] 1.1 Good
    - {check_for("1.1")}
  - [ ] 1.2 Needs a fix
    - check: test -f fixed.txt
    - {check_for("1.2")}
  - [ ] 1.3 Slow [slow:4]
    - {check_for("1.3")}
  - [ ] 1.4 Beyond the stop point
    - {check_for("1.4")}
"""


def push_fix(stack: devstack.Stack, tmp_path: Path) -> None:
    """A person adds `fixed.txt` to the execution's branch (straight into the forge's repository)."""
    bare = stack.forge.config.repos_dir / "acme" / "widgets.git"
    clone = tmp_path / "person"
    subprocess.run(["git", "clone", "-q", "-b", "clarity/issue-1", str(bare), str(clone)], check=True)
    (clone / "fixed.txt").write_text("fixed\n")
    env = ["-c", "user.name=ada", "-c", "user.email=ada@example.com"]
    subprocess.run(["git", "-C", str(clone), "add", "fixed.txt"], check=True)
    subprocess.run(["git", "-C", str(clone), *env, "commit", "-q", "-m", "fix the check of 1.2"], check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "clarity/issue-1"], check=True)


def test_resume_then_override_beyond_the_stop_point_ends_four_of_four_everywhere(stack, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / ".github").mkdir(parents=True)
    (source / "tasks_list.md").write_text(TASKS)
    (source / ".github" / "clarity.yml").write_text("retries: 1\n")
    stack.create_repo(REPO, source)
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})

    stack.comment(REPO, 1, "/clarity run until 1.3", user="ada")
    blocked = wait_settled(stack)
    assert blocked.status is ExecutionStatus.BLOCKED, blocked.reason
    assert (blocked.tasks_completed, blocked.tasks_total) == (1, 3)

    push_fix(stack, tmp_path)
    since = time.time()
    stack.comment(REPO, 1, "/clarity resume", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: store.get(blocked.id).current_task == "1.3", 60, what="task 1.3 to run")
    stack.comment(REPO, 1, "/clarity override 1.4 done", user="ada")  # while the resumed execution runs 1.3
    ex = wait_settled(stack, since=since)

    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert (ex.tasks_completed, ex.tasks_total) == (4, 4)
    assert "- [x] 1.4 Beyond the stop point" in git(stack, "show", "clarity/issue-1:tasks_list.md")
    # Three tasks the engine ran, all passed in the end (1.2 failed, then passed after the fix); one done by hand.
    assert ex.success_rate == 1.0

    closing = wait_comment(stack, "task(s) done")["body"]
    assert "4 of 4 task(s) done" in closing and "of 3" not in closing
    head = git(stack, "rev-parse", "clarity/issue-1").strip()
    [summary] = [r for r in stack.admin("GET", "/state")["check_runs"]
                 if r["name"] == "Clarity: run until 1.3" and r["head_sha"] == head]
    assert summary["conclusion"] == "success" and summary["title"] == "✅ completed: 4/4 tasks done"
    [pull] = [i for i in stack.admin("GET", "/state")["issues"] if i.get("pull")]
    assert "4/4 tasks done" in pull["body"]

    progress = httpx.get(f"{stack.web_url}/api/devteam/executions/{ex.id}/progress", timeout=30).json()
    assert (progress["tasksCompleted"], progress["tasksTotal"]) == (4, 4)
    record = httpx.get(f"{stack.web_url}/api/executions/{ex.id}", timeout=30).json()
    assert (record["tasksCompleted"], record["tasksTotal"], record["successRate"]) == (4, 4, 1.0)
    overview = httpx.get(f"{stack.web_url}/", timeout=30).text
    assert 'data-field="progress">4/4<' in overview and 'data-field="success">100%<' in overview
    page = httpx.get(f"{stack.web_url}/executions/{ex.id}", timeout=30).text
    assert "4/4" in page and "4/3" not in page
