"""Pytest fixtures for a running forge (a pytest plugin: ``pytest_plugins = ["tests.conftest_forge"]``).

`forge` starts a fresh forge on a free port with its own data dir, RSA app key, app id and webhook
secret; `webhook_receiver` is a tiny HTTP server that records what it is sent.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import AppAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from forge.config import ForgeConfig
from forge.server import RunningForge, serve_in_thread

FORGE_APP_ID = 4242


@dataclass(frozen=True, slots=True)
class AppKey:
    """The test app's RSA key pair as PEM text."""

    private_pem: str
    public_pem: str


@dataclass
class ForgeHandle:
    """A running forge plus what a test needs to talk to it."""

    running: RunningForge
    private_key_pem: str
    webhook_secret: str
    clients: ExitStack = field(default_factory=ExitStack)
    _app_client: GitHub[Any] | None = None

    def app_client(self, **options: Any) -> GitHub[Any]:
        """A githubkit client authenticated as the app, built as production builds it.

        Entered (one connection pool for all its calls) and closed when the test ends. Without options
        the same client is returned each time, so the app JWT is signed once per test.
        """
        if not options and self._app_client is not None:
            return self._app_client
        gh = GitHub(
            AppAuthStrategy(self.app_id, self.private_key_pem),
            base_url=self.api_url + "/",
            cache_strategy=MemCacheStrategy(),
            **options,
        )
        client = self.clients.enter_context(gh)
        if not options:
            self._app_client = client
        return client

    def installation_client(self, full_name: str, **options: Any) -> GitHub[Any]:
        """A githubkit client acting as the installation that covers `full_name`."""
        gh = self.app_client(**options)
        owner, repo = full_name.split("/")
        installation = gh.rest.apps.get_repo_installation(owner, repo).parsed_data
        return self.clients.enter_context(gh.with_auth(gh.auth.as_installation(installation.id)))

    def seed(self, full_name: str, files: dict[str, str], writers: tuple[str, ...] = ()) -> None:
        """A repository with these files, issue 1 opened on it, and `writers` given write access."""
        self.create_repo(full_name, files)
        self.admin("POST", f"/repos/{full_name}/issues", {"title": "one", "user": full_name.split("/")[0]})
        for login in writers:
            self.admin("PUT", f"/repos/{full_name}/collaborators/{login}", {"permission": "write"})

    def engine(self, settings: Any, **more: Any) -> Any:
        """The engine (jobs.context) that `settings` build when they point at this forge as the app."""
        from jobs import context  # the product, imported only by the tests that build an engine
        return context.build(dataclasses.replace(settings, app_id=self.app_id, private_key=self.private_key_pem,
                                                 github_api_url=self.api_url, **more))

    def reporter(self, engine: Any, full_name: str) -> Any:
        """The github_app.reporting.Reporter the engine uses for `full_name`."""
        from github_app.reporting import Reporter
        return Reporter(engine.github.client(engine.github.installation_id_for(full_name)), full_name)

    @property
    def url(self) -> str:
        """Base URL (git and HTML)."""
        return self.running.url

    @property
    def api_url(self) -> str:
        """REST base URL, for ``GitHub(..., base_url=api_url)``."""
        return self.running.api_url

    @property
    def config(self) -> ForgeConfig:
        """The forge's config (public_url is the bound address)."""
        return self.running.config

    @property
    def app_id(self) -> int:
        """The GitHub App id the forge trusts."""
        return self.config.app_id

    @property
    def client_id(self) -> str:
        """The current app's OAuth client id (sign-in with the web flow)."""
        return self.running.context.app.client_id

    @property
    def client_secret(self) -> str:
        """The current app's OAuth client secret."""
        return self.running.context.app.client_secret

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the ``/_forge`` admin API; returns (status, decoded JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/_forge{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def create_repo(
        self,
        full_name: str,
        files: dict[str, str] | None = None,
        source_dir: Path | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Create a repo from a dict of files (or a directory); returns the admin API's answer."""
        body: dict[str, Any] = {"full_name": full_name, **extra}
        if source_dir is not None:
            body["source_dir"] = str(source_dir)
        else:
            body["files"] = files if files is not None else {"README.md": f"# {full_name}\n"}
        status, answer = self.admin("POST", "/repos", body)
        assert status == 201, answer
        return answer  # type: ignore[no-any-return]

    def calls(self, **filters: str) -> list[dict[str, Any]]:
        """Recorded calls, optionally filtered (surface, method, path)."""
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self.admin("GET", f"/calls?{query}")[1]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def forge_app_key() -> AppKey:
    """One RSA key per session (generating keys is the slow part)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return AppKey(private, public)


@pytest.fixture
def forge(tmp_path: Path, forge_app_key: AppKey) -> Iterator[ForgeHandle]:
    """A fresh forge on a free port; webhooks go nowhere until a test sets a URL."""
    secret = secrets.token_hex(16)
    config = ForgeConfig(
        data_dir=tmp_path / "forge-data",
        app_id=FORGE_APP_ID,
        app_public_key_pem=forge_app_key.public_pem,
        webhook_url=None,
        webhook_secret=secret,
        public_url="",
    )
    running = serve_in_thread(config)
    handle = ForgeHandle(running, forge_app_key.private_pem, secret)
    try:
        yield handle
    finally:
        handle.clients.close()
        running.stop()


@dataclass
class ReceivedHook:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """A local HTTP endpoint that records deliveries and answers with `status`."""

    url: str = ""
    status: int = 202
    received: list[ReceivedHook] = field(default_factory=list)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Records POSTs to ``/webhooks``; answers 202 unless a test changes `status`."""
    receiver = WebhookReceiver()

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        receiver.received.append(ReceivedHook(dict(request.headers), request.get_data()))
        return Response('{"ok": true}', status=receiver.status, mimetype="application/json")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    receiver.url = f"http://127.0.0.1:{server.server_port}/webhooks"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
