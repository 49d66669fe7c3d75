"""The forge's OAuth web flow and user endpoints, as GitHub answers them (dashboard sign-in runs on these)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from githubkit import GitHub, TokenAuthStrategy
from githubkit.exception import RequestFailed

from tests.conftest_forge import ForgeHandle

CALLBACK = "http://dash.test/auth/callback"


def code_for(forge: ForgeHandle, login: str, redirect_uri: str = CALLBACK, state: str = "s1") -> str:
    answer = httpx.post(f"{forge.url}/login/oauth/authorize", data={
        "client_id": forge.client_id, "redirect_uri": redirect_uri, "state": state, "login": login})
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == [state]
    return query["code"][0]


def exchange(forge: ForgeHandle, the_code: str, **overrides: str) -> dict[str, Any]:
    body = {"client_id": forge.client_id, "client_secret": forge.client_secret, "code": the_code,
            "redirect_uri": CALLBACK, **overrides}
    answer = httpx.post(f"{forge.url}/login/oauth/access_token", json=body, headers={"Accept": "application/json"})
    assert answer.status_code == 200  # GitHub answers failures with 200 too
    return answer.json()  # type: ignore[no-any-return]


def user_client(forge: ForgeHandle, token: str) -> GitHub[Any]:
    return forge.clients.enter_context(GitHub(TokenAuthStrategy(token), base_url=forge.api_url + "/"))


@pytest.fixture
def people(forge: ForgeHandle) -> dict[str, int]:
    inst_a = forge.create_repo("alpha/app")["installation_id"]
    forge.create_repo("alpha/lib")
    inst_b = forge.create_repo("beta/svc")["installation_id"]
    forge.admin("PUT", "/repos/alpha/app/collaborators/mona", {"permission": "maintain"})
    forge.admin("PUT", "/repos/beta/svc/collaborators/mona", {"permission": "triage"})
    return {"a": inst_a, "b": inst_b}


def test_the_authorize_page_names_the_app_and_offers_the_users(forge: ForgeHandle, people: dict[str, int]) -> None:
    page = httpx.get(f"{forge.url}/login/oauth/authorize", params={
        "client_id": forge.client_id, "redirect_uri": CALLBACK, "state": "x", "login": "mona"})
    assert page.status_code == 200
    assert "Authorize Clarity" in page.text and '<option value="mona" selected>' in page.text
    unknown = httpx.get(f"{forge.url}/login/oauth/authorize", params={"client_id": "nope", "redirect_uri": CALLBACK})
    assert unknown.status_code == 404


def test_a_code_becomes_a_user_token_once(forge: ForgeHandle, people: dict[str, int]) -> None:
    code = code_for(forge, "mona")
    token = exchange(forge, code)
    assert token["access_token"].startswith("ghu_") and token["token_type"] == "bearer"
    assert exchange(forge, code) == {
        "error": "bad_verification_code", "error_description": "The code passed is incorrect or expired.",
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/"
                     "troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"}


@pytest.mark.parametrize(("overrides", "error"), [
    ({"client_secret": "wrong"}, "incorrect_client_credentials"),
    ({"client_id": "Iv1.other"}, "incorrect_client_credentials"),
    ({"code": "0" * 20}, "bad_verification_code"),
    ({"redirect_uri": "http://elsewhere.test/cb"}, "redirect_uri_mismatch"),
])
def test_bad_exchanges_get_githubs_errors(forge: ForgeHandle, people: dict[str, int],
                                          overrides: dict[str, str], error: str) -> None:
    answer = exchange(forge, code_for(forge, "mona"), **overrides)
    assert answer["error"] == error and "access_token" not in answer


def test_without_accept_json_the_answer_is_form_encoded(forge: ForgeHandle, people: dict[str, int]) -> None:
    answer = httpx.post(f"{forge.url}/login/oauth/access_token", data={
        "client_id": forge.client_id, "client_secret": forge.client_secret, "code": code_for(forge, "mona")})
    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    fields = parse_qs(answer.text)
    assert fields["access_token"][0].startswith("ghu_") and fields["token_type"] == ["bearer"]


def test_a_user_token_sees_the_user_and_their_installations_with_permissions(
        forge: ForgeHandle, people: dict[str, int]) -> None:
    gh = user_client(forge, exchange(forge, code_for(forge, "mona"))["access_token"])
    assert gh.rest.users.get_authenticated().parsed_data.login == "mona"
    listed = gh.rest.apps.list_installations_for_authenticated_user().parsed_data
    assert listed.total_count == 2 and {i.id for i in listed.installations} == {people["a"], people["b"]}
    repos = gh.rest.apps.list_installation_repos_for_authenticated_user(people["a"]).parsed_data
    assert [r.full_name for r in repos.repositories] == ["alpha/app"]  # alpha/lib: no role there
    assert repos.repositories[0].model_dump()["permissions"] == {
        "admin": False, "maintain": True, "push": True, "triage": True, "pull": True}
    triage = gh.rest.apps.list_installation_repos_for_authenticated_user(people["b"]).parsed_data.repositories[0]
    assert triage.model_dump()["permissions"] == {
        "admin": False, "maintain": False, "push": False, "triage": True, "pull": True}


def test_owners_reach_every_repo_of_their_installation_and_strangers_none(
        forge: ForgeHandle, people: dict[str, int]) -> None:
    owner = user_client(forge, exchange(forge, code_for(forge, "alpha"))["access_token"])
    repos = owner.rest.apps.list_installation_repos_for_authenticated_user(people["a"]).parsed_data.repositories
    assert sorted(r.full_name for r in repos) == ["alpha/app", "alpha/lib"]
    assert all(r.model_dump()["permissions"]["admin"] for r in repos)
    with pytest.raises(RequestFailed) as hidden:
        owner.rest.apps.list_installation_repos_for_authenticated_user(people["b"])
    assert hidden.value.response.status_code == 404


def test_user_installations_need_a_token_made_for_the_app(forge: ForgeHandle, people: dict[str, int]) -> None:
    personal = forge.admin("POST", "/users", {"login": "mona"})[1]["token"]
    with pytest.raises(RequestFailed) as refused:
        user_client(forge, personal).rest.apps.list_installations_for_authenticated_user()
    assert refused.value.response.status_code == 403
    assert "authorized to a GitHub App" in refused.value.response.json()["message"]
    with pytest.raises(RequestFailed) as bot:
        forge.installation_client("alpha/app").rest.users.get_authenticated()
    assert bot.value.response.status_code == 403


def test_user_tokens_never_reach_the_calls_log(forge: ForgeHandle, people: dict[str, int]) -> None:
    token = exchange(forge, code_for(forge, "mona"))["access_token"]
    user_client(forge, token).rest.users.get_authenticated()
    assert token not in json.dumps(forge.calls())
    assert [c["auth"] for c in forge.calls(path="/user")] == ["user"]


def test_an_app_with_callback_urls_accepts_only_redirects_under_them(forge: ForgeHandle,
                                                                     people: dict[str, int]) -> None:
    apps = forge.running.context.apps
    apps.adopt(replace(apps.current(), callback_urls=(CALLBACK,)))
    assert code_for(forge, "mona", redirect_uri=CALLBACK + "/deeper")
    answer = httpx.get(f"{forge.url}/login/oauth/authorize", params={
        "client_id": forge.client_id, "redirect_uri": "http://evil.test/auth/callback", "state": "s9"})
    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert answer.headers["location"].startswith(CALLBACK + "?")
    assert (back["error"], back["state"]) == (["redirect_uri_mismatch"], ["s9"])
