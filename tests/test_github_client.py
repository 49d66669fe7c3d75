"""The GitHub client against the forge: token cache and refresh, rate limits and 5xx bursts retried."""

from __future__ import annotations

import time

import pytest
from githubkit.exception import RequestFailed

from github_app.client import GitHubApp, RetryPolicy
from github_app.reporting import Reporter
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"


@pytest.fixture
def app(forge: ForgeHandle) -> GitHubApp:
    forge.create_repo(REPO)
    return GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url,
                     retry=RetryPolicy(base_delay=0.05))


def token_mints(forge: ForgeHandle) -> int:
    return len(forge.calls(method="POST", path="/access_tokens"))


def test_installation_token_is_cached_until_near_expiry(app: GitHubApp, forge: ForgeHandle) -> None:
    installation = app.installation_id_for(REPO)
    gh = app.client(installation)
    for _ in range(3):
        gh.rest.repos.get("acme", "widgets")
    assert token_mints(forge) == 1
    assert app.installation_token(installation) == app.installation_token(installation)
    assert token_mints(forge) == 1


def test_a_revoked_token_is_refreshed_once_and_the_call_succeeds(app: GitHubApp, forge: ForgeHandle) -> None:
    gh = app.client(app.installation_id_for(REPO))
    gh.rest.repos.get("acme", "widgets")
    forge.admin("POST", "/tokens/expire")
    assert gh.rest.repos.get("acme", "widgets").parsed_data.full_name == REPO
    assert token_mints(forge) == 2
    refused = [c for c in forge.calls(path="/repos/acme/widgets") if c["status"] == 401]
    assert len(refused) == 1


@pytest.mark.parametrize("kind", ["primary_rate_limit", "secondary_rate_limit"])
def test_rate_limit_is_waited_out_then_the_call_succeeds(app: GitHubApp, forge: ForgeHandle, kind: str) -> None:
    gh = app.client(app.installation_id_for(REPO))
    forge.admin("POST", "/faults", {"path_regex": "/repos/acme/widgets/issues/1/comments", "kind": kind,
                                    "retry_after": 2})
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    started = time.monotonic()
    Reporter(gh, REPO).comment(1, "hello after the limit")
    assert time.monotonic() - started >= 1.0  # it waited for the reset instead of hammering
    posts = [c for c in forge.calls(method="POST", path="/issues/1/comments")]
    assert [c["status"] for c in posts] == [403, 201]


def test_a_burst_of_server_errors_is_retried_with_backoff(app: GitHubApp, forge: ForgeHandle) -> None:
    gh = app.client(app.installation_id_for(REPO))
    gh.rest.repos.get("acme", "widgets")
    forge.admin("POST", "/faults", {"path_regex": "^/repos/acme/widgets$", "kind": "server_error",
                                    "status": 502, "count": 3})
    assert gh.rest.repos.get("acme", "widgets").parsed_data.name == "widgets"
    statuses = [c["status"] for c in forge.calls(method="GET", path="/repos/acme/widgets")][-4:]
    assert statuses == [502, 502, 502, 200]


def test_persistent_server_errors_give_up_with_a_clear_error(app: GitHubApp, forge: ForgeHandle) -> None:
    gh = app.client(app.installation_id_for(REPO))
    forge.admin("POST", "/faults", {"path_regex": "^/repos/acme/widgets$", "kind": "server_error",
                                    "status": 503, "count": 20})
    with pytest.raises(RequestFailed) as info:
        gh.rest.repos.get("acme", "widgets")
    assert info.value.response.status_code == 503
    assert len([c for c in forge.calls(method="GET", path="/repos/acme/widgets") if c["status"] == 503]) == 5


def test_a_rate_limit_longer_than_the_cap_is_not_slept_through(forge: ForgeHandle) -> None:
    forge.create_repo(REPO)
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url, retry=RetryPolicy(max_wait=1))
    gh = app.client(app.installation_id_for(REPO))
    forge.admin("POST", "/faults", {"path_regex": "^/repos/acme/widgets$", "kind": "secondary_rate_limit",
                                    "retry_after": 30})
    started = time.monotonic()
    with pytest.raises(RequestFailed):
        gh.rest.repos.get("acme", "widgets")
    assert time.monotonic() - started < 5
