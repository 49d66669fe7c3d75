"""`clarity setup`: the manifest, the flow against the forge, the vault, and the app using what it stored."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from githubkit.exception import RequestFailed
from werkzeug.serving import make_server

from app import create_app
from clarity import app_credentials
from clarity.app_credentials import AppCredentials, load_settings
from clarity.settings import Settings, SettingsError, web_url_for
from clarity.vault import NO_KEYS, Vault, generate_key
from cli import main
from forge.app_identity import AppRegistry, PendingApp, initial_identity
from forge.config import ForgeConfig
from github_app.client import GitHubApp
from github_app.manifest import EVENTS, PERMISSIONS, build_manifest, new_app_url
from github_app.setup import SetupError, SetupServer, convert
from github_app.webhooks import HANDLED_EVENTS
from tests.conftest_forge import ForgeHandle

README = Path(__file__).resolve().parents[1] / "README.md"
WANTED_PERMISSIONS = {"checks": "write", "contents": "write", "issues": "write", "pull_requests": "write",
                      "workflows": "write", "metadata": "read"}


# the manifest, as data

def test_manifest_asks_for_what_clarity_uses_and_nothing_more() -> None:
    manifest = build_manifest("Clarity", "https://clarity.example.com/", "http://127.0.0.1:5000/callback")
    assert manifest["default_permissions"] == WANTED_PERMISSIONS
    assert manifest["default_events"] == sorted(HANDLED_EVENTS - {"installation", "installation_repositories"})
    assert manifest["hook_attributes"] == {"url": "https://clarity.example.com/webhooks", "active": True}
    assert manifest["redirect_url"] == "http://127.0.0.1:5000/callback"
    assert manifest["callback_urls"] == ["https://clarity.example.com/auth/callback"]
    assert (manifest["name"], manifest["url"], manifest["public"]) == ("Clarity", "https://clarity.example.com", False)
    json.dumps(manifest)  # it travels as a form field


def test_the_manifest_is_posted_to_the_users_or_the_organizations_new_app_page() -> None:
    assert new_app_url("https://github.com", "s1") == "https://github.com/settings/apps/new?state=s1"
    assert (new_app_url("https://ghe.example.com/", "s 2", org="octo-org")
            == "https://ghe.example.com/organizations/octo-org/settings/apps/new?state=s+2")


@pytest.mark.parametrize(("api", "web"), [
    ("https://api.github.com", "https://github.com"),
    ("https://api.github.com/", "https://github.com"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com"),
    ("http://127.0.0.1:9100/api/v3/", "http://127.0.0.1:9100"),
    ("https://api.acme.ghe.com", "https://acme.ghe.com"),
])
def test_githubs_web_url_is_derived_from_the_api_url(api: str, web: str) -> None:
    assert web_url_for(api) == web
    assert Settings.from_env({"GITHUB_API_URL": api}, require_github=False).web_url == web


def test_github_web_url_can_be_set() -> None:
    settings = Settings.from_env({"GITHUB_WEB_URL": "https://git.example.com/"}, require_github=False)
    assert settings.web_url == "https://git.example.com"
    with pytest.raises(SettingsError, match="GITHUB_WEB_URL must be a http/https URL"):
        Settings.from_env({"GITHUB_WEB_URL": "git.example.com"}, require_github=False)


def test_readme_asks_for_the_same_permissions_and_events_as_the_manifest() -> None:
    text = README.read_text()
    section = text[text.index("## Install on GitHub"):]
    section = section[:section.index("\n## ", 1)]
    listed = dict(re.findall(r"^- \*\*([A-Za-z ]+)\*\*: (read & write|read) — ", section, re.MULTILINE))
    assert listed == {p.title: "read & write" if p.level == "write" else "read" for p in PERMISSIONS}
    events = re.search(r"Subscribe to events: (.*?)\(", section, re.DOTALL)
    assert events is not None
    assert re.findall(r"\*\*([A-Za-z ]+)\*\*", events.group(1)) == [e.title for e in EVENTS]


# the browser's part of the flow

class _Forms(HTMLParser):
    """The forms of a page: action and input values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append({"action": values.get("action"), "fields": {}})
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value") or ""


def only_form(page: str) -> tuple[str, dict[str, str]]:
    parser = _Forms()
    parser.feed(page)
    [form] = parser.forms
    return form["action"], form["fields"]


