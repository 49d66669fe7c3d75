"""The forge answers githubkit like GitHub does, serves git over smart HTTP and sends signed webhooks."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed, SecondaryRateLimitExceeded
from githubkit.webhooks import parse, verify

if TYPE_CHECKING:
    from tests.conftest_forge import ForgeHandle, WebhookReceiver

# fixtures live in a plugin module, so a root conftest can load them the same way


FIXTURES = Path(__file__).parent / "fixtures" / "github-webhooks"
REPO_ROOT = Path(__file__).resolve().parents[1]


# helpers
def token_for(forge: ForgeHandle, full_name: str) -> str:
    """A fresh installation token for the repo's installation, obtained through githubkit."""
    gh = forge.app_client()
    owner, repo = full_name.split("/")
    installation = gh.rest.apps.get_repo_installation(owner, repo).parsed_data
    return gh.rest.apps.create_installation_access_token(installation.id).parsed_data.token


def git(
    *args: str, cwd: Path, token: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run git with the token in an http.extraHeader (never in the URL or argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "true",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(cwd),
            "GIT_AUTHOR_NAME": "Tester",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "Tester",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        }
    )
    if token is not None:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "http.extraHeader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }
        )
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc


def clone(forge: ForgeHandle, full_name: str, dest: Path, token: str) -> Path:
    """Clone a forge repo into `dest`."""
    git("clone", "-q", f"{forge.url}/{full_name}.git", str(dest), cwd=dest.parent, token=token)
    return dest


