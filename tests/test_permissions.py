"""Who may steer Clarity: every repository permission × every command, through intake against the forge."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from github_app.roles import Role, role_for
from jobs import context
from jobs.comment_event import CommentEvent
from jobs.comments import handle_comment
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"
COMMANDS = ["/clarity run until 1", "/clarity status", "/clarity stop", "/clarity pause", "/clarity resume",
            "/clarity retry", "/clarity stop-point 1", "/clarity help"]
ALLOWED = {"admin": True, "maintain": True, "write": True, "triage": False, "read": False}
READS = {"/clarity status", "/clarity help"}  # change nothing: whoever may read the repository may ask


@pytest.fixture
def engine(forge: ForgeHandle, settings, tmp_path: Path) -> context.Engine:
    forge.create_repo(REPO, {"tasks_list.md": "- [ ] 1 One\n"})
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    for permission in ALLOWED:
        forge.admin("PUT", f"/repos/{REPO}/collaborators/user-{permission}", {"permission": permission})
    return forge.engine(settings)


def comment(engine: context.Engine, forge: ForgeHandle, login: str, body: str, repo: str = REPO) -> str:
    # The forge records the comment (its webhook goes nowhere here); intake then handles it directly.
    _, made = forge.admin("POST", "/comment", {"repo": repo, "issue": 1, "body": body, "user": login})
    return handle_comment(engine, CommentEvent(
        delivery="d", installation_id=engine.github.installation_id_for(repo), repo=repo, account="acme",
        issue_number=1, is_pull_request=False, locked=False, comment_id=made["comment"]["id"], body=body,
        author=login, author_is_bot=False))


MANAGER_ONLY = {"admin": True, "maintain": False, "write": False, "triage": False, "read": False}


@pytest.mark.parametrize("permission", [*ALLOWED, "none"])
def test_only_managers_and_admins_reprioritise(engine: context.Engine, forge: ForgeHandle, permission: str) -> None:
    comment(engine, forge, "user-admin", "/clarity run until 1")
    ex = engine.store.executions(repo=REPO)[0]
    login = f"user-{permission}" if permission != "none" else "stranger"
    outcome = comment(engine, forge, login, "/clarity priority 9")
    bot = [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]
    if MANAGER_ONLY.get(permission, False):
        assert outcome == f"priority {ex.id} 9" and engine.store.get(ex.id).priority == 9
        assert "now has priority 9 (was 5" in bot[-1]
    else:
        assert outcome.startswith("refused") and engine.store.get(ex.id).priority == 5
        needs_role = ALLOWED.get(permission, False)  # writers are told the role, readers the permission
        assert ("needs the manager role" if needs_role else "only people with write access") in bot[-1]


def test_a_manager_named_in_the_repo_config_may_reprioritise(engine: context.Engine, forge: ForgeHandle) -> None:
    managed = "acme/managed"
    forge.create_repo(managed, {"tasks_list.md": "- [ ] 1 One\n", ".github/clarity.yml": "managers: [user-write]\n"})
    forge.admin("POST", f"/repos/{managed}/issues", {"title": "one", "user": "acme"})
    forge.admin("PUT", f"/repos/{managed}/collaborators/user-write", {"permission": "write"})
    comment(engine, forge, "user-write", "/clarity run until 1", managed)
    ex = engine.store.executions(repo=managed)[0]
    assert comment(engine, forge, "user-write", "/clarity priority 2", managed) == f"priority {ex.id} 2"
    audit = [a for a in engine.store.audit() if a.get("kind") == "execution.reprioritised"]
    assert audit and audit[0]["actor"] == "user-write" and (audit[0]["from"], audit[0]["to"]) == (5, 2)


@pytest.mark.parametrize("permission", [*ALLOWED, "none"])
@pytest.mark.parametrize("body", COMMANDS)
def test_permission_matrix(engine: context.Engine, forge: ForgeHandle, permission: str, body: str) -> None:
    login = f"user-{permission}" if permission != "none" else "stranger"
    outcome = comment(engine, forge, login, body)
    allowed = ALLOWED.get(permission, False) or body in READS
    assert outcome.startswith("refused") != allowed, outcome
    bot = [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]
    reactions = [r["content"] for r in forge.admin("GET", "/state")[1]["reactions"]]
    if allowed:
        assert reactions == ["eyes"]  # every accepted command is acknowledged at once
    else:
        assert bot and "only people with write access" in bot[-1] and f"@{login}" in bot[-1]
        assert engine.store.executions(repo=REPO) == [] and reactions == []


def test_a_reader_is_answered_what_they_may_ask_and_refused_the_rest(engine: context.Engine, forge: ForgeHandle) -> None:
    outcome = comment(engine, forge, "user-read", "/clarity status\n/clarity run")
    assert outcome == "replied: status; refused: run needs team_member"
    bot = [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]
    assert bot[0].startswith("No execution on this issue yet") and "only people with write access" in bot[1]
    assert engine.store.executions(repo=REPO) == []
    assert [r["content"] for r in forge.admin("GET", "/state")[1]["reactions"]] == ["eyes"]


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
