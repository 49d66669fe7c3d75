"""The forge's configuration: one frozen value built by the caller (CLI or test fixture)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

API_PREFIX = "/api/v3"


@dataclass(frozen=True, slots=True)
class ForgeConfig:
    """Everything the forge needs to know; the API base is ``public_url + "/api/v3"``."""

    data_dir: Path
    app_id: int
    app_public_key_pem: str  # a private key PEM is accepted too: the public half is derived from it
    webhook_url: str | None
    webhook_secret: str
    public_url: str = "http://127.0.0.1:9100"
    app_slug: str = "clarity"
    app_name: str = "Clarity"
    webhook_timeout: float = 10.0  # github.com gives a receiver 10 s before the delivery counts as failed
    api_versions: tuple[str, ...] = ("2022-11-28", "2026-03-10")  # REST API versions known (GHES: 2022-11-28)

    @property
    def api_url(self) -> str:
        """The REST base URL, without a trailing slash."""
        return self.public_url.rstrip("/") + API_PREFIX

    @property
    def repos_dir(self) -> Path:
        """Where the bare repositories live: ``<repos_dir>/<owner>/<repo>.git``."""
        return Path(self.data_dir) / "repos"
