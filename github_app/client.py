"""GitHub access through githubkit: app JWT → installation token (cached until near expiry) → REST clients."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import inspect
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime

import httpx
import redis
from cryptography.fernet import Fernet, InvalidToken
from githubkit import AppAuthStrategy, GitHub
from githubkit.auth.base import BaseAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from clarity import github_api
from clarity.redaction import redact
from clarity.settings import GITHUB_API_VERSION
from github_app import repos
from github_app.retries import RetryLater, RetryPolicy
from github_app.write_lock import MUTATING, InstallationWriteLock

__all__ = ["GitHubApp", "InstallationWriteLock", "RetryLater", "RetryPolicy", "SharedCache", "describe_error"]

log = logging.getLogger(__name__)

# Refresh an installation token this long before GitHub says it expires (they live 1 hour).
TOKEN_MARGIN = 300.0
# How long the processes of a deployment reuse what GitHub said about a repository (its clone URL).
REPO_FACT_TTL = 3600.0


class _InstallationAuth(httpx.Auth):
    """Sends the cached installation token; on a 401 mints a fresh one and retries the request once.

    A write (POST, PATCH, PUT, DELETE) holds the installation's write lock for its round trip, as GitHub
    asks (github_app.write_lock); the token is had before, so minting one never waits behind a write.
    """

    def __init__(self, app: GitHubApp, installation_id: int) -> None:
        self.app = app
        self.installation_id = installation_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"token {self.app.installation_token(self.installation_id)}"
        response = yield from self._send(request)
        if response.status_code == 401:
            log.info("installation %s: token refused, minting a new one", self.installation_id)
            token = self.app.installation_token(self.installation_id, force=True)
            request.headers["Authorization"] = f"token {token}"
            yield from self._send(request)

    def _send(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, httpx.Response]:
        writes = self.app.writes if request.method in MUTATING else None
        with writes.hold(self.installation_id) if writes is not None else contextlib.nullcontext():
            return (yield request)


class InstallationAuthStrategy(BaseAuthStrategy):
    """githubkit auth strategy acting as one installation through the app's token cache."""

    def __init__(self, app: GitHubApp, installation_id: int) -> None:
        self.app = app
        self.installation_id = installation_id

    def get_auth_flow(self, github: object) -> httpx.Auth:
        """A fresh httpx auth flow for a request."""
        return _InstallationAuth(self.app, self.installation_id)


