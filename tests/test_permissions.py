"""Who may steer Clarity: every repository permission × every command, through intake against the forge."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from github_app.roles import Role, role_for
from jobs import context
from jobs.intake import CommentEvent, handle_comment
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"
COMMANDS = ["/clarity run until 1", "/clarity status", "/clarity stop", "/clarity pause", "/clarity resume",
            "/clarity retry", "/clarity stop-point 1", "/clarity help"]
ALLOWED = {"admin": True, "maintain": True, "write": True, "triage": False, "read": False}


@pytest.fixture
def engine(forge: ForgeHandle, settings, tmp_path: Path) -> context.Engine:
    forge.create_repo(REPO, {"tasks_list.md": "- [ ] 1 One\n"})
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    for permission in ALLOWED:
        forge.admin("PUT", f"/repos/{REPO}/collaborators/user-{permission}", {"permission": permission})
    return context.build(dataclasses.replace(settings, app_id=forge.app_id, private_key=forge.private_key_pem,
                                             github_api_url=forge.api_url))


def comment(engine: context.Engine, forge: ForgeHandle, login: str, body: str) -> str:
    # The forge records the comment (its webhook goes nowhere here); intake then handles it directly.
    _, made = forge.admin("POST", "/comment", {"repo": REPO, "issue": 1, "body": body, "user": login})
    return handle_comment(engine, CommentEvent(
        delivery="d", installation_id=engine.github.installation_id_for(REPO), repo=REPO, account="acme",
        issue_number=1, is_pull_request=False, locked=False, comment_id=made["comment"]["id"], body=body,
        author=login, author_is_bot=False))


@pytest.mark.parametrize("permission", [*ALLOWED, "none"])
@pytest.mark.parametrize("body", COMMANDS)
def test_permission_matrix(engine: context.Engine, forge: ForgeHandle, permission: str, body: str) -> None:
    login = f"user-{permission}" if permission != "none" else "stranger"
    outcome = comment(engine, forge, login, body)
    allowed = ALLOWED.get(permission, False)
    assert outcome.startswith("refused") != allowed, outcome
    bot = [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]
    reactions = [r["content"] for r in forge.admin("GET", "/state")[1]["reactions"]]
    if allowed:
        assert reactions == ["eyes"]  # every accepted command is acknowledged at once
    else:
        assert bot and "only people with write access" in bot[-1] and f"@{login}" in bot[-1]
        assert engine.store.executions(repo=REPO) == [] and reactions == []


def test_managers_from_the_repo_config_outrank_team_members() -> None:
    assert role_for("write", "Grace", ["grace"]) is Role.MANAGER
    assert role_for("write", "ada", ["grace"]) is Role.TEAM_MEMBER
    assert role_for("admin", "grace", ["grace"]) is Role.ADMIN
    assert role_for("read", "grace", ["grace"]) is Role.VIEWER  # config cannot lift a reader


def test_bots_locked_issues_and_plain_comments_are_ignored(engine: context.Engine) -> None:
    event = CommentEvent(delivery="d", installation_id=1000, repo=REPO, account="acme", issue_number=1,
                         is_pull_request=False, locked=False, comment_id=1, body="/clarity run", author="user-admin",
                         author_is_bot=False)
    assert handle_comment(engine, dataclasses.replace(event, author_is_bot=True)) == "ignored: comment by a bot"
    assert handle_comment(engine, dataclasses.replace(event, author="clarity[bot]")) == "ignored: comment by a bot"
    assert handle_comment(engine, dataclasses.replace(event, locked=True)) == "ignored: conversation is locked"
    assert handle_comment(engine, dataclasses.replace(event, body="thanks!")) == "ignored: no command"


def test_a_comment_deleted_before_intake_still_has_its_commands_acted_on(engine: context.Engine) -> None:
    outcome = handle_comment(engine, CommentEvent(
        delivery="d", installation_id=engine.github.installation_id_for(REPO), repo=REPO, account="acme",
        issue_number=1, is_pull_request=False, locked=False, comment_id=987654, body="/clarity status",
        author="user-write", author_is_bot=False))
    assert outcome == "replied: status"
