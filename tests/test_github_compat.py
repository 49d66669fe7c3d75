"""Behave as github.com and GHES do: the REST API version, GraphQL errors, custom repository roles (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest
from githubkit.exception import RequestFailed

from clarity.settings import GITHUB_API_VERSION, Settings, SettingsError
from clarity.status import ExecutionStatus
from github_app import repos
from github_app.client import GitHubApp, describe_error
from github_app.roles import Role, repository_role, role_for
from tests.conftest_forge import ForgeHandle
from tests.e2e import REPO, make_repo, tasks_md, wait_settled

GHES_ONLY = "2022-11-28"


# -- the REST API version ------------------------------------------------------------------------------------
def test_settings_pin_the_rest_api_version_ghes_knows_unless_told_otherwise() -> None:
    def read(env: dict[str, str]) -> str:
        return Settings.from_env(env, require_github=False).github_api_version

    assert read({}) == GITHUB_API_VERSION == GHES_ONLY
    assert read({"CLARITY_GITHUB_API_VERSION": "2026-03-10"}) == "2026-03-10"
    with pytest.raises(SettingsError, match="CLARITY_GITHUB_API_VERSION must be a REST API version"):
        read({"CLARITY_GITHUB_API_VERSION": "v3"})


def test_a_forge_like_ghes_refuses_other_versions_with_githubs_message(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    assert forge.admin("PUT", "/api-versions", {"mode": "ghes"}) == (200, {"versions": [GHES_ONLY]})
    gh = forge.app_client()  # githubkit as it comes: its newest version, 2026-03-10
    with pytest.raises(RequestFailed) as refused:
        gh.rest.apps.get_repo_installation("octo", "hello")
    assert refused.value.response.status_code == 400
    assert refused.value.response.json()["message"] == (
        'The version you specified in the "X-GitHub-API-Version" request header, "2026-03-10", is not a supported '
        'version. The following versions are currently supported: "2022-11-28" (most recent).')


def test_every_call_of_clarity_names_the_pinned_version(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    forge.admin("PUT", "/api-versions", {"mode": "ghes"})
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url)
    gh = app.client(app.installation_id_for("octo/hello"))  # the JWT call, then a token minted
    assert repos.default_branch(gh, "octo/hello") == "main"
    assert type(gh.rest.repos).__module__.startswith("githubkit_schemas.v2022_11_28")  # the version's own models
    calls = forge.calls(surface="rest")
    assert len(calls) == 3 and {c["api_version"] for c in calls} == {GHES_ONLY}, calls


# -- GraphQL errors --------------------------------------------------------------------------------------------
def test_a_graphql_error_is_a_request_failure_that_says_what_github_refused(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    forge.admin("POST", "/faults", {"path_regex": "^/graphql$", "kind": "graphql_error",
                                    "message": "Pull request is in clean status"})
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url)
    gh = app.client(app.installation_id_for("octo/hello"))
    with pytest.raises(RequestFailed) as refused:  # caught wherever REST failures are
        gh.graphql.request("mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) "
                           "{ pullRequest { isDraft } } }", {"id": "x"})
    assert describe_error(refused.value) == (
        "GitHub's GraphQL API refused the request: Pull request is in clean status (FORBIDDEN)")


# -- custom repository roles -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("permission", "role_name", "expected"), [
    ("admin", "admin", "admin"),
    ("write", "maintain", "maintain"),  # built-in roles: role_name is the precise one
    ("write", "write", "write"),
    ("read", "triage", "triage"),
    ("read", "read", "read"),
    ("none", None, "none"),
    ("write", None, "write"),  # GHES releases without role_name
    ("write", "triage-plus", "write"),  # custom roles: their base permission
    ("admin", "Security Manager", "admin"),
    ("read", "auditor", "read"),
    ("write", "", "write"),
])
def test_custom_repository_roles_count_as_their_base_permission(permission: str, role_name: str | None,
                                                                expected: str) -> None:
    assert repository_role(permission, role_name) == expected


def test_a_custom_role_on_a_write_base_is_a_team_member() -> None:
    assert role_for(repository_role("write", "triage-plus"), "ada") is Role.TEAM_MEMBER
    assert role_for(repository_role("read", "triage-plus"), "ada") is Role.VIEWER


def test_the_forge_answers_a_custom_role_like_github(forge: ForgeHandle) -> None:
    forge.create_repo("octo/hello")
    status, _ = forge.admin("PUT", "/repos/octo/hello/collaborators/ada",
                            {"permission": "write", "role_name": "triage-plus"})
    assert status == 200
    gh = forge.installation_client("octo/hello")
    data = gh.rest.repos.get_collaborator_permission_level("octo", "hello", "ada").parsed_data
    assert (data.permission, data.role_name) == ("write", "triage-plus")
    assert repos.permission(gh, "octo/hello", "ada") == "write"


# -- through the whole product ---------------------------------------------------------------------------------
def test_against_ghes_a_run_completes_and_never_names_another_api_version(stack, tmp_path: Path) -> None:
    stack.admin("PUT", "/api-versions", json={"mode": "ghes"})
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False),
                                        ("1.2", "Add CI", False)))
    assert stack.comment(REPO, 1, "/clarity run", user="ada")["status_code"] == 202
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    calls = stack.admin("GET", "/calls", params={"surface": "rest"})
    assert {c["path"] for c in calls} >= {"/repos/acme/widgets/pulls", "/graphql"}
    assert {c["api_version"] for c in calls} == {GHES_ONLY}, [c for c in calls if c["api_version"] != GHES_ONLY]
    assert not [c for c in calls if c["status"] == 400]


def test_a_graphql_error_does_not_end_the_execution_as_an_internal_error(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False),
                                        ("1.2", "Add CI", False)))
    assert stack.comment(REPO, 1, "/clarity run until 1.1", user="ada")["status_code"] == 202
    first = wait_settled(stack)
    assert first.status is ExecutionStatus.PAUSED, first.reason  # its PR is ready for review now
    # Running again turns the PR back into a draft (GraphQL only), which GitHub refuses here.
    stack.admin("POST", "/faults", json={"path_regex": "^/graphql$", "kind": "graphql_error", "count": 5,
                                         "message": "Resource not accessible by integration"})
    assert stack.comment(REPO, 1, "/clarity run", user="ada")["status_code"] == 202
    ex = wait_settled(stack, since=first.finished_at)
    assert "internal error" not in ex.reason
    assert "GitHub's GraphQL API refused the request: Resource not accessible by integration" in ex.reason


def test_a_collaborator_with_a_custom_role_on_write_may_run(stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "Create skeleton", False)), collaborators={"bob": "read"})
    stack.admin("PUT", f"/repos/{REPO}/collaborators/ada", json={"permission": "write", "role_name": "triage-plus"})
    assert stack.comment(REPO, 1, "/clarity run", user="ada")["status_code"] == 202
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