@dataclass(frozen=True, slots=True)
class InstallationToken:
    """A minted installation access token and when it stops working."""

    token: str
    expires_at: float

    def fresh(self) -> bool:
        """Still good for more than TOKEN_MARGIN seconds."""
        return self.expires_at - TOKEN_MARGIN > time.time()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS client context, exactly what httpx would build (certifi, or SSL_CERT_FILE/DIR).

    githubkit opens a new httpx client for every request, and each new client loads the CA bundle
    again unless it is handed a context (docs/PERFORMANCE.md has the cost). A context is safe to share
    between threads and survives RQ's fork (the worker builds the engine, and so this, before forking).
    """
    return httpx.create_ssl_context()


class SharedCache:
    """What every process of one deployment may reuse: installation tokens and repositories' clone URLs.

    RQ runs every job in a fresh fork of its worker, so a cache in the process dies with the job: each
    step minted a token (an RSA-signed JWT and a REST call) and asked for the clone URL again. Entries
    live in Redis under `{namespace}:github:*` until 5 minutes before the token expires (an hour for a
    clone URL), encrypted and authenticated with a Fernet key derived from the app's private key: a
    reader of Redis learns no token, and a writer can neither plant a token nor point the workspace's
    token-carrying fetch at a server of its own. Redis failing never fails a caller: it mints or asks.
    Without a private key (a process that does not act as the app) nothing is read or kept.
    """

    def __init__(self, client: redis.Redis, namespace: str, private_key: str) -> None:
        self.redis = client
        self.prefix = f"{namespace}:github:"
        digest = hmac.new(private_key.encode(), b"clarity shared github cache v1", hashlib.sha256).digest()
        self.fernet = Fernet(base64.urlsafe_b64encode(digest)) if private_key.strip() else None

    def get(self, name: str) -> dict[str, object] | None:
        """The entry stored under `name`, None when absent, expired, unreadable or Redis fails."""
        if self.fernet is None:
            return None
        try:
            raw = self.redis.get(self.prefix + name)
        except redis.RedisError as exc:
            log.warning("shared GitHub cache unavailable (%s): asking GitHub", type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            value = json.loads(self.fernet.decrypt(raw if isinstance(raw, bytes) else str(raw).encode()))
        except (InvalidToken, ValueError):
            return None  # written under another app key, or not by us: ignored, then overwritten
        return value if isinstance(value, dict) else None

    def put(self, name: str, value: dict[str, object], ttl: float) -> None:
        """Store an entry for `ttl` seconds (nothing when ttl < 1 s or Redis fails)."""
        if ttl < 1 or self.fernet is None:
            return
        try:
            self.redis.set(self.prefix + name, self.fernet.encrypt(json.dumps(value).encode()), px=int(ttl * 1000))
        except redis.RedisError as exc:
            log.warning("shared GitHub cache unavailable (%s): entry not kept", type(exc).__name__)


class GitHubApp:
    """The app's identity towards GitHub; hands out installation-scoped clients."""

    def __init__(self, app_id: int, private_key: str, api_url: str, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, shared: SharedCache | None = None,
                 api_version: str = GITHUB_API_VERSION, writes: InstallationWriteLock | None = None) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.api_version = api_version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._cache = MemCacheStrategy()  # githubkit's default cache is process-wide: keep ours apart
        # http_cache off: GitHub sends max-age=60 and the engine must read what it just wrote.
        self.app = github_api.client(AppAuthStrategy(app_id, private_key), api_version=api_version,
                                     base_url=self.api_url, ssl_verify=tls_context(), cache_strategy=self._cache,
                                     timeout=timeout, http_cache=False, auto_retry=self.retry)
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()
        self.shared = shared
        self.writes = writes  # one write at a time per installation (None: no such care)
        redact.add(private_key)

    def installation_token(self, installation_id: int, force: bool = False) -> str:
        """A valid token for the installation, minted only when the cached one is near expiry.

        Cached in the process, then in the shared cache (the other processes' tokens); `force` (a 401)
        mints a new one for everyone.
        """
        if not force:
            with self._lock:
                cached = self._tokens.get(installation_id)
            if cached is None or not cached.fresh():
                cached = self._shared_token(installation_id)
            if cached is not None and cached.fresh():
                return cached.token
        response = self.app.rest.apps.create_installation_access_token(installation_id)
        data = response.parsed_data
        minted = InstallationToken(data.token, datetime.fromisoformat(str(data.expires_at)).timestamp())
        redact.add(minted.token)
        with self._lock:
            self._tokens[installation_id] = minted
        if self.shared is not None:
            self.shared.put(f"token:{installation_id}", {"token": minted.token, "expires_at": minted.expires_at},
                            minted.expires_at - TOKEN_MARGIN - time.time())
        return minted.token

    def _shared_token(self, installation_id: int) -> InstallationToken | None:
        """Another process's token for the installation, taught to the redactor and kept here."""
        entry = self.shared.get(f"token:{installation_id}") if self.shared is not None else None
        if entry is None:
            return None
        try:
            token = InstallationToken(str(entry["token"]), float(str(entry["expires_at"])))
        except (KeyError, ValueError):
            return None
        if not token.fresh():
            return None
        redact.add(token.token)
        with self._lock:
            self._tokens[installation_id] = token
        return token

    def clone_url(self, installation_id: int, repo: str) -> str:
        """The repository's HTTPS clone URL (github_app.repos), asked of GitHub once an hour per deployment."""
        return self._repo_fact(f"clone_url:{repo}",
                               lambda: repos.clone_url(self.client(installation_id), repo))

    def _repo_fact(self, name: str, ask: Callable[[], str]) -> str:
        """A fact about a repository from the shared cache, else asked of GitHub and kept an hour."""
        entry = self.shared.get(name) if self.shared is not None else None
        if entry is not None and isinstance(entry.get("value"), str):
            return str(entry["value"])
        value = ask()
        if self.shared is not None:
            self.shared.put(name, {"value": value}, REPO_FACT_TTL)
        return value

    def client(self, installation_id: int) -> GitHub[InstallationAuthStrategy]:
        """A REST client acting as the installation (token refreshed before expiry, and once on a 401)."""
        return github_api.client(InstallationAuthStrategy(self, installation_id), api_version=self.api_version,
                                 base_url=self.api_url, ssl_verify=tls_context(), cache_strategy=self._cache,
                                 timeout=self.timeout, http_cache=False, auto_retry=self.retry)

    def installation_id_for(self, repo: str) -> int:
        """The installation that covers `owner/name` (app JWT call)."""
        owner, name = repo.split("/", 1)
        return self.app.rest.apps.get_repo_installation(owner, name).parsed_data.id


