"""Settings from the environment: valid values read, every bad one named, secrets never echoed."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarity.settings import Settings, SettingsError


def base_env(pem: str) -> dict[str, str]:
    return {"GITHUB_APP_ID": "12", "GITHUB_PRIVATE_KEY": pem, "GITHUB_WEBHOOK_SECRET": "s3cret-value"}


def test_reads_a_complete_environment(private_key_pem: str, tmp_path: Path) -> None:
    env = base_env(private_key_pem) | {"GITHUB_API_URL": "http://127.0.0.1:9100/api/v3/",
                                       "REDIS_URL": "redis://127.0.0.1:6379/2", "CLARITY_DATA_DIR": str(tmp_path),
                                       "CLARITY_RETRIES": "2"}
    settings = Settings.from_env(env)
    assert settings.app_id == 12
    assert settings.github_api_url == "http://127.0.0.1:9100/api/v3"
    assert settings.redis_url == "redis://127.0.0.1:6379/2"
    assert settings.data_dir == tmp_path
    assert settings.retries == 2
    assert settings.private_key.startswith("-----BEGIN PRIVATE KEY-----")


def test_private_key_from_path_and_escaped_newlines(private_key_pem: str, tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text(private_key_pem)
    env = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(key), "GITHUB_WEBHOOK_SECRET": "x" * 8}
    assert Settings.from_env(env).private_key.strip() == private_key_pem.strip()
    assert Settings.from_env(env).private_key_path == key.resolve()
    escaped = base_env(private_key_pem.replace("\n", "\\n"))
    assert Settings.from_env(escaped).private_key.strip() == private_key_pem.strip()


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({})
    message = str(info.value)
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET"):
        assert f"{name} is not set" in message


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("GITHUB_APP_ID", "abc", "GITHUB_APP_ID must be a whole number, got 'abc'"),
    ("GITHUB_APP_ID", "0", "GITHUB_APP_ID must be at least 1, got 0"),
    ("GITHUB_API_URL", "ftp://x", "GITHUB_API_URL must be a http/https URL, got 'ftp://x'"),
    ("REDIS_URL", "localhost:6379", "REDIS_URL must be a redis/rediss/unix URL, got 'localhost:6379'"),
    ("CLARITY_RETRIES", "-1", "CLARITY_RETRIES must be at least 0, got -1"),
    ("CLARITY_TASK_TIMEOUT", "soon", "CLARITY_TASK_TIMEOUT must be a number, got 'soon'"),
    ("CLARITY_LEASE_TTL", "0", "CLARITY_LEASE_TTL must be at least 1, got 0"),
])
def test_malformed_values_are_named(private_key_pem: str, name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        Settings.from_env(base_env(private_key_pem) | {name: value})


def test_a_key_that_is_not_pem_is_refused_without_echoing_it(private_key_pem: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(base_env("not-a-key-but-secret-material"))
    assert "GITHUB_PRIVATE_KEY is not a PEM private key" in str(info.value)
    assert "secret-material" not in str(info.value)


def test_unreadable_key_path_is_named(tmp_path: Path) -> None:
    env = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "missing.pem"),
           "GITHUB_WEBHOOK_SECRET": "x" * 8}
    with pytest.raises(SettingsError, match="GITHUB_PRIVATE_KEY_PATH cannot be read"):
        Settings.from_env(env)


def test_repr_hides_secrets(private_key_pem: str) -> None:
    settings = Settings.from_env(base_env(private_key_pem))
    assert "s3cret-value" not in repr(settings)
    assert "PRIVATE KEY" not in repr(settings)
