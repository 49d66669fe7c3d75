"""Secrets at rest: encrypted in Redis, rotated across keys, never shown, never logged, managed by the CLI."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import redis
from cryptography.fernet import Fernet

from clarity.redaction import MASK, redact
from clarity.settings import Settings, SettingsError
from clarity.vault import RotationReport, Vault, VaultError, generate_key
from cli import main

TOKEN = "ghp_" + "A1b2C3d4E5" * 4
VALUES = {"OPENAI_API_KEY": "sk-live-9f8e7d6c5b4a39281706", "github.token": TOKEN, "db_pw": "correct horse battery"}


@pytest.fixture
def key1() -> str:
    return generate_key()


@pytest.fixture
def key2() -> str:
    return generate_key()


def fill(vault: Vault) -> None:
    for name, value in VALUES.items():
        vault.set(name, value)


def test_a_secret_round_trips_with_its_scope(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    vault = Vault(redis_client, namespace, [key1])
    vault.set("OPENAI_API_KEY", "sk-live-9f8e7d6c5b4a39281706", scope="installation:123")
    assert vault.get("OPENAI_API_KEY") == "sk-live-9f8e7d6c5b4a39281706"
    [info] = vault.names()
    assert (info.name, info.scope, info.key_position) == ("OPENAI_API_KEY", "installation:123", 1)
    assert info.updated_at > 0


def test_setting_again_replaces_the_value(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    vault = Vault(redis_client, namespace, [key1])
    vault.set("db_pw", "first-value")
    vault.set("db_pw", "second-value", scope="repo:octo/hello")
    assert vault.get("db_pw") == "second-value"
    assert [(i.name, i.scope) for i in vault.names()] == [("db_pw", "repo:octo/hello")]


def test_values_are_never_in_redis_in_clear(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    fill(Vault(redis_client, namespace, [key1]))
    stored = json.dumps([redis_client.hgetall(f"{namespace}:secrets"),
                         redis_client.hgetall(f"{namespace}:secrets:meta")])
    assert sorted(redis_client.hkeys(f"{namespace}:secrets")) == sorted(VALUES)
    for value in VALUES.values():
        assert value not in stored
    assert key1 not in stored


def test_names_show_no_values(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    vault = Vault(redis_client, namespace, [key1])
    fill(vault)
    infos = vault.names()
    assert [i.name for i in infos] == sorted(VALUES)
    for value in VALUES.values():
        assert value not in repr(infos)


def test_every_value_stored_or_read_is_redacted(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    writer = Vault(redis_client, namespace, [key1])
    writer.set("stored", "only-stored-value-51")
    assert redact("x only-stored-value-51 y") == f"x {MASK} y"
    redis_client.hset(f"{namespace}:secrets", "read", Fernet(key1).encrypt(b"only-read-value-73").decode())
    assert writer.get("read") == "only-read-value-73"
    assert redact("only-read-value-73") == MASK
    assert key1 not in redact(f"key {key1}")


def test_values_never_reach_the_logs(redis_client: redis.Redis, redis_url: str, namespace: str, key1: str, key2: str,
                                     caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    vault = Vault(redis_client, namespace, [key1])
    fill(vault)
    for name in VALUES:
        vault.get(name)
    Vault(redis_client, namespace, [key2, key1]).rotate()
    env = {"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace, "CLARITY_SECRET_KEYS": key2}
    monkeypatch.setattr(sys, "stdin", io.StringIO("cli-value-never-logged\n"))
    assert main(["secrets", "set", "cli"], env) == 0
    assert main(["secrets", "list"], env) == 0
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for value in [*VALUES.values(), "cli-value-never-logged", key1, key2]:
        assert value not in logged


def test_rotation_moves_everything_to_the_first_key_so_the_old_one_can_go(
        redis_client: redis.Redis, namespace: str, key1: str, key2: str) -> None:
    fill(Vault(redis_client, namespace, [key1]))
    both = Vault(redis_client, namespace, [key2, key1])
    assert {i.key_position for i in both.names()} == {2}
    assert both.rotate() == RotationReport(rotated=3, already_current=0, total=3)
    assert {i.key_position for i in both.names()} == {1}
    assert both.rotate() == RotationReport(rotated=0, already_current=3, total=3)
    only_new = Vault(redis_client, namespace, [key2])
    assert {name: only_new.get(name) for name in VALUES} == VALUES


def test_rotation_keeps_scope_and_date(redis_client: redis.Redis, namespace: str, key1: str, key2: str) -> None:
    Vault(redis_client, namespace, [key1]).set("scoped", "scoped-value-1", scope="installation:7")
    [before] = Vault(redis_client, namespace, [key1]).names()
    Vault(redis_client, namespace, [key2, key1]).rotate()
    [after] = Vault(redis_client, namespace, [key2]).names()
    assert (after.scope, after.updated_at, after.key_position) == ("installation:7", before.updated_at, 1)
    assert after.key_id != before.key_id


def test_rotation_reports_secrets_no_key_opens_and_leaves_them(
        redis_client: redis.Redis, namespace: str, key1: str, key2: str) -> None:
    Vault(redis_client, namespace, [key1]).set("lost", "lost-value-123")
    Vault(redis_client, namespace, [key2]).set("kept", "kept-value-456")
    report = Vault(redis_client, namespace, [key2]).rotate()
    assert report == RotationReport(rotated=0, already_current=1, total=2, unreadable=("lost",))
    assert Vault(redis_client, namespace, [key1]).get("lost") == "lost-value-123"


def test_a_value_under_a_removed_key_is_a_clear_error(redis_client: redis.Redis, namespace: str, key1: str,
                                                       key2: str) -> None:
    Vault(redis_client, namespace, [key1]).set("OPENAI_API_KEY", "sk-live-9f8e7d6c5b4a39281706")
    vault = Vault(redis_client, namespace, [key2])
    with pytest.raises(VaultError) as info:
        vault.get("OPENAI_API_KEY")
    assert str(info.value) == ("secret OPENAI_API_KEY was encrypted with a key that is not in "
                               "CLARITY_SECRET_KEYS")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert [i.key_position for i in vault.names()] == [None]


def test_a_missing_secret_is_named(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    vault = Vault(redis_client, namespace, [key1])
    with pytest.raises(VaultError, match="^no secret named nope$"):
        vault.get("nope")
    with pytest.raises(VaultError, match="^no secret named nope$"):
        vault.delete("nope")


def test_delete_forgets_value_and_metadata(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    vault = Vault(redis_client, namespace, [key1])
    fill(vault)
    vault.delete("db_pw")
    assert "db_pw" not in [i.name for i in vault.names()]
    assert not redis_client.hexists(f"{namespace}:secrets:meta", "db_pw")


def test_no_keys_says_how_to_make_one(redis_client: redis.Redis, namespace: str) -> None:
    with pytest.raises(VaultError, match="CLARITY_SECRET_KEYS.*clarity secrets generate-key"):
        Vault(redis_client, namespace, [])


def test_a_malformed_key_is_named_by_position_not_echoed(redis_client: redis.Redis, namespace: str,
                                                        key1: str) -> None:
    with pytest.raises(VaultError) as info:
        Vault(redis_client, namespace, [key1, "not-a-fernet-key-but-secret"])
    assert "key 2 of 2 is not a valid Fernet key" in str(info.value)
    assert "not-a-fernet-key" not in str(info.value)


@pytest.mark.parametrize(("name", "scope", "message"), [
    ("has space", "global", "secret name 'has space' must be"),
    ("ok", "installation:abc", "scope 'installation:abc' must be global, installation:<id>"),
    ("ok", "everyone", "scope 'everyone' must be"),
])
def test_bad_names_and_scopes_are_refused(redis_client: redis.Redis, namespace: str, key1: str, name: str,
                                          scope: str, message: str) -> None:
    with pytest.raises(VaultError, match=message):
        Vault(redis_client, namespace, [key1]).set(name, "some-value", scope=scope)


def test_an_empty_value_is_refused(redis_client: redis.Redis, namespace: str, key1: str) -> None:
    with pytest.raises(VaultError, match="secret x is empty"):
        Vault(redis_client, namespace, [key1]).set("x", "")


# --- settings ---------------------------------------------------------------------------------


def test_settings_read_the_keys_in_order_and_hide_them(private_key_pem: str, key1: str, key2: str) -> None:
    env = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key_pem, "GITHUB_WEBHOOK_SECRET": "x" * 8,
           "CLARITY_SECRET_KEYS": f" {key2} , {key1},"}
    settings = Settings.from_env(env)
    assert settings.secret_keys == (key2, key1)
    assert key1 not in repr(settings) and key2 not in repr(settings)
    assert key1 in settings.secret_values()


def test_settings_name_a_bad_key_by_position_without_echoing_it(key1: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"CLARITY_SECRET_KEYS": f"{key1},hunter2-secret-material"}, require_github=False)
    assert "CLARITY_SECRET_KEYS: key 2 of 2 is not a valid Fernet key" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_settings_without_github_need_no_github_variables(key1: str) -> None:
    settings = Settings.from_env({"CLARITY_NAMESPACE": "ns1", "CLARITY_SECRET_KEYS": key1}, require_github=False)
    assert (settings.namespace, settings.secret_keys, settings.app_id) == ("ns1", (key1,), 0)
    with pytest.raises(SettingsError, match="GITHUB_APP_ID is not set"):
        Settings.from_env({"CLARITY_SECRET_KEYS": key1})


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_env(redis_url: str, namespace: str, redis_client: redis.Redis, key1: str) -> dict[str, str]:
    # redis_client is requested so its teardown deletes what the CLI wrote in this namespace.
    return {"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace, "CLARITY_SECRET_KEYS": key1}


def run_cli(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["secrets", *argv], env)


def test_cli_generate_key_prints_a_usable_key(capsys: pytest.CaptureFixture[str], redis_client: redis.Redis,
                                               namespace: str) -> None:
    assert main(["secrets", "generate-key"], {}) == 0
    key = capsys.readouterr().out.strip()
    Vault(redis_client, namespace, [key]).set("k", "value-123")


def test_cli_set_reads_the_value_from_stdin(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str],
                                            redis_client: redis.Redis, namespace: str, key1: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, cli_env, "set", "OPENAI_API_KEY", "--scope", "installation:123",
                   stdin="sk-from-stdin-0123456789\n") == 0
    vault = Vault(redis_client, namespace, [key1])
    assert vault.get("OPENAI_API_KEY") == "sk-from-stdin-0123456789"
    assert vault.names()[0].scope == "installation:123"
    assert "sk-from-stdin" not in capsys.readouterr().out


def test_cli_list_shows_names_scopes_and_keys_not_values(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str],
                                                         key2: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(monkeypatch, cli_env, "set", "a_secret", stdin="value-of-a-123")
    capsys.readouterr()
    assert run_cli(monkeypatch, cli_env | {"CLARITY_SECRET_KEYS": f"{key2},{cli_env['CLARITY_SECRET_KEYS']}"},
                   "list") == 0
    out = capsys.readouterr().out
    header, row = out.splitlines()
    assert header.split() == ["NAME", "SCOPE", "UPDATED", "(UTC)", "KEY"]
    assert row.split()[:2] == ["a_secret", "global"] and row.endswith(" 2")
    assert "value-of-a" not in out


def test_cli_rotate_reports_counts(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str], key1: str,
                                   key2: str, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("one", "two"):
        run_cli(monkeypatch, cli_env, "set", name, stdin=f"{name}-value-xyz")
    rotated_env = cli_env | {"CLARITY_SECRET_KEYS": f"{key2},{key1}"}
    capsys.readouterr()
    assert run_cli(monkeypatch, rotated_env, "rotate") == 0
    assert capsys.readouterr().out.strip() == "rotated 2, already under key 1: 0, unreadable: 0, total 2"
    assert run_cli(monkeypatch, cli_env | {"CLARITY_SECRET_KEYS": key2}, "list") == 0
    assert capsys.readouterr().out.count("1 (current)") == 2


def test_cli_rotate_fails_when_a_secret_cannot_be_opened(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str],
                                                         key2: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(monkeypatch, cli_env, "set", "old", stdin="old-value-xyz")
    assert run_cli(monkeypatch, cli_env | {"CLARITY_SECRET_KEYS": key2}, "rotate") == 2
    assert "encrypted with a key that is not in CLARITY_SECRET_KEYS" in capsys.readouterr().err


def test_cli_delete(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str],
                    capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(monkeypatch, cli_env, "set", "gone", stdin="gone-value-xyz")
    assert run_cli(monkeypatch, cli_env, "delete", "gone") == 0
    assert run_cli(monkeypatch, cli_env, "delete", "gone") == 2
    assert capsys.readouterr().err.strip() == "clarity: no secret named gone"


def test_cli_needs_no_github_variables_but_a_key(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    env = {k: v for k, v in cli_env.items() if k != "CLARITY_SECRET_KEYS"}
    assert run_cli(monkeypatch, env, "list") == 2
    err = capsys.readouterr().err
    assert "clarity secrets generate-key" in err and "GITHUB" not in err


@pytest.mark.parametrize("argv", [("set",), ("delete",), ("list", "extra")])
def test_cli_name_is_required_exactly_where_it_belongs(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str],
                                                       argv: tuple[str, ...]) -> None:
    assert run_cli(monkeypatch, cli_env, *argv) == 2


def test_cli_never_takes_the_value_from_argv(monkeypatch: pytest.MonkeyPatch, cli_env: dict[str, str]) -> None:
    assert run_cli(monkeypatch, cli_env, "set", "x", "value-on-the-command-line") == 2
