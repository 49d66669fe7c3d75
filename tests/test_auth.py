"""Dashboard sign-in with GitHub (through the forge's OAuth web flow), scoping, CSRF, and API tokens."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

import cli
from app import create_app
from clarity import artifacts
from clarity.apitokens import TOUCH_EVERY, ApiTokens
from clarity.app_credentials import load_settings
from clarity.models import Execution
from clarity.settings import Settings, SettingsError
from clarity.store import Store
from github_app.roles import role_for_flags
from github_app.setup import SetupServer
from tests.conftest_forge import ForgeHandle
from tests.test_setup import Browser, browser, env_for, setup, setup_settings  # noqa: F401 (fixtures)

PUBLIC = "http://clarity.test"


@pytest.fixture
def world(forge: ForgeHandle, store: Store, settings: Settings) -> dict[str, Any]:
    """Two customers on the forge (installations A and B), people with roles, one execution each."""
    inst_a = forge.create_repo("alpha/app")["installation_id"]
    inst_b = forge.create_repo("beta/svc")["installation_id"]
    for repo, login, permission in (("alpha/app", "alice", "write"), ("alpha/app", "carol", "read"),
                                    ("beta/svc", "bob", "admin")):
        owner, name = repo.split("/")
        status, answer = forge.admin("PUT", f"/repos/{owner}/{name}/collaborators/{login}",
                                     {"permission": permission})
        assert status == 200, answer
    forge.admin("POST", "/users", {"login": "nobody"})
    ex_a = store.create(Execution("", inst_a, "alpha/app", "alpha", 1, False, "clarity/issue-1", "main", "alice"),
                        "test")
    ex_b = store.create(Execution("", inst_b, "beta/svc", "beta", 1, False, "clarity/issue-1", "main", "bob"),
                        "test")
    for ex in (ex_a, ex_b):
        folder = artifacts.execution_dir(settings.artifacts_dir, ex.id) / "1"
        folder.mkdir(parents=True)
        (folder / "prompt.md").write_text(f"prompt of {ex.repo}\n")
    return {"a": inst_a, "b": inst_b, "ex_a": ex_a, "ex_b": ex_b}


def signin_settings(settings: Settings, forge: ForgeHandle, public_url: str = PUBLIC) -> Settings:
    """Test settings that sign people in through the forge's OAuth client."""
    return replace(settings, github_api_url=forge.api_url, github_client_id=forge.client_id,
                   github_client_secret=forge.client_secret, dashboard_auth="github", public_url=public_url)


@pytest.fixture
def web(settings: Settings, forge: ForgeHandle, world: dict[str, Any]) -> Flask:
    """The dashboard with sign-in required."""
    return create_app(signin_settings(settings, forge))