@dataclass
class Browser:
    """Does what the person's browser does: load the page, submit to GitHub, confirm, follow back."""

    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def to_github(self, setup_url: str) -> str:
        """Up to GitHub's redirect; returns the callback URL GitHub sends the browser to."""
        action, fields = only_form(self.http.get(setup_url).text)
        shown = self.http.post(action, data=fields)
        assert shown.status_code == 200, shown.text
        assert "Create GitHub App for" in shown.text
        confirm, confirm_fields = only_form(shown.text)
        redirected = self.http.post(httpx.URL(action).join(confirm), data=confirm_fields)
        assert redirected.status_code == 302, redirected.text
        return redirected.headers["location"]

    def through(self, setup_url: str) -> httpx.Response:
        """The whole round trip, ending on the setup server's answer."""
        return self.http.get(self.to_github(setup_url))


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.http.close()


@pytest.fixture
def setup_settings(settings: Settings, forge: ForgeHandle, redis_client: redis.Redis) -> Settings:
    """Settings for `clarity setup` against the forge, with a vault key (redis_client cleans up)."""
    return replace(settings, app_id=0, private_key="", webhook_secret="", github_api_url=forge.api_url,
                   secret_keys=(generate_key(),), public_url="http://127.0.0.1:8000")


@pytest.fixture
def setup(setup_settings: Settings) -> Iterator[SetupServer]:
    server = SetupServer(setup_settings, Vault.from_settings(setup_settings), name="Clarity Test").start()
    yield server
    server.stop()


def env_for(settings: Settings) -> dict[str, str]:
    """The environment of a process that has no GitHub App variables, only the vault's."""
    return {"REDIS_URL": settings.redis_url, "CLARITY_NAMESPACE": settings.namespace,
            "CLARITY_SECRET_KEYS": ",".join(settings.secret_keys), "GITHUB_API_URL": settings.github_api_url,
            "CLARITY_DATA_DIR": str(settings.data_dir), "CLARITY_PUBLIC_URL": settings.public_url}


# the flow

def test_setup_page_posts_the_manifest_to_githubs_new_app_page(setup: SetupServer, browser: Browser,
                                                               forge: ForgeHandle) -> None:
    page = browser.http.get(setup.url)
    action, fields = only_form(page.text)
    assert action == f"{forge.url}/settings/apps/new?state={setup.state}"
    manifest = json.loads(fields["manifest"])
    assert manifest == setup.manifest
    assert manifest["redirect_url"] == setup.redirect_url
    assert manifest["redirect_url"].startswith("http://127.0.0.1:")
    assert "submit()" in page.text  # the browser goes on by itself


def test_org_setup_creates_the_app_for_the_organization(setup_settings: Settings, forge: ForgeHandle,
                                                        browser: Browser) -> None:
    server = SetupServer(setup_settings, Vault.from_settings(setup_settings), name="Org App", org="octo-org").start()
    try:
        action, _ = only_form(browser.http.get(server.url).text)
        assert action == f"{forge.url}/organizations/octo-org/settings/apps/new?state={server.state}"
        assert browser.through(server.url).status_code == 200
    finally:
        server.stop()
    _, app = forge.admin("GET", "/health")
    assert app["app_slug"] == "org-app"
    assert any(u["login"] == "octo-org" and u["type"] == "Organization" for u in forge.admin("GET", "/state")[1]["users"])


def test_setup_stores_the_new_app_encrypted_in_the_vault(setup: SetupServer, setup_settings: Settings,
                                                         forge: ForgeHandle, browser: Browser,
                                                         redis_client: redis.Redis) -> None:
    answer = browser.through(setup.url)
    assert answer.status_code == 200, answer.text
    outcome = setup.wait(5)
    assert outcome.error is None and outcome.app is not None
    app = outcome.app
    assert app.app_id != forge.app_id and app.slug == "clarity-test" and app.name == "Clarity Test"
    assert f"{forge.url}/apps/clarity-test/installations/new" in answer.text
    for secret in app.secret_values():
        assert secret not in answer.text

    stored = app_credentials.stored(Vault.from_settings(setup_settings))
    assert stored == app
    assert "BEGIN RSA PRIVATE KEY" in stored.private_key and stored.webhook_secret and stored.client_secret
    raw = redis_client.hget(f"{setup_settings.namespace}:secrets", app_credentials.SECRET_NAME)
    assert raw is not None
    for plain in (*app.secret_values(), "clarity-test", str(app.app_id)):
        assert plain not in raw
    [conversion] = forge.calls(path=f"/app-manifests/{setup_code(forge)}/conversions")
    assert (conversion["method"], conversion["status"], conversion["auth"]) == ("POST", 201, "none")
    assert forge.url + "/apps/clarity-test" == stored.html_url
    assert browser.http.get(stored.install_url).status_code == 200


