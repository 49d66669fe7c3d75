"""The GitHub App's identity and secrets as `clarity setup` stores them, and settings that use them.

`clarity setup` keeps the app it created in the vault as one encrypted secret (`github_app`, JSON),
so the app id, key and secrets are written together or not at all. `load_settings` is how processes
read their settings: the environment first, and whatever of GITHUB_APP_ID, the private key,
GITHUB_WEBHOOK_SECRET, CLARITY_BOT_LOGIN and the OAuth client (CLARITY_GITHUB_CLIENT_ID/_SECRET, for
dashboard sign-in) it leaves unset, from that stored app.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from redis import RedisError

from clarity.redaction import redact
from clarity.settings import Settings, SettingsError
from clarity.vault import KEYS_VARIABLE, Vault, VaultError

SECRET_NAME = "github_app"
SETUP_HINT = "or run `clarity setup`, which creates the GitHub App and stores it in the vault"


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """A GitHub App as created from a manifest: who it is and the secrets to act as it."""

    app_id: int
    slug: str
    name: str
    html_url: str
    client_id: str
    client_secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    private_key: str = field(repr=False)

    @property
    def bot_login(self) -> str:
        """The account the app comments as."""
        return f"{self.slug}[bot]"

    @property
    def install_url(self) -> str:
        """Where a person installs the app on their repositories."""
        return f"{self.html_url.rstrip('/')}/installations/new"

    def secret_values(self) -> tuple[str, ...]:
        """What the redactor must never let out."""
        return (self.client_secret, self.webhook_secret, self.private_key)

    def to_json(self) -> str:
        """The stored form (encrypted by the vault)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AppCredentials:
        """Read the stored form back; VaultError when it is not one (never quoting it)."""
        try:
            data = json.loads(text)
            creds = cls(int(data["app_id"]), str(data["slug"]), str(data["name"]), str(data["html_url"]),
                        str(data["client_id"]), str(data["client_secret"]), str(data["webhook_secret"]),
                        str(data["private_key"]))
        except (ValueError, TypeError, KeyError):
            raise VaultError(f"secret {SECRET_NAME} is not a GitHub App stored by `clarity setup`; "
                             "run `clarity setup` again") from None
        for value in creds.secret_values():
            redact.add(value)
        return creds


def store(vault: Vault, creds: AppCredentials) -> None:
    """Keep the app in the vault (replacing any app stored before)."""
    for value in creds.secret_values():
        redact.add(value)
    vault.set(SECRET_NAME, creds.to_json())


def stored(vault: Vault) -> AppCredentials | None:
    """The app `clarity setup` stored, or None when there is none."""
    if not any(info.name == SECRET_NAME for info in vault.names()):
        return None
    return AppCredentials.from_json(vault.get(SECRET_NAME))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; GitHub App values it does not set come from the stored app.

    Variables that are set always win. Redis is read only when one of the app's variables is missing.
    """
    env = os.environ if env is None else env
    if all(_set(env, name) for name in ("GITHUB_APP_ID", "GITHUB_WEBHOOK_SECRET")) and _key_set(env):
        return Settings.from_env(env)
    base = Settings.from_env(env, require_github=False)
    creds, why_not = _stored_app(base)
    if creds is None:
        try:
            return Settings.from_env(env)
        except SettingsError as err:
            raise SettingsError(f"{err}\n  ({SETUP_HINT}; {why_not})") from None
    filled = dict(env)
    defaults = {"GITHUB_APP_ID": str(creds.app_id), "GITHUB_WEBHOOK_SECRET": creds.webhook_secret,
                "CLARITY_BOT_LOGIN": creds.bot_login, "CLARITY_GITHUB_CLIENT_ID": creds.client_id,
                "CLARITY_GITHUB_CLIENT_SECRET": creds.client_secret}
    for name, value in defaults.items():
        if not _set(env, name):
            filled[name] = value
    if not _key_set(env):
        filled["GITHUB_PRIVATE_KEY"] = creds.private_key
    return Settings.from_env(filled)


def _stored_app(base: Settings) -> tuple[AppCredentials | None, str]:
    """The stored app, or None and why there is none (for the error message)."""
    if not base.secret_keys:
        return None, f"that needs {KEYS_VARIABLE}, which is not set"
    vault = Vault.from_settings(base)
    try:
        creds = stored(vault)
    except VaultError as err:
        raise SettingsError(f"cannot read the GitHub App from the vault: {err}") from None
    except RedisError as err:  # its text names host and port, never the URL's password
        raise SettingsError(f"cannot read the GitHub App from the vault: Redis (REDIS_URL) failed: {err}") from None
    finally:
        vault.r.close()
    return creds, "no app is stored in the vault yet"


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool(env.get(name, "").strip())


def _key_set(env: Mapping[str, str]) -> bool:
    return _set(env, "GITHUB_PRIVATE_KEY") or _set(env, "GITHUB_PRIVATE_KEY_PATH")