def push_branch(
    forge: ForgeHandle,
    full_name: str,
    tmp_path: Path,
    branch: str,
    files: dict[str, str],
    token: str | None = None,
) -> str:
    """Clone, commit `files` on a new branch, push it; returns the pushed SHA."""
    token = token or token_for(forge, full_name)
    work = tmp_path / f"work-{branch.replace('/', '-')}"
    if not work.exists():
        clone(forge, full_name, work, token)
        git("checkout", "-q", "-b", branch, cwd=work)
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"change on {branch}", cwd=work)
    git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work, token=token)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def raw(
    forge: ForgeHandle, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """A REST call without githubkit, for malformed credentials and unknown routes."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(forge.api_url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def failure(call: Any) -> RequestFailed:
    """The RequestFailed a githubkit call raises."""
    with pytest.raises(RequestFailed) as info:
        call()
    return info.value


# app authentication
def test_app_jwt_reads_app_and_installations(forge: ForgeHandle) -> None:
    created = forge.create_repo("octo/hello")
    gh = forge.app_client()
    app = gh.rest.apps.get_authenticated().parsed_data
    assert app is not None and app.id == forge.app_id and app.slug == "clarity"
    installation = gh.rest.apps.get_repo_installation("octo", "hello").parsed_data
    assert installation.id == created["installation_id"] == 1000
    assert installation.account is not None and installation.account.login == "octo"  # type: ignore[union-attr]
    assert gh.rest.apps.get_installation(installation.id).parsed_data.app_slug == "clarity"


def test_installation_token_lasts_one_hour_and_looks_like_githubs(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    gh = forge.app_client()
    installation_id = gh.rest.apps.get_repo_installation("octo", "hello").parsed_data.id
    response = gh.rest.apps.create_installation_access_token(installation_id)
    assert response.status_code == 201
    token = response.parsed_data
    assert token.token.startswith("ghs_") and len(token.token) == 40 and token.token[4:].isalnum()
    expires = time.mktime(time.strptime(token.expires_at, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 3500 < expires - time.time() <= 3600


def test_second_repo_of_an_owner_shares_the_installation(forge: ForgeHandle) -> None:
    first = forge.create_repo("octo/one")
    second = forge.create_repo("octo/two")
    other = forge.create_repo("hubot/three")
    assert first["installation_id"] == second["installation_id"] != other["installation_id"]


def test_jwt_signed_with_another_key_is_rejected(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    stranger = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    gh = GitHub(
        AppAuthStrategy(forge.app_id, stranger),
        base_url=forge.api_url + "/",
        cache_strategy=MemCacheStrategy(),
    )
    error = failure(lambda: gh.rest.apps.get_repo_installation("octo", "hello"))
    assert error.response.status_code == 401
    assert error.response.json()["message"] == "A JSON web token could not be decoded"


@pytest.mark.parametrize(
    ("iat_offset", "exp_offset", "message"),
    [
        (-1200, -600, "'Expiration time' claim ('exp') must be a numeric value"),
        (-60, 1200, "'Expiration time' claim ('exp') is too far in the future"),
        (600, 900, "'Issued at' claim ('iat') must be an Integer"),
    ],
)
def test_jwt_with_bad_times_is_rejected(
    forge: ForgeHandle, iat_offset: int, exp_offset: int, message: str
) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": str(forge.app_id), "iat": now + iat_offset, "exp": now + exp_offset},
        forge.private_key_pem,
        algorithm="RS256",
    )
    status, body = raw(forge, "GET", "/app", {"Authorization": f"Bearer {token}"})
    assert status == 401 and body["message"].startswith(message)


def test_jwt_for_another_app_id_is_rejected(forge: ForgeHandle) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": "999", "iat": now - 30, "exp": now + 300}, forge.private_key_pem, algorithm="RS256"
    )
    assert raw(forge, "GET", "/app", {"Authorization": f"Bearer {token}"})[0] == 401


def test_unknown_token_gets_bad_credentials(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    status, body = raw(forge, "GET", "/repos/octo/hello", {"Authorization": "token ghs_" + "x" * 36})
    assert [c["auth"] for c in forge.calls(surface="rest")] == ["invalid"]
    assert status == 401
    assert body == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }


def test_rest_calls_require_authentication(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    assert raw(forge, "GET", "/repos/octo/hello") == (
        401,
        {
            "message": "Requires authentication",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401",
        },
    )


def test_token_cannot_reach_another_installations_repo(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    forge.create_repo("hubot/secret")
    gh = forge.installation_client("octo/hello")
    assert gh.rest.repos.get("octo", "hello").status_code == 200
    assert failure(lambda: gh.rest.repos.get("hubot", "secret")).response.status_code == 404


def test_token_narrowed_to_one_repo_cannot_see_its_sibling(forge: ForgeHandle) -> None:
    forge.create_repo("octo/one")
    forge.create_repo("octo/two")
    gh = forge.app_client()
    installation_id = gh.rest.apps.get_repo_installation("octo", "one").parsed_data.id
    token = gh.rest.apps.create_installation_access_token(installation_id, repositories=["one"]).parsed_data
    assert token.repository_selection == "selected"
    assert raw(forge, "GET", "/repos/octo/one", {"Authorization": f"token {token.token}"})[0] == 200
    assert raw(forge, "GET", "/repos/octo/two", {"Authorization": f"token {token.token}"})[0] == 404


def test_expired_installation_tokens_are_bad_credentials(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    gh = forge.installation_client("octo/hello")
    gh.rest.repos.get("octo", "hello")
    assert forge.admin("POST", "/tokens/expire")[1]["expired"] >= 1
    error = failure(lambda: gh.rest.repos.get("octo", "hello"))
    assert error.response.status_code == 401 and error.response.json()["message"] == "Bad credentials"


# repository reads
def test_repository_contents_refs_and_branches_come_from_git(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello", {"tasks_list.md": "- [ ] 1. Task\n", "docs/a.md": "a\n"})
    gh = forge.installation_client("octo/hello")
    repo = gh.rest.repos.get("octo", "hello").parsed_data
    assert repo.clone_url == f"{forge.url}/octo/hello.git" and repo.default_branch == "main"
    assert repo.html_url == f"{forge.url}/octo/hello"
    content = gh.rest.repos.get_content("octo", "hello", "tasks_list.md", ref="main").parsed_data
    assert base64.b64decode(content.content).decode() == "- [ ] 1. Task\n"  # type: ignore[union-attr]
    listing = gh.rest.repos.get_content("octo", "hello", "docs").parsed_data
    assert [entry.path for entry in listing] == ["docs/a.md"]  # type: ignore[union-attr]
    assert failure(lambda: gh.rest.repos.get_content("octo", "hello", "nope.md")).response.status_code == 404
    ref = gh.rest.git.get_ref("octo", "hello", "heads/main").parsed_data
    branch = gh.rest.repos.get_branch("octo", "hello", "main").parsed_data
    assert ref.object_.sha == branch.commit.sha and branch.commit.commit.author.name == "Forge"  # type: ignore[union-attr]
    assert failure(lambda: gh.rest.git.get_ref("octo", "hello", "heads/nope")).response.status_code == 404


def test_repo_seeded_from_a_git_working_copy_keeps_its_branches(forge: ForgeHandle, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    git("init", "-q", "-b", "trunk", cwd=source)
    (source / "a.txt").write_text("a\n")
    git("add", "-A", cwd=source)
    git("commit", "-q", "-m", "first", cwd=source)
    git("branch", "feature", cwd=source)
    created = forge.create_repo("octo/seeded", source_dir=source)
    assert created["default_branch"] == "trunk"
    gh = forge.installation_client("octo/seeded")
    assert gh.rest.repos.get_branch("octo", "seeded", "feature").parsed_data.name == "feature"
    assert gh.rest.repos.get("octo", "seeded").parsed_data.default_branch == "trunk"


@pytest.mark.parametrize(
    ("role", "permission"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
    ],
)
def test_collaborator_roles_map_to_githubs_legacy_permission(
    forge: ForgeHandle, role: str, permission: str
) -> None:
    forge.create_repo("octo/hello")
    assert forge.admin("PUT", "/repos/octo/hello/collaborators/mona", {"permission": role})[0] == 200
    gh = forge.installation_client("octo/hello")
    answer = gh.rest.repos.get_collaborator_permission_level("octo", "hello", "mona").parsed_data
    assert (answer.permission, answer.role_name) == (permission, role)


def test_owner_is_admin_and_strangers_read_public_repos(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    forge.create_repo("octo/private", private=True)
    forge.admin("POST", "/users", {"login": "stranger"})
    gh = forge.installation_client("octo/hello")
    assert (
        gh.rest.repos.get_collaborator_permission_level("octo", "hello", "octo").parsed_data.permission
        == "admin"
    )
    public = gh.rest.repos.get_collaborator_permission_level("octo", "hello", "stranger").parsed_data
    assert (public.permission, public.role_name) == ("read", "read")
    private = gh.rest.repos.get_collaborator_permission_level("octo", "private", "stranger").parsed_data
    assert private.permission == "none"
    missing = failure(lambda: gh.rest.repos.get_collaborator_permission_level("octo", "hello", "ghost"))
    assert missing.response.status_code == 404


# issues, comments, reactions
def test_bot_comments_and_reactions_parse_and_follow_githubs_rules(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    status, delivered = forge.admin(
        "POST", "/comment", {"repo": "octo/hello", "issue": 1, "user": "mona", "body": "/clarity run"}
    )
    assert status == 200 and delivered["ok"] is False  # no webhook URL configured yet
    comment_id = delivered["comment"]["id"]
    gh = forge.installation_client("octo/hello")
    reply = gh.rest.issues.create_comment("octo", "hello", 1, body="On it").parsed_data
    assert reply.user is not None and (reply.user.login, reply.user.type) == ("clarity[bot]", "Bot")
    assert reply.performed_via_github_app is not None and reply.performed_via_github_app.slug == "clarity"
    first = gh.rest.reactions.create_for_issue_comment("octo", "hello", comment_id, content="eyes")
    again = gh.rest.reactions.create_for_issue_comment("octo", "hello", comment_id, content="eyes")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.parsed_data.id == again.parsed_data.id and first.parsed_data.content == "eyes"
    token = token_for(forge, "octo/hello")
    status, bad = raw(
        forge,
        "POST",
        f"/repos/octo/hello/issues/comments/{comment_id}/reactions",
        {"Authorization": f"token {token}"},
        {"content": "party"},
    )
    assert status == 422 and bad["errors"][0]["field"] == "content"
    assert [
        r.content for r in gh.rest.reactions.list_for_issue_comment("octo", "hello", comment_id).parsed_data
    ] == ["eyes"]
    assert gh.rest.issues.get_comment("octo", "hello", comment_id).parsed_data.reactions.eyes == 1  # type: ignore[union-attr]
    edited = gh.rest.issues.update_comment("octo", "hello", reply.id, body="Done").parsed_data
    assert edited.body == "Done"
    bodies = [c.body for c in gh.rest.issues.list_comments("octo", "hello", 1).parsed_data]
    assert bodies == ["/clarity run", "Done"]
    issue = gh.rest.issues.get("octo", "hello", 1).parsed_data
    assert issue.title == "Issue #1" and issue.comments == 2 and not issue.pull_request


def test_bot_cannot_edit_someone_elses_comment(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    comment_id = forge.admin(
        "POST", "/comment", {"repo": "octo/hello", "issue": 1, "user": "mona", "body": "hi"}
    )[1]["comment"]["id"]
    gh = forge.installation_client("octo/hello")
    assert (
        failure(
            lambda: gh.rest.issues.update_comment("octo", "hello", comment_id, body="x")
        ).response.status_code
        == 403
    )


def test_too_long_comment_is_refused(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    gh = forge.installation_client("octo/hello")
    number = gh.rest.issues.create("octo", "hello", title="Tasks").parsed_data.number
    error = failure(lambda: gh.rest.issues.create_comment("octo", "hello", number, body="x" * 65537))
    assert error.response.status_code == 422
    assert "Body is too long" in error.response.json()["errors"][0]["message"]


def test_comment_lists_paginate_with_link_headers(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    gh = forge.installation_client("octo/hello")
    number = gh.rest.issues.create("octo", "hello", title="Busy").parsed_data.number
    for index in range(5):
        gh.rest.issues.create_comment("octo", "hello", number, body=f"c{index}")
    page = gh.rest.issues.list_comments("octo", "hello", number, per_page=2)
    assert len(page.parsed_data) == 2 and 'rel="next"' in page.headers["link"]
    everything = list(
        gh.rest.paginate(
            gh.rest.issues.list_comments, owner="octo", repo="hello", issue_number=number, per_page=2
        )
    )
    assert [c.body for c in everything] == [f"c{i}" for i in range(5)]


# pull requests
def test_pull_request_lifecycle_follows_pushes(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    token = token_for(forge, "octo/hello")
    first_sha = push_branch(forge, "octo/hello", tmp_path, "clarity/issue-1", {"a.txt": "1\n"}, token)
    gh = forge.installation_client("octo/hello")
    created = gh.rest.pulls.create(
        "octo", "hello", title="Tasks 1-2", head="clarity/issue-1", base="main", body="Refs #1", draft=True
    )
    assert created.status_code == 201
    pull = created.parsed_data
    assert pull.head.sha == first_sha and pull.draft is True and pull.user.login == "clarity[bot]"
    assert (pull.commits, pull.additions, pull.changed_files) == (1, 1, 1)
    as_issue = gh.rest.issues.get("octo", "hello", pull.number).parsed_data
    assert as_issue.pull_request is not None
    listed = gh.rest.pulls.list("octo", "hello", head="octo:clarity/issue-1", state="open").parsed_data
    assert [p.number for p in listed] == [pull.number]
    assert gh.rest.pulls.list("octo", "hello", head="octo:other").parsed_data == []
    second_sha = push_branch(forge, "octo/hello", tmp_path, "clarity/issue-1", {"b.txt": "2\n"}, token)
    assert gh.rest.pulls.get("octo", "hello", pull.number).parsed_data.head.sha == second_sha
    renamed = gh.rest.pulls.update("octo", "hello", pull.number, title="Tasks 1-3").parsed_data
    assert renamed.title == "Tasks 1-3" and renamed.draft is True
    closed = gh.rest.pulls.update("octo", "hello", pull.number, state="closed").parsed_data
    assert closed.state == "closed" and closed.closed_at is not None


def test_pull_request_validation_matches_github(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    push_branch(forge, "octo/hello", tmp_path, "feature", {"a.txt": "1\n"})
    gh = forge.installation_client("octo/hello")
    missing = failure(lambda: gh.rest.pulls.create("octo", "hello", title="t", head="nope", base="main"))
    assert missing.response.status_code == 422
    assert missing.response.json()["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}
    ]
    same = failure(lambda: gh.rest.pulls.create("octo", "hello", title="t", head="main", base="main"))
    assert same.response.json()["errors"][0]["message"] == "No commits between main and main"
    gh.rest.pulls.create("octo", "hello", title="t", head="feature", base="main")
    duplicate = failure(
        lambda: gh.rest.pulls.create("octo", "hello", title="t", head="octo:feature", base="main")
    )
    assert duplicate.response.json()["message"] == "Validation Failed"
    assert (
        duplicate.response.json()["errors"][0]["message"] == "A pull request already exists for octo:feature."
    )


def test_draft_becomes_ready_through_graphql_like_on_github(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    push_branch(forge, "octo/hello", tmp_path, "work", {"a.txt": "a\n"})
    gh = forge.installation_client("octo/hello")
    pull = gh.rest.pulls.create("octo", "hello", title="t", head="work", base="main", draft=True).parsed_data
    answer = gh.graphql.request(
        "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) "
        "{ pullRequest { isDraft } } }",
        {"id": pull.node_id},
    )
    assert answer["markPullRequestReadyForReview"]["pullRequest"]["isDraft"] is False
    assert gh.rest.pulls.get("octo", "hello", pull.number).parsed_data.draft is False


def test_draft_flag_in_rest_patch_is_a_forge_convenience(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    push_branch(forge, "octo/hello", tmp_path, "work", {"a.txt": "a\n"})
    token = token_for(forge, "octo/hello")
    auth = {"Authorization": f"token {token}"}
    number = raw(
        forge,
        "POST",
        "/repos/octo/hello/pulls",
        auth,
        {"title": "t", "head": "work", "base": "main", "draft": True},
    )[1]["number"]
    status, pull = raw(forge, "PATCH", f"/repos/octo/hello/pulls/{number}", auth, {"draft": False})
    assert (status, pull["draft"]) == (200, False)


DRAFTS_REFUSED = {
    "message": "Draft pull requests are not supported in this repository.",
    "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
    "status": "422",
}


@pytest.mark.parametrize("plan", ["free", "pro"])
def test_private_repo_of_a_free_or_pro_owner_refuses_a_draft_pull_like_github(
    forge: ForgeHandle, tmp_path: Path, plan: str
) -> None:
    forge.create_repo("octo/secret", private=True, owner_plan=plan)
    push_branch(forge, "octo/secret", tmp_path, "work", {"a.txt": "a\n"})
    auth = {"Authorization": f"token {token_for(forge, 'octo/secret')}"}
    asked = {"title": "t", "head": "work", "base": "main", "draft": True}
    assert raw(forge, "POST", "/repos/octo/secret/pulls", auth, asked) == (422, DRAFTS_REFUSED)
    assert not [i for i in forge.admin("GET", "/state")[1]["issues"] if i["pull"]]  # nothing was opened
    status, pull = raw(forge, "POST", "/repos/octo/secret/pulls", auth, {**asked, "draft": False})
    assert (status, pull["draft"]) == (201, False)
    gh = forge.installation_client("octo/secret")
    with pytest.raises(Exception, match="Draft pull requests are not supported in this repository"):
        gh.graphql.request(
            "mutation($id: ID!) { convertPullRequestToDraft(input: {pullRequestId: $id}) { clientMutationId } }",
            {"id": pull["node_id"]},
        )
    assert gh.rest.pulls.get("octo", "secret", pull["number"]).parsed_data.draft is False


@pytest.mark.parametrize(("private", "plan"), [(False, "free"), (True, "team"), (True, "enterprise")])
def test_drafts_are_allowed_on_public_repos_and_on_paid_team_plans(
    forge: ForgeHandle, tmp_path: Path, private: bool, plan: str
) -> None:
    forge.create_repo("octo/hello", private=private, owner_plan=plan)
    push_branch(forge, "octo/hello", tmp_path, "work", {"a.txt": "a\n"})
    gh = forge.installation_client("octo/hello")
    pull = gh.rest.pulls.create("octo", "hello", title="t", head="work", base="main", draft=True).parsed_data
    assert pull.draft is True


def test_owner_plan_is_set_through_the_admin_api_and_checked(forge: ForgeHandle) -> None:
    def plan() -> str:
        return next(u["plan"] for u in forge.admin("GET", "/state")[1]["users"] if u["login"] == "octo")

    assert forge.admin("POST", "/users", {"login": "octo", "plan": "team"})[0] == 201
    assert plan() == "team"
    assert forge.admin("POST", "/users", {"login": "octo", "plan": "pro"})[0] == 200
    assert plan() == "pro"
    status, answer = forge.admin("POST", "/users", {"login": "octo", "plan": "gold"})
    assert status == 400 and "free, pro, team, enterprise" in answer["message"]


# check runs
def test_check_runs_accumulate_annotations_and_link_the_pull(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    sha = push_branch(forge, "octo/hello", tmp_path, "work", {"a.py": "x = 1\n"})
    gh = forge.installation_client("octo/hello")
    pull = gh.rest.pulls.create("octo", "hello", title="t", head="work", base="main").parsed_data
    annotation = {
        "path": "a.py",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "warning",
        "message": "m",
    }
    run = gh.rest.checks.create(
        "octo",
        "hello",
        name="clarity",
        head_sha=sha,
        status="in_progress",
        external_id="exec-1",
        details_url="http://dash/exec-1",
        output={"title": "Running", "summary": "1/3", "annotations": [annotation] * 50},
    )
    assert run.status_code == 201
    created = run.parsed_data
    assert created.status == "in_progress" and created.output.annotations_count == 50
    assert [p.number for p in created.pull_requests] == [pull.number]
    updated = gh.rest.checks.update(
        "octo",
        "hello",
        created.id,
        conclusion="success",
        output={"title": "Done", "summary": "3/3", "annotations": [annotation]},
        actions=[{"label": "Retry", "description": "Run again", "identifier": "retry"}],
    ).parsed_data
    assert (updated.status, updated.conclusion, updated.output.annotations_count) == (
        "completed",
        "success",
        51,
    )
    assert updated.completed_at is not None
    assert gh.rest.checks.get("octo", "hello", created.id).parsed_data.output.title == "Done"
    listed = gh.rest.checks.list_for_ref("octo", "hello", "work").parsed_data
    assert listed.total_count == 1 and listed.check_runs[0].id == created.id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, 'Invalid request.\n\n"name" wasn\'t supplied.'),
        ({"head_sha": "0" * 40}, "No commit found for SHA: " + "0" * 40),
        ({"status": "completed"}, "Validation Failed"),
        (
            {"output": {"title": "t", "summary": "x" * 65536}},
            "Invalid request.\n\nOnly 65535 characters are allowed; 65536 were supplied.",
        ),
        ({"output": {"title": "t", "summary": "é" * 40000}}, "Validation Failed"),
        (
            {"output": {"title": "t", "summary": "s", "text": "x" * 70000}},
            "Invalid request.\n\nOnly 65535 characters are allowed; 70000 were supplied.",
        ),
        (
            {
                "output": {
                    "title": "t",
                    "summary": "s",
                    "annotations": [
                        {
                            "path": "a",
                            "start_line": 1,
                            "end_line": 1,
                            "annotation_level": "notice",
                            "message": "m",
                        }
                    ]
                    * 51,
                }
            },
            "Invalid request.\n\nNo more than 50 items are allowed; 51 were supplied.",
        ),
        (
            {"actions": [{"label": "l", "description": "d", "identifier": "i"}] * 4},
            "Invalid request.\n\nNo more than 3 items are allowed; 4 were supplied.",
        ),
        (
            {"actions": [{"label": "x" * 21, "description": "d", "identifier": "i"}]},
            "Invalid request.\n\nOnly 20 characters are allowed; 21 were supplied.",
        ),
        (
            {"actions": [{"label": "l", "description": "x" * 41, "identifier": "i"}]},
            "Invalid request.\n\nOnly 40 characters are allowed; 41 were supplied.",
        ),
        (
            {"actions": [{"label": "l", "description": "d", "identifier": "x" * 21}]},
            "Invalid request.\n\nOnly 20 characters are allowed; 21 were supplied.",
        ),
    ],
)
def test_check_run_limits_are_enforced(forge: ForgeHandle, change: dict[str, Any], message: str) -> None:
    forge.create_repo("octo/hello")
    gh = forge.installation_client("octo/hello")
    sha = gh.rest.git.get_ref("octo", "hello", "heads/main").parsed_data.object_.sha
    body = {k: v for k, v in {"name": "clarity", "head_sha": sha, **change}.items() if v is not None}
    # githubkit validates request bodies itself, so bad bodies go over plain HTTP
    status, answer = raw(
        forge,
        "POST",
        "/repos/octo/hello/check-runs",
        {"Authorization": f"token {token_for(forge, 'octo/hello')}"},
        body,
    )
    assert (status, answer["message"]) == (422, message)


def test_check_runs_need_the_app(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    token = forge.admin("POST", "/users", {"login": "octo"})[1]["token"]
    gh = forge.installation_client("octo/hello")
    sha = gh.rest.git.get_ref("octo", "hello", "heads/main").parsed_data.object_.sha
    status, body = raw(
        forge,
        "POST",
        "/repos/octo/hello/check-runs",
        {"Authorization": f"token {token}"},
        {"name": "x", "head_sha": sha},
    )
    assert (status, body["message"]) == (403, "You must authenticate via a GitHub App.")


# git over smart HTTP
def test_clone_and_push_need_a_token(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello", {"README.md": "hi\n"})
    forge.create_repo("hubot/other")
    token = token_for(forge, "octo/hello")
    work = clone(forge, "octo/hello", tmp_path / "work", token)
    assert (work / "README.md").read_text() == "hi\n"
    assert "x-access-token" not in git("remote", "get-url", "origin", cwd=work).stdout
    (work / "new.txt").write_text("new\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "new", cwd=work)
    refused = git("push", "origin", "HEAD:refs/heads/main", cwd=work, check=False)
    assert refused.returncode != 0
    foreign = git(
        "push", "origin", "HEAD:refs/heads/main", cwd=work, token=token_for(forge, "hubot/other"), check=False
    )
    assert foreign.returncode != 0 and "not found" in foreign.stderr.lower()
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=work, token=token)
    gh = forge.installation_client("octo/hello")
    assert gh.rest.repos.get_content("octo", "hello", "new.txt").parsed_data.name == "new.txt"  # type: ignore[union-attr]
    anonymous = git("ls-remote", f"{forge.url}/octo/hello.git", cwd=tmp_path, check=False)
    assert anonymous.returncode != 0


def test_read_only_user_can_fetch_but_not_push(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    reader = forge.admin("POST", "/users", {"login": "reader"})[1]["token"]
    work = clone(forge, "octo/hello", tmp_path / "work", reader)
    (work / "x").write_text("x")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    refused = git("push", "origin", "HEAD:refs/heads/x", cwd=work, token=reader, check=False)
    assert refused.returncode != 0 and "denied" in refused.stderr


def test_large_gzipped_push_is_received(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    token = token_for(forge, "octo/hello")
    files = {f"blob{i}.bin": os.urandom(200_000).hex() for i in range(8)}  # ~3 MB: chunked, gzip request
    sha = push_branch(forge, "octo/hello", tmp_path, "big", files, token)
    gh = forge.installation_client("octo/hello")
    assert gh.rest.repos.get_branch("octo", "hello", "big").parsed_data.commit.sha == sha


def _commit(work: Path, files: dict[str, str]) -> None:
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "change", cwd=work)


def test_workflow_push_without_workflows_permission_is_refused_as_github_does(
    forge: ForgeHandle, tmp_path: Path
) -> None:
    forge.create_repo("octo/hello")
    assert forge.admin("PUT", "/app/permissions", {"permissions": {"workflows": "none"}})[0] == 200
    token = token_for(forge, "octo/hello")
    work = clone(forge, "octo/hello", tmp_path / "work", token)
    git("checkout", "-q", "-b", "feature", cwd=work)
    _commit(work, {".github/workflows/ci.yml": "on: push\n"})
    refused = git("push", "origin", "HEAD:refs/heads/feature", cwd=work, token=token, check=False)
    assert refused.returncode != 0
    assert (" ! [remote rejected] HEAD -> feature (refusing to allow a GitHub App to create or update workflow "
            "`.github/workflows/ci.yml` without `workflows` permission)") in refused.stderr
    gh = forge.installation_client("octo/hello")
    assert "feature" not in {b.name for b in gh.rest.repos.list_branches("octo", "hello").parsed_data}
    _commit(work, {"README.md": "only docs\n"})  # the refused commit is still in the push: still refused
    assert git("push", "origin", "HEAD:refs/heads/feature", cwd=work, token=token, check=False).returncode != 0
    forge.admin("PUT", "/app/permissions", {"permissions": {"workflows": "write"}})
    git("push", "-q", "origin", "HEAD:refs/heads/feature", cwd=work, token=token_for(forge, "octo/hello"))


def test_push_with_a_file_over_the_limit_is_refused_with_gh001(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    assert forge.admin("PUT", "/push-limits", {"max_file_bytes": 1000})[0] == 200
    token = token_for(forge, "octo/hello")
    work = clone(forge, "octo/hello", tmp_path / "work", token)
    _commit(work, {"data/big.bin": "x" * 2000, "small.txt": "y" * 10})
    refused = git("push", "origin", "HEAD:refs/heads/main", cwd=work, token=token, check=False)
    assert refused.returncode != 0
    assert "remote: error: GH001: Large files detected." in refused.stderr
    assert "File data/big.bin is 0.00 MB; this exceeds GitHub's file size limit of 0.00 MB" in refused.stderr
    assert "! [remote rejected] HEAD -> main (pre-receive hook declined)" in refused.stderr


def test_gzipped_upload_pack_request_is_inflated(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    token = token_for(forge, "octo/hello")
    gh = forge.installation_client("octo/hello")
    sha = gh.rest.git.get_ref("octo", "hello", "heads/main").parsed_data.object_.sha
    want = f"want {sha} ofs-delta\n"
    body = gzip.compress(f"{len(want) + 4:04x}{want}00000009done\n".encode())
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    request = urllib.request.Request(
        f"{forge.url}/octo/hello.git/git-upload-pack",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Encoding": "gzip",
            "Authorization": f"Basic {basic}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/x-git-upload-pack-result"
        assert b"PACK" in response.read()


# webhooks
def test_comment_webhook_is_signed_and_parses(
    forge: ForgeHandle, webhook_receiver: WebhookReceiver, tmp_path: Path
) -> None:
    forge.create_repo("octo/hello")
    forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})
    status, answer = forge.admin(
        "POST",
        "/comment",
        {
            "repo": "octo/hello",
            "issue": 3,
            "user": "mona",
            "body": "/clarity run until 1.2",
            "delivery_id": "d-1",
        },
    )
    assert status == 200 and (answer["status_code"], answer["ok"], answer["delivery_id"]) == (
        202,
        True,
        "d-1",
    )
    [hook] = webhook_receiver.received
    assert verify(forge.webhook_secret, hook.body, hook.headers["X-Hub-Signature-256"])
    assert not verify("wrong", hook.body, hook.headers["X-Hub-Signature-256"])
    assert hook.headers["X-Hub-Signature"].startswith("sha1=")
    assert hook.headers["X-Github-Event"] == "issue_comment" and hook.headers["X-Github-Delivery"] == "d-1"
    assert hook.headers["X-Github-Hook-Installation-Target-Type"] == "integration"
    assert hook.headers["X-Github-Hook-Installation-Target-Id"] == str(forge.app_id)
    assert hook.headers["User-Agent"].startswith("GitHub-Hookshot/")
    event = parse("issue_comment", hook.body)
    assert event.action == "created" and event.comment.body == "/clarity run until 1.2"  # type: ignore[union-attr]
    assert event.installation is not None and event.installation.id == 1000  # type: ignore[union-attr]
    assert event.issue.number == 3 and event.sender.login == "mona"  # type: ignore[union-attr]
    assert event.repository.clone_url == f"{forge.url}/octo/hello.git"  # type: ignore[union-attr]


def test_comment_on_a_pull_request_carries_the_pull_request_key(
    forge: ForgeHandle, tmp_path: Path, webhook_receiver: WebhookReceiver
) -> None:
    forge.create_repo("octo/hello")
    push_branch(forge, "octo/hello", tmp_path, "work", {"a.txt": "a\n"})
    gh = forge.installation_client("octo/hello")
    number = gh.rest.pulls.create("octo", "hello", title="t", head="work", base="main").parsed_data.number
    forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})
    forge.admin("POST", "/comment", {"repo": "octo/hello", "issue": number, "body": "/clarity status"})
    event = parse("issue_comment", webhook_receiver.received[0].body)
    assert event.issue.pull_request is not None  # type: ignore[union-attr]
    assert event.sender.login == "octo"  # type: ignore[union-attr]


def test_redelivery_keeps_the_delivery_id_and_body(
    forge: ForgeHandle, webhook_receiver: WebhookReceiver
) -> None:
    forge.create_repo("octo/hello")
    forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})
    first = forge.admin("POST", "/comment", {"repo": "octo/hello", "issue": 1, "body": "hi"})[1]
    again = forge.admin("POST", f"/redeliver/{first['delivery_id']}")[1]
    assert again["delivery_id"] == first["delivery_id"]
    one, two = webhook_receiver.received
    assert one.body == two.body and one.headers["X-Github-Delivery"] == two.headers["X-Github-Delivery"]
    log = forge.admin("GET", "/deliveries")[1]
    assert [d["redelivery"] for d in log] == [False, True]


def test_fixture_payloads_are_delivered_byte_for_byte(
    forge: ForgeHandle, webhook_receiver: WebhookReceiver
) -> None:
    forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})
    fixture = (FIXTURES / "issue_comment.created.payload.json").read_text()
    answer = forge.admin("POST", "/deliver", {"event": "issue_comment", "payload_raw": fixture})[1]
    assert answer["ok"] is True
    [hook] = webhook_receiver.received
    assert hook.body == fixture.encode()
    assert verify(forge.webhook_secret, hook.body, hook.headers["X-Hub-Signature-256"])
    assert parse("issue_comment", hook.body).action == "created"  # type: ignore[union-attr]


def test_rejected_delivery_is_reported(forge: ForgeHandle, webhook_receiver: WebhookReceiver) -> None:
    forge.create_repo("octo/hello")
    webhook_receiver.status = 401
    forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})
    answer = forge.admin("POST", "/comment", {"repo": "octo/hello", "issue": 1, "body": "hi"})[1]
    assert (answer["status_code"], answer["ok"]) == (401, False)


def test_cli_comment_exits_nonzero_when_the_webhook_is_refused(
    forge: ForgeHandle, webhook_receiver: WebhookReceiver
) -> None:
    forge.create_repo("octo/hello")
    forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})
    command = [
        sys.executable,
        "-m",
        "forge",
        "comment",
        "octo/hello#1",
        "/clarity run until 1.2",
        "--user",
        "mona",
        "--forge",
        forge.url,
    ]
    accepted = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert accepted.returncode == 0, accepted.stderr
    assert "202" in accepted.stdout
    webhook_receiver.status = 500
    refused = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert refused.returncode == 1


# the calls log, errors, faults, pages
def test_calls_are_recorded_without_credentials(forge: ForgeHandle, tmp_path: Path) -> None:
    forge.create_repo("octo/hello")
    token = token_for(forge, "octo/hello")
    gh = forge.installation_client("octo/hello")
    gh.rest.issues.create("octo", "hello", title="Recorded", body="b")
    clone(forge, "octo/hello", tmp_path / "work", token)
    calls = forge.calls()
    dumped = json.dumps(calls)
    assert "ghs_" not in dumped and "Bearer" not in dumped and "eyJ" not in dumped
    assert all(token not in dumped for token in forge.running.context.tokens.issued_tokens())
    create = next(c for c in calls if c["method"] == "POST" and c["path"] == "/repos/octo/hello/issues")
    assert create["request"] == {"title": "Recorded", "body": "b"} and create["status"] == 201
    assert create["auth"] == "installation" and create["actor"] == "clarity[bot]"
    assert create["response"]["title"] == "Recorded"
    assert {c["auth"] for c in calls if c["path"].endswith("/access_tokens")} == {"jwt"}
    assert any(c["surface"] == "git" and c["auth"] == "installation" for c in calls)
    forge.admin("DELETE", "/calls")
    assert forge.calls() == []


def test_unknown_routes_and_wrong_methods_are_json_404s(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    token = token_for(forge, "octo/hello")
    auth = {"Authorization": f"token {token}"}
    not_found = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
    assert raw(forge, "GET", "/nothing/here", auth) == (404, not_found)
    assert raw(forge, "DELETE", "/repos/octo/hello", auth) == (404, not_found)
    assert raw(forge, "GET", "/repos/octo/missing", auth) == (404, not_found)


def test_responses_carry_rate_limit_headers(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    gh = forge.installation_client("octo/hello")
    first = gh.rest.repos.get("octo", "hello").headers
    second = gh.rest.repos.get("octo", "hello").headers
    assert first["x-ratelimit-limit"] == "5000"
    assert int(second["x-ratelimit-remaining"]) == int(first["x-ratelimit-remaining"]) - 1


def test_injected_secondary_rate_limit_reaches_githubkit(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    gh = forge.installation_client("octo/hello", auto_retry=False)
    forge.admin(
        "POST",
        "/faults",
        {
            "path_regex": r"/issues/\d+/comments$",
            "method": "POST",
            "kind": "secondary_rate_limit",
            "retry_after": 7,
        },
    )
    number = gh.rest.issues.create("octo", "hello", title="t").parsed_data.number
    with pytest.raises(SecondaryRateLimitExceeded) as info:
        gh.rest.issues.create_comment("octo", "hello", number, body="x")
    assert info.value.retry_after.total_seconds() == 7
    assert gh.rest.issues.create_comment("octo", "hello", number, body="x").status_code == 201


def test_html_pages_resolve_html_urls(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    comment = forge.admin("POST", "/comment", {"repo": "octo/hello", "issue": 1, "body": "hello <b>"})[1]
    page_url = comment["comment"]["html_url"].split("#")[0]
    with urllib.request.urlopen(page_url, timeout=10) as response:
        html = response.read().decode()
    assert "hello &lt;b&gt;" in html
    with urllib.request.urlopen(forge.url + "/octo/hello", timeout=10) as response:
        assert "octo/hello.git" in response.read().decode()


def test_state_dump_lists_what_happened(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    forge.admin("POST", "/comment", {"repo": "octo/hello", "issue": 1, "body": "hi", "user": "mona"})
    state = forge.admin("GET", "/state")[1]
    assert [(i["number"], i["title"]) for i in state["issues"]] == [(1, "Issue #1")]
    assert [c["author"] for c in state["comments"]] == ["mona"]
