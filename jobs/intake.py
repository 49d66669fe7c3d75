"""Intake job: a webhook delivery → commands → permission → acknowledgement → engine action."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from githubkit.exception import RequestError, RequestFailed

from clarity import logcontext, repoconfig
from github_app import commands, repos, roles
from github_app.client import describe_error
from github_app.commands import Command, Reply, Verb
from github_app.payloads import Payload, PayloadError
from github_app.reporting import Reporter
from jobs import control
from jobs.context import Engine
from jobs.context import engine as default_engine
from jobs.router import Router, compose

log = logging.getLogger(__name__)


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


router = Router()


def handle_delivery(event: str, delivery: str, body: str) -> str:
    """RQ job entry point: process one verified delivery; returns what was done (kept by RQ)."""
    return process(default_engine(), event, delivery, body)


def process(eng: Engine, event: str, delivery: str, body: str) -> str:
    """Route one verified delivery to its handler; a payload of the wrong shape is logged and ignored."""
    from jobs import buttons, lifecycle  # behaviours register their own routers; this module composes them

    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # a signed body is still only text
        log.warning("delivery %s: body is not JSON (%s)", delivery, str(exc)[:200])
        return "ignored: body is not JSON"
    if not isinstance(payload, dict):
        log.warning("delivery %s: the %s payload is not a JSON object", delivery, event)
        return "ignored: payload is not a JSON object"
    with logcontext.bind(delivery_id=delivery, installation=_shown(payload, "installation", "id"),
                         repo=_shown(payload, "repository", "full_name")):
        try:
            return compose(router, buttons.router, lifecycle.router).dispatch(eng, event, delivery, payload)
        except PayloadError as exc:
            log.warning("delivery %s: %s", delivery, exc)
            return f"ignored: {exc}"
        except RequestError as exc:  # an installation or repository GitHub does not know (any more), an outage
            log.error("delivery %s: GitHub refused a call: %s", delivery, describe_error(exc))
            return f"error: {describe_error(exc)}"


def _shown(payload: dict[str, Any], key: str, field: str) -> str | None:
    """A field for the log context, if it is a short text or number (it is not validated yet)."""
    holder = payload.get(key)
    value = holder.get(field) if isinstance(holder, dict) else None
    return str(value)[:100] if isinstance(value, str | int) and not isinstance(value, bool) else None


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
    role, permission = authorize(gh, event.repo, event.author)
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


def authorize(gh: Any, repo: str, login: str) -> tuple[roles.Role, str]:
    """The user's Clarity role on the repository, and the GitHub permission it came from."""
    permission = repos.permission(gh, repo, login)
    return roles.role_for(permission, login, _managers(gh, repo)), permission


def _managers(gh: Any, repo: str) -> tuple[str, ...]:
    """Managers named in `.github/clarity.yml` on the default branch (none if absent or invalid)."""
    try:
        return repoconfig.parse(repos.read_file(gh, repo, repoconfig.CONFIG_PATH)).managers
    except (RequestFailed, repoconfig.ConfigError):
        return ()


def needed(item: Command | Reply) -> roles.Role:
    """The role a command needs (roles.NEEDED; team_member by default); a problem's reply, team_member."""
    return roles.NEEDED.get(str(item.verb), roles.Role.TEAM_MEMBER) if isinstance(item, Command) \
        else roles.Role.TEAM_MEMBER


def _act(eng: Engine, reporter: Reporter, event: CommentEvent, item: Command | Reply, role: roles.Role,
         permission: str) -> str:
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
    if item.verb is Verb.HELP:
        reporter.comment(event.issue_number, commands.help_text())
        return "replied: help"
    if item.verb is Verb.RUN:
        return control.run(eng, reporter, event, item)
    if item.verb is Verb.STATUS:
        reporter.comment(event.issue_number, control.status_text(eng, event.repo, event.issue_number))
        return "replied: status"
    if item.verb is Verb.STOP:
        return control.stop(eng, reporter, event, item)
    if item.verb is Verb.PAUSE:
        return control.pause(eng, reporter, event, item)
    if item.verb is Verb.RESUME:
        return control.resume(eng, reporter, event, item)
    if item.verb is Verb.STOP_POINT:
        return control.set_stop_point(eng, reporter, event, item)
    if item.verb is Verb.RETRY:
        return control.retry(eng, reporter, event, item)
    if item.verb is Verb.PRIORITY:
        return control.prioritise(eng, reporter, event, item)
    if item.verb is Verb.OVERRIDE:
        return control.override(eng, reporter, event, item)
    raise AssertionError(f"unhandled verb {item.verb}")
