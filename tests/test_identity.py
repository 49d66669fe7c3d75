"""The app's identity on GitHub (issue 14): its bot's login from `GET /app`, its own pushes, its commits' author.

A real app's slug is whatever its name made it, so nothing assumes `clarity[bot]`: the stack's forge
serves the app as `clarity-local` (devstack.APP_SLUG). A push is Clarity's own when its bot sent it or
when it carries a commit Clarity recorded pushing, whoever sent it. Commits are authored as GitHub links
them to the bot: `<bot user id>+<slug>[bot]@users.noreply.github.com`, the id from `GET /users/<login>`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from githubkit.exception import RequestFailed
from rq import Queue

import devstack
from app import create_app
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from github_app.identity import Identity, author_for
from jobs import context
from tests.conftest import WEBHOOK_FIXTURES, WEBHOOK_SECRET
from tests.conftest_forge import ForgeHandle
from tests.e2e import REPO, git, make_repo, tasks_md, wait_settled

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def renamed_forge(forge: ForgeHandle) -> ForgeHandle:
    """The test forge serving its app under a slug that is not "clarity"."""
    ctx = forge.running.context
    ctx.apps.adopt(dataclasses.replace(ctx.app, slug="widget-helper"))
    ctx.state.ensure_user("widget-helper[bot]", "Bot")
    return forge


@pytest.fixture
def engine(settings: Settings, renamed_forge: ForgeHandle, redis_client: redis.Redis) -> context.Engine:
    return context.build(dataclasses.replace(settings, app_id=renamed_forge.app_id,
                                             private_key=renamed_forge.private_key_pem,
                                             github_api_url=renamed_forge.api_url))


def installation_of(forge: ForgeHandle, repo: str = "acme/widgets") -> int:
    return int(forge.create_repo(repo)["installation_id"])


# -- the forge answers as GitHub does ------------------------------------------------------------------------
def test_the_forge_serves_the_apps_slug_and_its_bot_user_with_an_id_of_its_own(renamed_forge: ForgeHandle) -> None:
    gh = renamed_forge.app_client()
    assert gh.rest.apps.get_authenticated().parsed_data.slug == "widget-helper"
    installation = installation_of(renamed_forge)
    bot = renamed_forge.installation_client("acme/widgets").rest.users.get_by_username("widget-helper[bot]").parsed_data
    assert (bot.login, bot.type) == ("widget-helper[bot]", "Bot")
    assert bot.id not in (renamed_forge.app_id, installation)
    missing = renamed_forge.installation_client("acme/widgets").rest.users.get_by_username
    with pytest.raises(RequestFailed, match="404"):
        missing("nobody-at-all")


# -- the engine learns who it is -----------------------------------------------------------------------------
def test_the_bot_login_and_commit_author_come_from_github_and_are_asked_once(
        engine: context.Engine, renamed_forge: ForgeHandle) -> None:
    installation = installation_of(renamed_forge)
    bot_id = renamed_forge.running.context.state.user("widget-helper[bot]").id  # type: ignore[union-attr]
    assert engine.identity.bot_login() == "widget-helper[bot]"
    assert engine.identity.author(installation) == author_for("widget-helper[bot]", bot_id)
    assert author_for("widget-helper[bot]", bot_id).email == f"{bot_id}+widget-helper[bot]@users.noreply.github.com"
    # Another process of the deployment (a fresh Identity) finds both in the shared cache: GitHub is not asked.
    renamed_forge.admin("DELETE", "/calls")
    other = Identity(engine.github)
    assert (other.bot_login(ask=False), other.author(installation).name) == ("widget-helper[bot]", "widget-helper[bot]")
    assert renamed_forge.calls(path="/app") == [] and renamed_forge.calls(path="/users/") == []


def test_clarity_bot_login_overrides_what_github_says(engine: context.Engine) -> None:
    assert Identity(engine.github, "custom[bot]").bot_login() == "custom[bot]"


# -- the webhook endpoint drops Clarity's own pushes -----------------------------------------------------------
def push(sender: str, after: str = SHA, repo: str = REPO) -> bytes:
    payload = copy.deepcopy(json.loads((WEBHOOK_FIXTURES / "push.payload.json").read_text()))
    payload.update(ref="refs/heads/clarity/issue-1", after=after, sender={**payload["sender"], "login": sender})
    payload["repository"] = {**payload["repository"], "full_name": repo}
    return json.dumps(payload).encode()


def post(client: Any, body: bytes) -> int:
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return int(client.post("/webhooks", data=body, headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()), "Content-Type": "application/json",
        "X-Hub-Signature-256": signature}).status_code)


def test_a_push_by_the_apps_bot_is_its_own_whatever_the_slug(engine: context.Engine) -> None:
    client = create_app(engine.settings).test_client()  # no CLARITY_BOT_LOGIN: the endpoint asks GET /app once
    assert post(client, push("widget-helper[bot]")) == 204
    assert post(client, push("Widget-Helper[Bot]")) == 204
    assert post(client, push("clarity[bot]")) == 202  # not this app's bot: maybe someone else's push
    queue = Queue(engine.settings.intake_queue, connection=redis.Redis.from_url(engine.settings.redis_url))
    assert queue.count == 1


def test_a_push_carrying_a_commit_clarity_pushed_is_its_own_whoever_sent_it(engine: context.Engine) -> None:
    client = create_app(engine.settings).test_client()
    engine.pushed.record(REPO, SHA)
    assert post(client, push("ada", SHA)) == 204
    assert post(client, push("ada", SHA, repo="acme/other")) == 202  # recorded per repository
    assert post(client, push("ada", "f" * 40)) == 202


# -- the whole product ------------------------------------------------------------------------------------------
def test_own_pushes_never_pause_a_run_and_its_commits_are_the_bots(stack: devstack.Stack, tmp_path: Path) -> None:
    assert stack.bot_login == f"{devstack.APP_SLUG}[bot]" != "clarity[bot]"
    make_repo(stack, tmp_path, tasks_md(("1", "One", False), ("2", "Two", False), ("3", "Three", False)))
    before = len(stack.admin("GET", "/deliveries"))
    assert stack.comment(REPO, 1, "/clarity run", user="ada")["status_code"] == 202
    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason  # its own three pushes did not pause it
    pushes = [d for d in stack.admin("GET", "/deliveries")[before:] if d["event"] == "push"]
    assert len(pushes) >= 3 and {d["payload"]["sender"]["login"] for d in pushes} == {stack.bot_login}
    assert not [c for c in stack.admin("GET", "/state")["comments"] if "pushed to" in c["body"]]
    bot = stack.forge.context.state.user(stack.bot_login)
    assert bot is not None and bot.id != devstack.APP_ID
    authors = set(git(stack, "log", "--format=%an <%ae>|%cn <%ce>", "main..clarity/issue-1").splitlines())
    mail = f"{bot.id}+{stack.bot_login}@users.noreply.github.com"
    assert authors == {f"{stack.bot_login} <{mail}>|{stack.bot_login} <{mail}>"}
