"""`clarity setup`: create the GitHub App from its manifest and keep what GitHub returns in the vault.

A small web server on 127.0.0.1 serves a page whose form POSTs the manifest to GitHub's "new GitHub
App" page (`?state=` a random value). The person confirms there; GitHub redirects back to this
server's `/callback?code=...&state=...`; the state must be ours, then the code is converted
(`POST /app-manifests/{code}/conversions`, no authentication, once, within an hour) and the app's
id, key and secrets are stored encrypted. Nothing is printed or served that holds a secret.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import sys
import threading
import webbrowser
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from githubkit.exception import GitHubException, RequestFailed

from clarity import app_credentials, github_api
from clarity.app_credentials import AppCredentials
from clarity.redaction import redact
from clarity.settings import GITHUB_API_VERSION, Settings
from clarity.vault import Vault, VaultError
from github_app.client import describe_error
from github_app.manifest import build_manifest, new_app_url

log = logging.getLogger(__name__)


class SetupError(Exception):
    """The app could not be created or stored; the message says what happened and what to do."""


@dataclass(frozen=True, slots=True)
class SetupResult:
    """How a setup ended: the stored app, or why not."""

    app: AppCredentials | None = None
    error: str | None = None


def convert(api_url: str, code: str, timeout: float = 30.0, api_version: str = GITHUB_API_VERSION) -> AppCredentials:
    """Exchange a manifest code for the new app (`POST /app-manifests/{code}/conversions`)."""
    try:
        with github_api.client(api_version=api_version, base_url=api_url.rstrip("/") + "/", timeout=timeout,
                               http_cache=False) as gh:
            data = gh.rest.apps.create_from_manifest(code).parsed_data
    except RequestFailed as exc:
        hint = (" (a code works once and for an hour: run `clarity setup` again)"
                if exc.response.status_code == 404 else "")
        raise SetupError(f"GitHub did not create the app: {describe_error(exc)}{hint}") from None
    except (GitHubException, httpx.HTTPError) as exc:
        raise SetupError(f"could not reach GitHub at {api_url}: {redact(str(exc))}") from None
    if not data.webhook_secret:
        raise SetupError("GitHub created the app without a webhook secret; delete it and run `clarity setup` again")
    creds = AppCredentials(app_id=data.id, slug=str(data.slug or ""), name=data.name, html_url=data.html_url,
                           client_id=data.client_id, client_secret=data.client_secret,
                           webhook_secret=data.webhook_secret, private_key=data.pem)
    for value in creds.secret_values():
        redact.add(value)
    return creds


class SetupServer:
    """The local half of the manifest flow; `start()` serves, `wait()` returns how it ended."""

    def __init__(self, settings: Settings, vault: Vault, *, name: str = "Clarity", org: str | None = None,
                 port: int = 0) -> None:
        self.settings = settings
        self.vault = vault
        self.name = name
        self.org = org
        self.state = secrets.token_urlsafe(24)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._outcome: SetupResult | None = None
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="clarity-setup", daemon=True)

    @property
    def url(self) -> str:
        """The page to open in a browser."""
        return f"http://127.0.0.1:{self._httpd.server_port}/"

    @property
    def redirect_url(self) -> str:
        """Where GitHub sends the browser back with the code."""
        return f"{self.url}callback"

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest this setup registers."""
        return build_manifest(self.name, self.settings.public_url, self.redirect_url)

    @property
    def post_url(self) -> str:
        """GitHub's "new GitHub App" page the manifest is POSTed to."""
        return new_app_url(self.settings.web_url, self.state, self.org)

    def start(self) -> SetupServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> SetupResult:
        """Block until a callback with our state was handled; SetupError when `timeout` passes first."""
        if not self._done.wait(timeout):
            raise SetupError(f"no answer from GitHub within {timeout:.0f} s; run `clarity setup` again")
        assert self._outcome is not None
        return self._outcome

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def page(self) -> str:
        """The page that sends the manifest to GitHub (at once with JavaScript, else with one click)."""
        manifest = html.escape(json.dumps(self.manifest), quote=True)
        where = html.escape(self.settings.web_url)
        owner = f" for the organization {html.escape(self.org)}" if self.org else ""
        return _PAGE.format(action=html.escape(self.post_url, quote=True), manifest=manifest, where=where,
                            owner=owner)

    def callback(self, query: dict[str, list[str]]) -> tuple[int, str]:
        """Handle GitHub's redirect: (HTTP status, message for the person in the browser)."""
        state, code = (query.get("state") or [""])[0], (query.get("code") or [""])[0]
        if not hmac.compare_digest(state.encode(), self.state.encode()):
            log.warning("setup callback refused: its state is not the one this setup sent")
            return 400, ("This callback's state does not match the one `clarity setup` sent, so it was not "
                         "started from this setup. Nothing was stored; open the page `clarity setup` printed.")
        if not code:
            return 400, "GitHub sent no code. Nothing was stored; open the page `clarity setup` printed again."
        with self._lock:  # one conversion: a code works once, and a second app must not replace the first
            if self._outcome is not None:
                return 409, "This setup has already finished; see the terminal running `clarity setup`."
            self._outcome = self._convert_and_store(code)
        self._done.set()
        if self._outcome.error is not None:
            return 502, self._outcome.error
        app = self._outcome.app
        assert app is not None
        return 200, (f"Created the GitHub App {app.name} (id {app.app_id}) and stored it in the vault. "
                     f"Next, install it on your repositories: {app.install_url}")

    def _convert_and_store(self, code: str) -> SetupResult:
        try:
            creds = convert(self.settings.github_api_url, code, api_version=self.settings.github_api_version)
            app_credentials.store(self.vault, creds)
        except (SetupError, VaultError) as exc:
            return SetupResult(error=str(exc))
        log.info("setup: created GitHub App %s (id %s)", creds.slug, creds.app_id)
        return SetupResult(app=creds)