# The REST calls Clarity makes (github_app.repos and .reporting, jobs): their models are preloaded.
ENGINE_CALLS = (
    ("apps", "create_installation_access_token"), ("apps", "get_repo_installation"),
    ("checks", "create"), ("checks", "list_for_ref"), ("checks", "update"), ("issues", "create"),
    ("issues", "create_comment"), ("issues", "get"), ("issues", "list_comments"),
    ("pulls", "create"), ("pulls", "get"), ("pulls", "list"), ("pulls", "update"),
    ("reactions", "create_for_issue_comment"), ("repos", "get"),
    ("repos", "get_collaborator_permission_level"), ("repos", "get_content"),
)


def preload_models(api_version: str = GITHUB_API_VERSION) -> None:
    """Import the githubkit modules and pydantic models of ENGINE_CALLS now, without a network call.

    githubkit imports a call's models (and builds their pydantic classes) the first time the call is
    made, ~0.25 s for the calls of one step. RQ runs every job in a fresh fork of the worker, so a
    worker that never made the calls paid that in every step; after this the forks inherit them.
    Each call is made once against a transport that answers 404 (arguments are dummies).
    """
    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"message": "Not Found"})

    # The real transport imports httpcore and h11 (37 modules, ~50 ms) when the first client is built;
    # the mock below never builds one, so build one here.
    httpx.HTTPTransport(verify=tls_context()).close()
    gh = github_api.client("preload", api_version=api_version, base_url="http://preload.invalid/",
                           transport=httpx.MockTransport(not_found), http_cache=False, auto_retry=False)
    for namespace, name in ENGINE_CALLS:
        # A 404 or a body that does not validate: imported either way. Anything else (a call that a
        # githubkit upgrade renamed) only means that call's models load in the horse, as before.
        with contextlib.suppress(Exception):
            method = getattr(getattr(gh.rest, namespace), name)
            positional = [p for p in inspect.signature(method).parameters.values()
                          if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
            method(*["x"] * len(positional))


def describe_error(exc: Exception) -> str:
    """A short, redacted, human description of a GitHub API failure for logs and comments."""
    if isinstance(exc, github_api.GraphQLRefused):
        return redact(str(exc))
    if isinstance(exc, RequestFailed):
        response = exc.response
        try:
            message = response.raw_response.json().get("message", "")
        except ValueError:
            message = response.raw_response.text[:200]
        return redact(f"GitHub answered {response.status_code} to {exc.request.method} "
                      f"{exc.request.url.path}: {message}")
    return redact(f"{type(exc).__name__}: {exc}")