def setup_code(forge: ForgeHandle) -> str:
    [call] = [c for c in forge.calls(surface="rest") if c["path"].startswith("/app-manifests/")]
    return str(call["path"].split("/")[2])


def test_processes_without_app_variables_act_as_the_stored_app(setup: SetupServer, setup_settings: Settings,
                                                               forge: ForgeHandle, browser: Browser) -> None:
    browser.through(setup.url)
    app = setup.wait(5).app
    assert app is not None
    settings = load_settings(env_for(setup_settings))
    assert (settings.app_id, settings.bot_login) == (app.app_id, "clarity-test[bot]")
    assert (settings.private_key.strip(), settings.webhook_secret) == (app.private_key.strip(), app.webhook_secret)

    forge.create_repo("octo/demo")
    github = GitHubApp(settings.app_id, settings.private_key, settings.github_api_url)
    installation = github.installation_id_for("octo/demo")
    assert github.installation_token(installation).startswith("ghs_")
    with github.client(installation) as gh:
        assert gh.rest.repos.get("octo", "demo").parsed_data.full_name == "octo/demo"
    with pytest.raises(RequestFailed) as refused:  # the forge's first app was replaced by the new one
        forge.app_client().rest.apps.get_authenticated()
    assert refused.value.response.status_code == 401