def _handler_for(setup: SetupServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """`/` serves the manifest page, `/callback` takes GitHub's redirect."""

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path == "/":
                self._send(200, setup.page())
            elif parts.path == "/callback":
                status, message = setup.callback(parse_qs(parts.query))
                self._send(status, _RESULT.format(title="Clarity setup", message=html.escape(message)))
            else:
                self._send(404, _RESULT.format(title="Not found", message="Nothing here."))

        def _send(self, status: int, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: the callback's query holds the one-time code."""

    return Handler


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clarity setup</title></head>
<body style="font: 15px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Create Clarity's GitHub App</h1>
<p>This sends Clarity's app manifest to <strong>{where}</strong>{owner}. Confirm there, and GitHub
sends you back here; the app's key and secrets go straight into Clarity's encrypted vault.</p>
<form id="manifest-form" method="post" action="{action}">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit">Continue to GitHub</button>
</form>
<script>document.getElementById("manifest-form").submit();</script>
</body></html>
"""

_RESULT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font: 15px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>{title}</h1><p>{message}</p></body></html>
"""


def notes(settings: Settings, vault: Vault, env: Mapping[str, str]) -> list[str]:
    """Things to know before creating the app: what will be replaced, overridden or unreachable."""
    found: list[str] = []
    try:
        earlier = app_credentials.stored(vault)
    except VaultError:
        found.append(f"the app stored earlier ({app_credentials.SECRET_NAME}) cannot be read; it will be replaced")
    else:
        if earlier is not None:
            found.append(f"replaces the app stored earlier: {earlier.name} (id {earlier.app_id}); "
                         f"delete that one on GitHub if you no longer need it ({earlier.html_url})")
    overriding = [name for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH",
                                    "GITHUB_WEBHOOK_SECRET") if env.get(name, "").strip()]
    if overriding:
        found.append(f"the environment sets {', '.join(overriding)}; what is set wins over the stored app, so "
                     "unset it for web and worker to use the app created now")
    host = (urlsplit(settings.public_url).hostname or "").lower()
    if host in ("127.0.0.1", "localhost", "::1") and urlsplit(settings.web_url).hostname not in (host, "127.0.0.1"):
        found.append(f"CLARITY_PUBLIC_URL is {settings.public_url}: {settings.web_url} cannot deliver webhooks "
                     "there; set it to an address GitHub reaches (the app's webhook URL can be edited later)")
    return found


def run_setup(settings: Settings, vault: Vault, *, name: str = "Clarity", org: str | None = None, port: int = 0,
              open_browser: bool = True, timeout: float | None = None,
              env: Mapping[str, str] | None = None) -> int:
    """`clarity setup` from start to finish; prints only what a person needs (never a secret)."""
    for note in notes(settings, vault, env or {}):
        print(f"note: {note}")
    try:
        server = SetupServer(settings, vault, name=name, org=org, port=port).start()
    except OSError as exc:
        raise SetupError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; pick another --port") from None
    owner = f"the organization {org}" if org else "your account"
    print(f"Creating the GitHub App {name!r} for {owner} on {settings.web_url}.")
    print(f"Open {server.url} in a browser on this machine and confirm on GitHub.", flush=True)
    if open_browser:
        webbrowser.open(server.url)
    try:
        outcome = server.wait(timeout)
    finally:
        server.stop()
    if outcome.error is not None or outcome.app is None:
        print(f"clarity: {outcome.error}", file=sys.stderr)
        return 1
    app = outcome.app
    print(f"Created {app.name} (app id {app.app_id}, {app.bot_login}) and stored its private key, webhook "
          f"secret and OAuth client in the vault (secret {app_credentials.SECRET_NAME}).")
    print(f"Next: install it on the repositories Clarity may work on: {app.install_url}")
    print("Then start web and worker with the same REDIS_URL, CLARITY_NAMESPACE and CLARITY_SECRET_KEYS; "
          "they read the app from the vault when GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH) and "
          "GITHUB_WEBHOOK_SECRET are not set.")
    return 0