def start(client: FlaskClient, forge: ForgeHandle) -> dict[str, str]:
    """`/login` → the forge's authorize URL; its query parameters."""
    answer = client.get("/login")
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(f"{forge.url}/login/oauth/authorize?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def authorize(forge: ForgeHandle, params: dict[str, str], login: str) -> dict[str, str]:
    """Click "Authorize" on the forge as `login`; the code and state it redirects back with."""
    page = httpx.get(f"{forge.url}/login/oauth/authorize", params={**params, "login": login})
    assert page.status_code == 200 and "Authorize Clarity" in page.text
    answer = httpx.post(f"{forge.url}/login/oauth/authorize",
                        data={**{k: params[k] for k in ("client_id", "redirect_uri", "state")}, "login": login})
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(params["redirect_uri"] + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(client: FlaskClient, forge: ForgeHandle, login: str) -> None:
    """The whole web flow for one person."""
    back = authorize(forge, start(client, forge), login)
    answer = client.get("/auth/callback", query_string=back)
    assert answer.status_code == 302, answer.get_data(as_text=True)
    assert answer.headers["Location"] == "/"


def session_of(client: FlaskClient) -> dict[str, Any]:
    with client.session_transaction() as session:
        return dict(session)


# the web flow and scoping

def test_signing_in_through_github_shows_only_the_installations_executions(
        web: Flask, forge: ForgeHandle, world: dict[str, Any]) -> None:
    client = web.test_client()
    sign_in(client, forge, "alice")
    assert session_of(client)["viewer"] == {"login": "alice", "roles": {str(world["a"]): "team_member"}}
    page = client.get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert world["ex_a"].id in text and world["ex_b"].id not in text
    assert "signed in as <strong>alice</strong>" in text
    assert client.get(f"/executions/{world['ex_a'].id}").status_code == 200
    assert client.get(f"/api/executions/{world['ex_a'].id}").get_json()["id"] == world["ex_a"].id
    assert client.get(f"/executions/{world['ex_a'].id}/artifacts/1/prompt.md").get_data(as_text=True) \
        == "prompt of alpha/app\n"


def test_another_customers_execution_and_artifacts_are_404_like_a_missing_one(
        web: Flask, forge: ForgeHandle, world: dict[str, Any]) -> None:
    client = web.test_client()
    sign_in(client, forge, "bob")
    assert session_of(client)["viewer"]["roles"] == {str(world["b"]): "admin"}
    ex_a = world["ex_a"].id
    for path in (f"/executions/{ex_a}", f"/executions/{ex_a}/artifacts", f"/executions/{ex_a}/artifacts/1/prompt.md"):
        assert client.get(path).status_code == 404, path
    hidden, missing = client.get(f"/api/executions/{ex_a}"), client.get("/api/executions/nope")
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.get_json() == {"message": f"no execution {ex_a}"}
    assert world["ex_b"].id in client.get("/").get_data(as_text=True)
    assert ex_a not in client.get("/").get_data(as_text=True)


def test_read_access_makes_a_viewer_and_no_access_sees_nothing(
        web: Flask, forge: ForgeHandle, world: dict[str, Any]) -> None:
    carol, nobody = web.test_client(), web.test_client()
    sign_in(carol, forge, "carol")
    sign_in(nobody, forge, "nobody")
    assert session_of(carol)["viewer"]["roles"] == {str(world["a"]): "viewer"}
    assert session_of(nobody)["viewer"] == {"login": "nobody", "roles": {}}
    text = nobody.get("/").get_data(as_text=True)
    assert world["ex_a"].id not in text and world["ex_b"].id not in text


@pytest.mark.parametrize(("flags", "role"), [
    ({"admin": True, "maintain": True, "push": True, "pull": True}, "admin"),
    ({"admin": False, "maintain": True, "push": True, "pull": True}, "team_member"),
    ({"admin": False, "push": True, "pull": True}, "team_member"),
    ({"admin": False, "push": False, "triage": True, "pull": True}, "viewer"),
    ({"pull": True}, "viewer"),
    (None, "viewer"),
])
def test_repository_permissions_map_to_roles_as_design_section_5(flags: dict[str, bool] | None, role: str) -> None:
    assert role_for_flags(flags) == role


def test_pages_redirect_to_login_and_json_answers_401_until_signed_in(web: Flask, world: dict[str, Any]) -> None:
    client = web.test_client()
    page = client.get(f"/executions/{world['ex_a'].id}?x=1")
    assert page.status_code == 302
    assert page.headers["Location"] == f"/login?next=%2Fexecutions%2F{world['ex_a'].id}%3Fx%3D1"
    api = client.get(f"/api/executions/{world['ex_a'].id}")
    assert api.status_code == 401 and "sign in" in api.get_json()["message"]
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    hook = client.post("/webhooks", data=b"{}", headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d1"})
    assert hook.status_code == 401 and "csrf" not in hook.get_data(as_text=True).lower()  # its signature, not ours


def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(
        web: Flask, forge: ForgeHandle, world: dict[str, Any]) -> None:
    for asked, landed in ((f"/executions/{world['ex_a'].id}", f"/executions/{world['ex_a'].id}"),
                          ("https://evil.example/", "/"), ("//evil.example/x", "/")):
        client = web.test_client()
        answer = client.get("/login", query_string={"next": asked})
        params = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
        back = authorize(forge, params, "alice")
        assert client.get("/auth/callback", query_string=back).headers["Location"] == landed


# what goes wrong

def test_a_callback_with_another_state_is_refused_and_signs_nobody_in(
        web: Flask, forge: ForgeHandle) -> None:
    client = web.test_client()
    back = authorize(forge, start(client, forge), "alice")
    answer = client.get("/auth/callback", query_string={**back, "state": "someone-elses"})
    assert answer.status_code == 400
    assert "state does not match" in answer.get_data(as_text=True)
    assert "viewer" not in session_of(client)
    assert client.get("/").status_code == 302
    # the state is spent even by a failed attempt: the right one afterwards is refused too
    assert client.get("/auth/callback", query_string=back).status_code == 400
    assert "viewer" not in session_of(client)


def test_a_callback_without_any_sign_in_started_is_refused(web: Flask) -> None:
    answer = web.test_client().get("/auth/callback", query_string={"code": "abc", "state": "xyz"})
    assert answer.status_code == 400


def test_a_code_works_once(web: Flask, forge: ForgeHandle) -> None:
    first = web.test_client()
    back = authorize(forge, start(first, forge), "alice")
    assert first.get("/auth/callback", query_string=back).status_code == 302
    second = web.test_client()  # replay the code from another browser with a state of its own
    state = start(second, forge)["state"]
    answer = second.get("/auth/callback", query_string={"code": back["code"], "state": state})
    assert answer.status_code == 400
    assert "bad_verification_code" in answer.get_data(as_text=True)
    assert "viewer" not in session_of(second)


def test_denying_the_app_on_github_signs_nobody_in(web: Flask, forge: ForgeHandle) -> None:
    client = web.test_client()
    params = start(client, forge)
    answer = httpx.post(f"{forge.url}/login/oauth/authorize",
                        data={**{k: params[k] for k in ("client_id", "redirect_uri", "state")}, "cancel": "1"})
    back = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert back["error"] == "access_denied"
    refused = client.get("/auth/callback", query_string=back)
    assert refused.status_code == 403 and "denied" in refused.get_data(as_text=True)
    assert "viewer" not in session_of(client)


def test_a_wrong_client_secret_fails_the_sign_in_with_githubs_error(
        settings: Settings, forge: ForgeHandle, world: dict[str, Any]) -> None:
    client = create_app(replace(signin_settings(settings, forge), github_client_secret="not-it")).test_client()
    back = authorize(forge, start(client, forge), "alice")
    answer = client.get("/auth/callback", query_string=back)
    assert answer.status_code == 400
    assert "incorrect_client_credentials" in answer.get_data(as_text=True)
    assert "not-it" not in answer.get_data(as_text=True)


def test_secrets_and_tokens_stay_out_of_the_logs(web: Flask, forge: ForgeHandle,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = web.test_client()
    sign_in(client, forge, "alice")
    assert "dashboard sign-in: alice sees 1 installation(s)" in caplog.text
    issued = [t for t in forge.running.context.tokens.issued_tokens() if t.startswith("ghu_")]
    assert issued
    for secret in (forge.client_secret, *issued):
        assert secret not in caplog.text
    cookie = client.get_cookie("clarity_session")
    assert cookie is not None
    for secret in (forge.client_secret, *issued):
        assert secret not in cookie.value  # the session holds login and roles, never the token


# session, logout and CSRF

def test_logout_needs_the_csrf_token_and_ends_the_session(web: Flask, forge: ForgeHandle) -> None:
    client = web.test_client()
    sign_in(client, forge, "alice")
    missing = client.post("/logout")
    assert missing.status_code == 400 and "missing CSRF token" in missing.get_data(as_text=True)
    wrong = client.post("/logout", data={"csrf_token": "guess"})
    assert wrong.status_code == 403
    assert client.get("/").status_code == 200  # still signed in
    token = session_of(client)["csrf"]
    assert f'name="csrf_token" value="{token}"' in client.get("/").get_data(as_text=True)
    header = client.post("/logout", headers={"X-CSRF-Token": token})
    assert header.status_code == 302 and header.headers["Location"] == "/login?signed_out=1"
    assert "viewer" not in session_of(client)
    assert client.get("/").status_code == 302
    landing = client.get(header.headers["Location"])  # a page, not straight back to GitHub (which signs you in)
    assert landing.status_code == 200 and "You are signed out." in landing.get_data(as_text=True)


def test_the_session_cookie_is_httponly_and_samesite_lax_and_secure_only_over_https(
        settings: Settings, forge: ForgeHandle, web: Flask) -> None:
    client = web.test_client()
    back = authorize(forge, start(client, forge), "alice")
    cookie = client.get("/auth/callback", query_string=back).headers["Set-Cookie"]
    assert cookie.startswith("clarity_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Expires=" in cookie  # a permanent session, ended by PERMANENT_SESSION_LIFETIME
    secure = create_app(signin_settings(settings, forge, public_url="https://clarity.example")).test_client()
    started = secure.get("/login")
    assert "redirect_uri=https%3A%2F%2Fclarity.example%2Fauth%2Fcallback" in started.headers["Location"]
    flags = started.headers["Set-Cookie"]
    assert "Secure" in flags and "HttpOnly" in flags and "SameSite=Lax" in flags


def test_the_open_dashboard_needs_no_sign_in_but_still_checks_csrf(settings: Settings,
                                                                   world: dict[str, Any]) -> None:
    client = create_app(settings).test_client()
    text = client.get("/").get_data(as_text=True)
    assert world["ex_a"].id in text and world["ex_b"].id in text
    assert client.get("/login").headers["Location"] == "/"
    assert client.post("/logout").status_code == 400


# API tokens

def run_cli(capsys: pytest.CaptureFixture[str], env: dict[str, str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv), env=env)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def cli_env(redis_url: str, namespace: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace}


def test_tokens_are_created_listed_used_and_revoked(
        web: Flask, world: dict[str, Any], cli_env: dict[str, str], capsys: pytest.CaptureFixture[str],
        redis_client: redis.Redis, namespace: str) -> None:
    status, out, err = run_cli(capsys, cli_env, "tokens", "create", "--role", "manager",
                               "--installation", str(world["a"]), "--name", "ci")
    assert status == 0, err
    token = out.strip()
    assert token.startswith("clr_") and "shown only now" in err and token not in err
    token_id = token[4:12]

    client = web.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/executions/{world['ex_a'].id}", headers=bearer).status_code == 200
    assert client.get(f"/api/executions/{world['ex_b'].id}", headers=bearer).status_code == 404
    overview = client.get("/", headers=bearer).get_data(as_text=True)
    assert world["ex_a"].id in overview and world["ex_b"].id not in overview
    assert client.post("/logout", headers=bearer).status_code == 302  # bearer calls need no CSRF token

    status, out, _ = run_cli(capsys, cli_env, "tokens", "list")
    assert status == 0
    [row] = [line for line in out.splitlines() if line.startswith(token_id)]
    assert row.split()[:4] == [token_id, "ci", "manager", str(world["a"])]
    assert "never" not in row  # used above
    assert token not in out

    # Redis holds the SHA-256, never the token
    keys = list(redis_client.scan_iter(f"{namespace}:apitokens*", count=1000))
    dumped = " ".join(str(redis_client.hgetall(k)) for k in keys)
    assert hashlib.sha256(token.encode()).hexdigest() in dumped and token not in dumped
    assert token.split("_", 2)[2] not in dumped

    status, out, _ = run_cli(capsys, cli_env, "tokens", "revoke", token_id[:5])
    assert status == 0 and f"revoked token {token_id} (ci)" in out
    refused = client.get(f"/api/executions/{world['ex_a'].id}", headers=bearer)
    assert refused.status_code == 401 and "not valid" in refused.get_json()["message"]
    assert run_cli(capsys, cli_env, "tokens", "list")[1].strip() == "no API tokens"


def test_an_unknown_bearer_token_is_401_even_on_the_open_dashboard(settings: Settings,
                                                                   world: dict[str, Any]) -> None:
    client = create_app(settings).test_client()
    for token in ("clr_deadbeef_" + "x" * 40, "ghp_nothing"):
        answer = client.get("/", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == 'Bearer realm="clarity"'


def test_an_operator_token_sees_every_installation(
        settings: Settings, world: dict[str, Any], cli_env: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, cli_env, "tokens", "create", "--all-installations", "--role", "admin")
    assert status == 0
    client = create_app(settings).test_client()
    for ex in (world["ex_a"], world["ex_b"]):
        assert client.get(f"/api/executions/{ex.id}", headers={"Authorization": f"Bearer {out.strip()}"}) \
            .status_code == 200


def test_last_used_is_written_at_most_once_a_minute(redis_client: redis.Redis, namespace: str) -> None:
    tokens = ApiTokens(redis_client, namespace)
    token, record = tokens.create("viewer", [7], now=1000.0)
    assert record.last_used is None and tokens.records()[0].last_used is None
    assert tokens.verify(token, now=2000.0) is not None
    assert tokens.records()[0].last_used == 2000.0
    tokens.verify(token, now=2000.0 + TOUCH_EVERY - 1)
    assert tokens.records()[0].last_used == 2000.0
    tokens.verify(token, now=2000.0 + TOUCH_EVERY)
    assert tokens.records()[0].last_used == 2000.0 + TOUCH_EVERY
    assert tokens.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


@pytest.mark.parametrize(("argv", "message"), [
    (("tokens", "create", "--role", "manager"), "name the installations"),
    (("tokens", "create", "--installation", "1", "--all-installations"), "not both"),
    (("tokens", "create", "--installation", "0"), "positive"),
    (("tokens", "revoke"), "takes the token's ID"),
    (("tokens", "revoke", "zzzz"), "no token with id 'zzzz'"),
])
def test_token_commands_explain_what_is_wrong(argv: tuple[str, ...], message: str, cli_env: dict[str, str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(capsys, cli_env, *argv)
    assert status == 2 and message in err


def test_revoking_by_an_ambiguous_prefix_names_the_candidates(redis_client: redis.Redis, namespace: str) -> None:
    tokens = ApiTokens(redis_client, namespace)
    made = [tokens.create("viewer", [1])[1] for _ in range(40)]
    by_first: dict[str, list[Any]] = {}
    for record in made:
        by_first.setdefault(record.id[0], []).append(record)
    shared = next(group for group in by_first.values() if len(group) > 1)  # 40 ids over 16 first characters
    with pytest.raises(ValueError, match="give more of the id"):
        tokens.revoke(shared[0].id[0])
    assert tokens.revoke(shared[0].id).id == shared[0].id
    assert len(tokens.records()) == 39


# settings

def test_after_clarity_setup_people_sign_in_with_the_stored_apps_oauth_client(
        setup: SetupServer, setup_settings: Settings, forge: ForgeHandle, browser: Browser,  # noqa: F811
        world: dict[str, Any]) -> None:
    browser.through(setup.url)
    app = setup.wait(5).app
    assert app is not None
    settings = load_settings(env_for(setup_settings))
    assert (settings.github_client_id, settings.github_client_secret) == (app.client_id, app.client_secret)
    assert settings.dashboard_auth == "github"
    client = create_app(settings).test_client()
    sign_in(client, forge, "alice")  # the manifest registered <public_url>/auth/callback, which the forge enforces
    assert world["ex_a"].id in client.get("/").get_data(as_text=True)

    elsewhere = create_app(replace(settings, public_url="http://elsewhere.test")).test_client()
    answer = httpx.get(elsewhere.get("/login").headers["Location"])
    assert answer.status_code == 302
    assert answer.headers["location"].startswith(f"{setup_settings.public_url}/auth/callback?error=redirect_uri_mismatch")


def test_sign_in_is_on_by_default_when_the_oauth_client_is_known(tmp_path: Path) -> None:
    base = {"CLARITY_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base, require_github=False).dashboard_auth == "closed"  # never open by default
    assert Settings.from_env({**base, "CLARITY_DASHBOARD_AUTH": "open"}, require_github=False).dashboard_auth \
        == "open"
    client = {**base, "CLARITY_GITHUB_CLIENT_ID": "Iv1.x", "CLARITY_GITHUB_CLIENT_SECRET": "s3cret"}
    on = Settings.from_env(client, require_github=False)
    assert on.dashboard_auth == "github" and "s3cret" in on.secret_values() and "s3cret" not in repr(on)
    assert Settings.from_env({**client, "CLARITY_DASHBOARD_AUTH": "open"}, require_github=False).dashboard_auth \
        == "open"
    with pytest.raises(SettingsError, match="CLARITY_DASHBOARD_AUTH=github needs CLARITY_GITHUB_CLIENT_ID"):
        Settings.from_env({**base, "CLARITY_DASHBOARD_AUTH": "github"}, require_github=False)
    with pytest.raises(SettingsError, match="CLARITY_DASHBOARD_AUTH must be one of github, closed, open"):
        Settings.from_env({**base, "CLARITY_DASHBOARD_AUTH": "maybe"}, require_github=False)
