"""What a deployment's processes share through Redis (github_app.client.SharedCache): installation tokens,
encrypted, and clone URLs; and the PR refreshed by its number (github_app.reporting.Reporter.refresh_pull).

RQ runs every step in a fresh fork, so each `GitHubApp` here stands for one such process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from github_app.client import TOKEN_MARGIN, GitHubApp, SharedCache
from github_app.reporting import PullRequestRef, Reporter
from runner.workspace import Workspace
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"


@pytest.fixture
def raw(redis_url: str, redis_client: redis.Redis) -> redis.Redis:
    """A client without decoding, as the engine's (the `redis_client` fixture deletes the test's keys)."""
    return redis.Redis.from_url(redis_url)


def process(forge: ForgeHandle, raw: redis.Redis, namespace: str, key: str | None = None) -> GitHubApp:
    """A fresh GitHubApp (an empty cache in the process) sharing the namespace's Redis cache."""
    shared = SharedCache(raw, namespace, key or forge.private_key_pem)
    return GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url, shared=shared)


def mints(forge: ForgeHandle) -> int:
    return len(forge.calls(method="POST", path="/access_tokens"))


@pytest.fixture
def installation(forge: ForgeHandle) -> int:
    forge.create_repo(REPO)
    return GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url).installation_id_for(REPO)


def test_a_token_minted_in_one_process_serves_the_next_without_a_mint(
        forge: ForgeHandle, raw: redis.Redis, namespace: str, installation: int) -> None:
    first = process(forge, raw, namespace).installation_token(installation)
    second_process = process(forge, raw, namespace)
    assert second_process.installation_token(installation) == first
    assert second_process.client(installation).rest.repos.get("acme", "widgets").parsed_data.full_name == REPO
    assert mints(forge) == 1


def test_the_shared_token_is_encrypted_and_expires_before_the_token(
        forge: ForgeHandle, raw: redis.Redis, namespace: str, installation: int) -> None:
    token = process(forge, raw, namespace).installation_token(installation)
    key = f"{namespace}:github:token:{installation}"
    stored = raw.get(key)
    assert stored is not None and token.encode() not in stored and b"ghs_" not in stored
    assert 0 < raw.pttl(key) / 1000 <= 3600 - TOKEN_MARGIN


def test_a_refused_token_is_replaced_for_every_process(
        forge: ForgeHandle, raw: redis.Redis, namespace: str, installation: int) -> None:
    old = process(forge, raw, namespace).installation_token(installation)
    forge.admin("POST", "/tokens/expire")
    gh = process(forge, raw, namespace).client(installation)
    assert gh.rest.repos.get("acme", "widgets").parsed_data.name == "widgets"  # 401, a new mint, a retry
    new = process(forge, raw, namespace).installation_token(installation)
    assert new != old and mints(forge) == 2


def test_an_entry_written_under_another_app_key_or_tampered_with_is_not_used(
        forge: ForgeHandle, raw: redis.Redis, namespace: str, installation: int) -> None:
    process(forge, raw, namespace, key="another app's private key").installation_token(installation)
    process(forge, raw, namespace).installation_token(installation)
    assert mints(forge) == 2
    raw.set(f"{namespace}:github:token:{installation}", b"not a fernet token", ex=600)
    process(forge, raw, namespace).installation_token(installation)
    assert mints(forge) == 3


def test_without_redis_every_process_asks_github_as_before(forge: ForgeHandle, installation: int) -> None:
    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url, shared=SharedCache(dead, "t", "k"))
    assert app.installation_token(installation).startswith("ghs_")
    assert app.clone_url(installation, REPO).endswith("/acme/widgets.git")


def test_the_clone_url_is_asked_once_per_deployment(
        forge: ForgeHandle, raw: redis.Redis, namespace: str, installation: int) -> None:
    urls = {process(forge, raw, namespace).clone_url(installation, REPO) for _ in range(3)}
    assert len(urls) == 1 and next(iter(urls)).endswith("/acme/widgets.git")
    assert len([c for c in forge.calls(method="GET") if c["path"].endswith("/repos/acme/widgets")]) == 1


def open_pull(forge: ForgeHandle, installation: int, tmp_path: Path) -> tuple[Reporter, PullRequestRef]:
    """A commit pushed on clarity/issue-1 and its draft PR, as the engine opens it."""
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url)
    ws = Workspace(tmp_path / "ws", app.clone_url(installation, REPO), lambda: app.installation_token(installation))
    ws.sync("clarity/issue-1", "main")
    ws.write("done.txt", b"done\n")
    ws.commit("clarity: 1 Task")
    ws.push("clarity/issue-1")
    reporter = Reporter(app.client(installation), REPO)
    return reporter, reporter.ensure_pull("clarity/issue-1", "main", "Clarity: tasks", "first", draft=True)


def test_the_pull_is_refreshed_by_its_number_without_a_search(
        forge: ForgeHandle, installation: int, tmp_path: Path) -> None:
    reporter, opened = open_pull(forge, installation, tmp_path)
    forge.admin("DELETE", "/calls")
    refreshed = reporter.refresh_pull(opened.number, "clarity/issue-1", "second", draft=False)
    assert refreshed is not None and refreshed.number == opened.number and not refreshed.draft
    calls = [(c["method"], c["path"]) for c in forge.calls(surface="rest")]
    assert calls == [("PATCH", f"/repos/acme/widgets/pulls/{opened.number}"), ("POST", "/graphql")]
    pull = next(i for i in forge.admin("GET", "/state")[1]["issues"] if i.get("pull"))
    assert pull["body"] == "second" and pull["pull"]["draft"] is False


def test_a_closed_pull_or_one_on_another_branch_is_not_refreshed_in_place(
        forge: ForgeHandle, installation: int, tmp_path: Path) -> None:
    reporter, opened = open_pull(forge, installation, tmp_path)
    assert reporter.refresh_pull(opened.number, "another-branch", "second", draft=True) is None
    reporter.gh.rest.pulls.update("acme", "widgets", opened.number, state="closed")
    assert reporter.refresh_pull(opened.number, "clarity/issue-1", "third", draft=True) is None