def test_webhooks_signed_with_the_new_secret_are_accepted_and_the_old_refused(
        setup_settings: Settings, forge: ForgeHandle, browser: Browser) -> None:
    holder = _Later()
    web = make_server("127.0.0.1", 0, holder, threaded=True)
    thread = threading.Thread(target=web.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        settings = replace(setup_settings, public_url=f"http://127.0.0.1:{web.server_port}")
        server = SetupServer(settings, Vault.from_settings(settings), name="Clarity Hooks").start()
        try:
            browser.through(server.url)
            assert server.wait(5).app is not None
        finally:
            server.stop()
        holder.app = create_app(load_settings(env_for(settings)))
        forge.create_repo("octo/hooks")
        status, delivered = forge.admin("POST", "/comment", {"repo": "octo/hooks", "issue": 1, "body": "hello"})
        assert (status, delivered["status_code"]) == (200, 202), delivered
        [delivery] = forge.admin("GET", "/deliveries")[1]
        assert delivery["url"] == f"{settings.public_url}/webhooks"

        body = json.dumps({"zen": "old secret"}).encode()
        old = "sha256=" + hmac.new(forge.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        refused = httpx.post(f"{settings.public_url}/webhooks", content=body, headers={
            "X-Hub-Signature-256": old, "X-GitHub-Event": "ping", "X-GitHub-Delivery": "old-1",
            "Content-Type": "application/json"})
        assert refused.status_code == 401
    finally:
        web.shutdown()
        web.server_close()


class _Later:
    """A WSGI app set after the socket is bound (the port is in the manifest)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


# what goes wrong

def test_a_callback_with_another_state_is_refused_and_nothing_is_stored(setup: SetupServer,
                                                                        setup_settings: Settings,
                                                                        forge: ForgeHandle,
                                                                        browser: Browser) -> None:
    location = browser.to_github(setup.url)
    forged = re.sub(r"state=[^&]+", "state=someone-elses", location)
    answer = browser.http.get(forged)
    assert answer.status_code == 400
    assert "does not match the one `clarity setup` sent" in answer.text
    assert "Nothing was stored" in answer.text
    assert app_credentials.stored(Vault.from_settings(setup_settings)) is None
    assert not [c for c in forge.calls(surface="rest") if c["path"].startswith("/app-manifests/")]
    with pytest.raises(SetupError, match="no answer from GitHub"):
        setup.wait(0.1)  # still waiting for the real callback
    assert browser.http.get(location).status_code == 200


def test_a_spent_code_is_a_clear_error_and_nothing_is_stored(setup: SetupServer, setup_settings: Settings,
                                                            forge: ForgeHandle, browser: Browser) -> None:
    location = browser.to_github(setup.url)
    code = re.search(r"code=([0-9a-f]+)", location)
    assert code is not None
    convert(forge.api_url, code.group(1))  # someone else used it first
    answer = browser.http.get(location)
    assert answer.status_code == 502
    assert "GitHub answered 404" in answer.text and "a code works once" in answer.text
    outcome = setup.wait(1)
    assert outcome.app is None and outcome.error is not None and "run `clarity setup` again" in outcome.error
    assert app_credentials.stored(Vault.from_settings(setup_settings)) is None
    with pytest.raises(SetupError, match="GitHub answered 404 to POST .*/app-manifests/.*Not Found"):
        convert(forge.api_url, code.group(1))


def test_codes_expire_after_an_hour() -> None:
    registry = AppRegistry(initial_identity(ForgeConfig(Path("."), 1, _public_pem(), None, "s")))
    code = registry.issue_code(PendingApp("x", "o", "User", {}, time.time() + 3600))
    assert registry.take_code(code, at=time.time() + 3601) is None
    again = registry.issue_code(PendingApp("x", "o", "User", {}, time.time() + 3600))
    assert registry.take_code(again) is not None
    assert registry.take_code(again) is None


def _public_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_the_forge_refuses_a_manifest_without_a_redirect_and_a_taken_name(forge: ForgeHandle) -> None:
    manifest = build_manifest("Clarity", "http://127.0.0.1:8000", "http://127.0.0.1:1/callback")
    bad = httpx.post(f"{forge.url}/settings/apps/new?state=s",
                     data={"manifest": json.dumps({**manifest, "redirect_url": None})})
    assert bad.status_code == 422 and "redirect_url must be an http(s) URL" in bad.text
    taken = httpx.post(f"{forge.url}/settings/apps/new?state=s",
                       data={"manifest": json.dumps(manifest), "confirm": "1"})
    assert taken.status_code == 422 and "Name is already in use" in taken.text  # the forge's own app


def test_setup_without_secret_keys_says_how_to_make_one(setup_settings: Settings,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    env = {k: v for k, v in env_for(setup_settings).items() if k != "CLARITY_SECRET_KEYS"}
    assert main(["setup", "--no-browser"], env) == 2
    assert NO_KEYS in capsys.readouterr().err


def test_settings_without_app_variables_or_stored_app_point_at_setup(setup_settings: Settings) -> None:
    with pytest.raises(SettingsError, match=r"GITHUB_APP_ID is not set[\s\S]*clarity setup[\s\S]*no app is stored"):
        load_settings(env_for(setup_settings))
    env = {k: v for k, v in env_for(setup_settings).items() if k != "CLARITY_SECRET_KEYS"}
    with pytest.raises(SettingsError, match="CLARITY_SECRET_KEYS, which is not set"):
        load_settings(env)


def test_variables_that_are_set_win_over_the_stored_app(setup_settings: Settings, private_key_pem: str) -> None:
    stored = AppCredentials(77, "stored-app", "Stored", "http://x/apps/stored-app", "Iv1.x", "client-secret-1",
                            "stored-webhook-secret", private_key_pem)
    app_credentials.store(Vault.from_settings(setup_settings), stored)
    env = {**env_for(setup_settings), "GITHUB_WEBHOOK_SECRET": "from-the-environment"}
    settings = load_settings(env)
    assert (settings.app_id, settings.webhook_secret, settings.bot_login) == (77, "from-the-environment",
                                                                              "stored-app[bot]")
    full = {**env, "GITHUB_APP_ID": "5", "GITHUB_PRIVATE_KEY": private_key_pem}
    assert load_settings({**full, "REDIS_URL": "redis://127.0.0.1:9/0"}).app_id == 5  # no Redis needed


def test_cli_setup_runs_the_flow_and_prints_no_secret(setup_settings: Settings, forge: ForgeHandle,
                                                      browser: Browser, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**env_for(setup_settings), "GITHUB_WEB_URL": forge.url}
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main(
        ["setup", "--no-browser", "--port", str(port), "--timeout", "60", "--name", "Clarity CLI"], env)))
    runner.start()
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            answer = browser.through(url)
            break
        except httpx.ConnectError:
            time.sleep(0.05)
    runner.join(30)
    assert result == [0] and answer.status_code == 200
    out, err = capsys.readouterr()
    stored = app_credentials.stored(Vault.from_settings(setup_settings))
    assert stored is not None and stored.slug == "clarity-cli"
    assert f"{stored.html_url}/installations/new" in out and url in out
    for secret in stored.secret_values():
        assert secret not in out + err
        for line in stored.private_key.splitlines()[1:-1]:
            assert line not in out + err
