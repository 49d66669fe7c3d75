"""A comment that may hold `/clarity` commands: the parts of an `issue_comment` delivery the engine needs.

Its own module because the command handlers (jobs.verbs, and the REST API's run through them) take one,
while jobs.comments, which reads it from the delivery, resolves those handlers: both import it, neither
the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from github_app.payloads import Payload


@dataclass(frozen=True, slots=True)
class CommentEvent:
    """The parts of an `issue_comment` delivery the engine needs."""

    delivery: str
    installation_id: int
    repo: str
    account: str
    issue_number: int
    is_pull_request: bool
    locked: bool
    comment_id: int
    body: str
    author: str
    author_is_bot: bool
    updated_at: str = ""  # the comment's, as GitHub wrote it: an edit is a new version of the comment


def parse_comment(delivery: str, payload: dict[str, Any]) -> CommentEvent | None:
    """Extract a created comment from an `issue_comment` payload; None for other actions."""
    if payload.get("action") != "created":
        return None
    read = Payload("issue_comment", payload)
    installation = read.installation()
    return CommentEvent(
        delivery=delivery,
        installation_id=installation.id,
        repo=read.repo(),
        account=read.login("repository.owner.login"),
        issue_number=read.number("issue.number"),
        is_pull_request=read.present("issue.pull_request"),
        locked=read.flag("issue.locked"),
        comment_id=read.number("comment.id"),
        body=read.text("comment.body", default=""),
        author=read.login("comment.user.login"),
        author_is_bot=read.text("comment.user.type", default="") == "Bot",
        updated_at=read.text("comment.updated_at", default=""),
    )
