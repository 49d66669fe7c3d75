"""Webhooks for the forge's own state changes, as GitHub sends them to an installed app.

A push sends `push` (and `check_suite.requested`, and `pull_request.synchronize` for an open PR on the
branch); a PR opened, edited or closed sends `pull_request`; a check run created or completed sends
`check_run` (and `check_suite.completed` once every run of its suite is done). They go out after the
request, in order, signed like every delivery (WebhookSender.deliver_later), so every e2e test sees
GitHub's volume. The sender of an app-token push is the app's bot, as on GitHub.
"""

from __future__ import annotations

from typing import Any

from forge.context import ForgeContext
from forge.events import installation_stub
from forge.records import CheckRun, Issue, Repo

ZERO_SHA = "0" * 40


def _envelope(ctx: ForgeContext, repo: Repo, sender: str) -> dict[str, Any]:
    return {"repository": ctx.shapes.repo(repo), "sender": ctx.shapes.user(sender),
            "installation": installation_stub(repo.installation_id)}


def pushed(ctx: ForgeContext, repo: Repo, login: str, before: dict[str, str], after: dict[str, str]) -> None:
    """One `push` per branch a receive-pack changed, then what GitHub derives from it."""
    for branch in sorted(set(before) | set(after)):
        old, new = before.get(branch, ZERO_SHA), after.get(branch, ZERO_SHA)
        if old == new:
            continue
        ctx.hooks.deliver_later("push", {
            "ref": f"refs/heads/{branch}", "before": old, "after": new, "created": old == ZERO_SHA,
            "deleted": new == ZERO_SHA, "forced": False, "base_ref": None,
            "compare": f"{ctx.shapes.repo(repo)['html_url']}/compare/{old[:12]}...{new[:12]}",
            "commits": [], "head_commit": None, "pusher": {"name": login, "email": None},
            **_envelope(ctx, repo, login)})
        if new == ZERO_SHA:
            continue
        ctx.hooks.deliver_later("check_suite", {"action": "requested", "check_suite": _suite(ctx, repo, branch, new),
                                                **_envelope(ctx, repo, login)})
        for issue in ctx.state.issues(repo.full_name):
            if issue.pull is not None and issue.state == "open" and issue.pull.head_ref == branch:
                pull_changed(ctx, repo, issue, "synchronize", login, before=old, after=new)


def pull_changed(ctx: ForgeContext, repo: Repo, issue: Issue, action: str, sender: str, **extra: Any) -> None:
    """`pull_request.<action>` for a PR as it is now."""
    ctx.hooks.deliver_later("pull_request", {"action": action, "number": issue.number,
                                             "pull_request": ctx.code.pull(issue), **extra,
                                             **_envelope(ctx, repo, sender)})


def check_run_changed(ctx: ForgeContext, repo: Repo, run: CheckRun, action: str) -> None:
    """`check_run.<action>`; on completion also `check_suite.completed` when its suite is all done."""
    ctx.hooks.deliver_later("check_run", {"action": action, "check_run": ctx.code.check_run(run),
                                          **_envelope(ctx, repo, ctx.bot_login)})
    if action != "completed":
        return
    suite = [r for r in ctx.state.check_runs(repo.full_name, run.head_sha) if r.check_suite_id == run.check_suite_id]
    if all(r.status == "completed" for r in suite):
        ctx.hooks.deliver_later("check_suite", {
            "action": "completed", "check_suite": _suite(ctx, repo, None, run.head_sha, run.check_suite_id),
            **_envelope(ctx, repo, ctx.bot_login)})


def _suite(ctx: ForgeContext, repo: Repo, branch: str | None, sha: str, suite_id: int | None = None) -> dict[str, Any]:
    done = suite_id is not None
    return {"id": suite_id or ctx.state.check_suite_id(repo.full_name, sha), "head_branch": branch, "head_sha": sha,
            "status": "completed" if done else "queued", "conclusion": None, "app": ctx.shapes.app(),
            "pull_requests": [], "before": None, "after": sha}


def pull_action(was: Issue, now: Issue) -> str | None:
    """The `pull_request` action GitHub sends for an update from `was` to `now`; None when nothing changed."""
    if was.state != now.state:
        return "closed" if now.state == "closed" else "reopened"
    if was.pull is not None and now.pull is not None and was.pull.draft != now.pull.draft:
        return "converted_to_draft" if now.pull.draft else "ready_for_review"
    changed = (was.title, was.body, was.pull and was.pull.base_ref) != (now.title, now.body, now.pull and now.pull.base_ref)
    return "edited" if changed else None
