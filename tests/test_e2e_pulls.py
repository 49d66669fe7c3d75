"""End to end: the execution's PR and closing comment where GitHub is strict (issue 14, "behave as GitHub does").

GitHub refuses draft PRs on private repositories of Free and Pro owners; the forge does too, and
Clarity must still finish the run with a PR (not a draft) and its closing comment. A report that
fails (the PR refresh) must not take the others (the closing comment) down with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import devstack
from clarity.status import ExecutionStatus
from tests.e2e import REPO, tasks_md, wait_comment, wait_settled

DRAFTS_REFUSED = "Draft pull requests are not supported in this repository."


def private_repo(stack: devstack.Stack, tmp_path: Path, tasks: str, plan: str = "free") -> None:
    """REPO as a private repository of an owner on `plan`, with ada as a writer."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "tasks_list.md").write_text(tasks)
    (source / "README.md").write_text("# widgets\n")
    stack.admin("POST", "/repos", json={"full_name": REPO, "source_dir": str(source), "private": True,
                                        "owner_plan": plan})
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write"})


def pull_calls(stack: devstack.Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(PR creations, GraphQL draft toggles) the forge recorded."""
    created = stack.admin("GET", "/calls", params={"method": "POST", "path": f"/repos/{REPO}/pulls"})
    toggles = stack.admin("GET", "/calls", params={"method": "POST", "path": "graphql"})
    return [c for c in created if c["path"] == f"/repos/{REPO}/pulls"], toggles


def pulls(stack: devstack.Stack) -> list[dict[str, Any]]:
    return [i for i in stack.admin("GET", "/state")["issues"] if i.get("pull")]


def test_private_free_plan_repo_completes_with_a_ready_pull_and_asks_for_a_draft_once(
        stack: devstack.Stack, tmp_path: Path) -> None:
    private_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False),
                                           ("1.2", "Add CI", False), ("1.3", "Add docs", False)))
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    assert (ex.tasks_completed, ex.tasks_total) == (3, 3)
    [pull] = pulls(stack)
    assert pull["pull"]["draft"] is False and pull["pull"]["head_ref"] == "clarity/issue-1"
    assert ex.pr_number == pull["number"]
    closing = wait_comment(stack, "completed")
    assert f"Pull request: {ex.pr_url}" in closing["body"] and "3 of 3 task(s) done" in closing["body"]

    # A second execution on the same repository remembers: it opens its PR without asking for a draft.
    stack.comment(REPO, 7, "/clarity run until 1.1", user="ada")  # #2 is the first PR
    second = wait_settled(stack, count=2)
    assert (second.status, second.issue_number) == (ExecutionStatus.PAUSED, 7), second.reason
    assert len(pulls(stack)) == 2 and not any(p["pull"]["draft"] for p in pulls(stack))
    created, toggles = pull_calls(stack)
    drafts = [c for c in created if c["request"].get("draft")]
    assert len(drafts) == 1 and drafts[0]["status"] == 422
    assert drafts[0]["response"]["message"] == DRAFTS_REFUSED
    assert [c["status"] for c in created if not c["request"].get("draft")] == [201, 201]
    assert not [c for c in toggles if "convertPullRequestToDraft" in str(c["request"])], toggles


def test_closing_comment_is_posted_when_the_pull_refresh_fails(stack: devstack.Stack, tmp_path: Path) -> None:
    private_repo(stack, tmp_path, tasks_md(("1", "Only task", False)), plan="team")
    # Every refresh of a PR answers 502: the PR is opened (POST) after the task, refreshed (PATCH) at the end.
    stack.admin("POST", "/faults", json={"path_regex": r"/pulls/\d+$", "method": "PATCH", "status": 502,
                                         "count": 100})
    stack.comment(REPO, 1, "/clarity run", user="ada")
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    closing = wait_comment(stack, "completed")
    assert "1 of 1 task(s) done" in closing["body"]
    refreshes = stack.admin("GET", "/calls", params={"method": "PATCH", "path": "/pulls/"})
    assert refreshes and {c["status"] for c in refreshes} == {502}
    logs = "".join(p.read_text(errors="replace") for p in stack.base.glob("*.log"))
    assert f"execution {ex.id}: pull request not refreshed" in logs
