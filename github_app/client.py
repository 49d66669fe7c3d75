"""GitHub access through githubkit: app JWT → installation token (cached until near expiry) → REST clients."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from clarity.redaction import redact

# Refresh an installation token this long before GitHub says it expires (they live 1 hour).
TOKEN_MARGIN = 300.0


@dataclass(frozen=True, slots=True)
class InstallationToken:
    """A minted installation access token and when it stops working."""

    token: str
    expires_at: float


class GitHubApp:
    """The app's identity towards GitHub; hands out installation-scoped clients."""

    def __init__(self, app_id: int, private_key: str, api_url: str, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/") + "/"
        self.timeout = timeout
        self._cache = MemCacheStrategy()  # githubkit's default cache is process-wide: keep ours apart
        self.app = GitHub(AppAuthStrategy(app_id, private_key), base_url=self.api_url,
                          cache_strategy=self._cache, timeout=timeout, http_cache=False)
        self._tokens: dict[int, InstallationToken] = {}
        self._lock = threading.Lock()
        redact.add(private_key)

    def installation_token(self, installation_id: int, force: bool = False) -> str:
        """A valid token for the installation, minted only when the cached one is near expiry."""
        with self._lock:
            cached = self._tokens.get(installation_id)
            if cached and not force and cached.expires_at - TOKEN_MARGIN > time.time():
                return cached.token
        response = self.app.rest.apps.create_installation_access_token(installation_id)
        data = response.parsed_data
        expires = datetime.fromisoformat(str(data.expires_at)).timestamp()
        redact.add(data.token)
        with self._lock:
            self._tokens[installation_id] = InstallationToken(data.token, expires)
        return data.token

    def client(self, installation_id: int) -> GitHub[TokenAuthStrategy]:
        """A REST client acting as the installation."""
        return GitHub(TokenAuthStrategy(self.installation_token(installation_id)), base_url=self.api_url,
                      cache_strategy=self._cache, timeout=self.timeout, http_cache=False)

    def installation_id_for(self, repo: str) -> int:
        """The installation that covers `owner/name` (app JWT call)."""
        owner, name = repo.split("/", 1)
        return self.app.rest.apps.get_repo_installation(owner, name).parsed_data.id


def describe_error(exc: Exception) -> str:
    """A short, redacted, human description of a GitHub API failure for logs and comments."""
    if isinstance(exc, RequestFailed):
        response = exc.response
        try:
            message = response.raw_response.json().get("message", "")
        except ValueError:
            message = response.raw_response.text[:200]
        return redact(f"GitHub answered {response.status_code} to {exc.request.method} "
                      f"{exc.request.url.path}: {message}")
    return redact(f"{type(exc).__name__}: {exc}")
