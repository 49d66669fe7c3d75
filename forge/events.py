"""Webhook payloads shaped like GitHub's, filled with the forge's data."""

from __future__ import annotations

from typing import Any

from forge.context import ForgeContext
from forge.records import Comment, Issue, Repo
from forge.shapes import node_id


def installation_stub(installation_id: int) -> dict[str, Any]:
    """The `installation` object app webhooks carry."""
    return {"id": installation_id, "node_id": node_id("Installation", installation_id)}


def issue_comment_event(
    ctx: ForgeContext,
    repo: Repo,
    issue: Issue,
    comment: Comment,
    action: str = "created",
    previous_body: str | None = None,
) -> dict[str, Any]:
    """An `issue_comment` payload; on a PR the issue carries its `pull_request` key like GitHub's."""
    payload: dict[str, Any] = {"action": action}
    if action == "edited":
        payload["changes"] = {"body": {"from": previous_body or ""}}
    payload.update(
        {
            "issue": ctx.shapes.issue(issue),
            "comment": ctx.shapes.comment(comment),
            "repository": ctx.shapes.repo(repo),
            "sender": ctx.shapes.user(comment.author),
            "installation": installation_stub(repo.installation_id),
        }
    )
    return payload
