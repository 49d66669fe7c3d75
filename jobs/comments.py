"""`issue_comment.created`: read the `/clarity` commands, check who asks, acknowledge, run their handlers.

Every command is one row of github_app.commands.GRAMMAR: its grammar, help, the role it needs and its
handler, named `"module:function"` because github_app may not import jobs. The names are resolved here
once, at import, into `HANDLERS`; a name that does not resolve fails the import (and
tests/test_commands_handled.py, which also checks each handler's arguments).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, cast

from githubkit.exception import RequestFailed

from github_app import commands, repos, roles
from github_app.client import describe_error
from github_app.commands import GRAMMAR, Command, Reply, Verb
from github_app.reporting import Reporter
from jobs.comment_event import CommentEvent, parse_comment
from jobs.context import Engine
from jobs.router import Router

log = logging.getLogger(__name__)

CommandHandler = Callable[[Engine, Reporter, CommentEvent, Command], str]
"""`(engine, reporter, the comment, the command) -> what was done`: what a row's `handler` names."""


def resolve(name: str) -> CommandHandler:
    """The function a `"module:function"` handler name names (ImportError or AttributeError if none)."""
    module, _, function = name.partition(":")
    return cast(CommandHandler, getattr(importlib.import_module(module), function))


HANDLERS: dict[Verb, CommandHandler] = {spec.verb: resolve(spec.handler) for spec in GRAMMAR}
router = Router()


@router.register("issue_comment", action="created")
def on_comment(eng: Engine, delivery: str, payload: dict[str, Any]) -> str:
    """Commands in a new issue or PR comment, acted on once per comment whatever the delivery id says."""
    comment = parse_comment(delivery, payload)
    if comment is None:
        return "ignored: not a new comment"
    # The delivery id is a header, outside the signature: a captured body sent again under a new id
    # passes the webhook's dedupe. The comment's own id and version are inside it.
    if commands.parse(comment.body) and not eng.store.claim_comment(
            comment.comment_id, "created", comment.updated_at, eng.settings.delivery_ttl):
        log.warning("delivery %s: comment %s was already handled (a replayed delivery?)", delivery,
                    comment.comment_id)
        return f"ignored: comment {comment.comment_id} was already handled"
    return handle_comment(eng, comment)


def handle_comment(eng: Engine, event: CommentEvent) -> str:
    """Parse commands from a comment and act on each; every accepted command is acknowledged."""
    # Only an app's bot has a login ending in `[bot]` (people's logins have no brackets): ours, whatever its slug.
    if event.author_is_bot or event.author.lower().endswith("[bot]"):
        return "ignored: comment by a bot"
    if event.locked:
        return "ignored: conversation is locked"
    items = commands.parse(event.body)
    if not items:
        return "ignored: no command"
    gh = eng.github.client(event.installation_id)
    reporter = Reporter(gh, event.repo)
    role, permission = repos.authorize(gh, event.repo, event.author)
    if role.rank < roles.Role.TEAM_MEMBER.rank and all(role.rank < needed(item).rank for item in items):
        # A reader whose comment holds nothing a reader may do (only status and help are reads): one refusal.
        reporter.comment(event.issue_number, roles.refusal(permission, event.author))
        return f"refused: {event.author} has {permission}"
    try:
        reporter.react(event.comment_id, "eyes")
    except RequestFailed as exc:  # the comment may be gone already; the commands still count
        log.info("delivery %s: could not react: %s", event.delivery, describe_error(exc))
    done = []
    for item in items:
        try:
            done.append(_act(eng, reporter, event, item, role, permission))
        except RequestFailed as exc:
            log.error("delivery %s: %s", event.delivery, describe_error(exc))
            done.append(f"error: {describe_error(exc)}")
    return "; ".join(done)


def needed(item: Command | Reply) -> roles.Role:
    """The role a command needs (its row of GRAMMAR says); a problem's reply, team_member."""
    return commands.needed(item.verb) if isinstance(item, Command) else roles.Role.TEAM_MEMBER


def _act(eng: Engine, reporter: Reporter, event: CommentEvent, item: Command | Reply, role: roles.Role,
         permission: str) -> str:
    """Refuse a command the role may not give, post a problem's reply, or run the command's handler."""
    want = needed(item)
    if role.rank < want.rank:  # readers are told their permission, writers the role the command needs
        what = str(item.verb) if isinstance(item, Command) else "a reply"
        reporter.comment(event.issue_number, roles.refusal_for(what, want, role, event.author)
                         if isinstance(item, Command) and role.rank >= roles.Role.TEAM_MEMBER.rank
                         else roles.refusal(permission, event.author))
        return f"refused: {what} needs {want}"
    if isinstance(item, Reply):
        reporter.comment(event.issue_number, item.text)
        return "replied: " + (item.problem or "help")
    return HANDLERS[item.verb](eng, reporter, event, item)
