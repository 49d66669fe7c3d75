"""Shared fixtures: a real Redis (REDIS_URL if it answers, else a private server) and test settings."""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import devstack
from clarity.settings import Settings
from clarity.store import Store
from devstack import localredis

# `forge`: a running GitHub stand-in; the API app; the real agent CLIs (`agent_tools`, their versions in the summary)
pytest_plugins = ["tests.conftest_forge", "tests.api_fixtures", "tests.agent_tools"]

# Real GitHub payloads (octokit/webhooks, MIT: see its README), copied from ../shared so a clone needs nothing beside it
WEBHOOK_FIXTURES = Path(__file__).parent / "fixtures" / "github-webhooks"
WEBHOOK_SECRET = "test-webhook-secret-8c1f2e"
AGENT = Path(__file__).parent / "fixtures" / "agents" / "scripted.py"  # the deterministic test agent
TEST_DB = 13  # on a shared Redis, keep to one database; tests also keep to namespaces of their own


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL for the whole run; a private server is stopped at the end."""
    wanted = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if localredis.reachable(wanted):
        base = wanted.rsplit("/", 1)[0] if wanted.count("/") > 2 else wanted
        yield f"{base}/{TEST_DB}"
        return
    handle = localredis.start_private()
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.fixture
def namespace() -> str:
    """A key namespace of the test's own, so tests (and concurrent runs) never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_url: str, namespace: str) -> Iterator[redis.Redis]:
    """A decoded client; the test's keys (store and RQ queues) are deleted afterwards."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    keys = [*client.scan_iter(f"{namespace}:*", count=1000), *client.scan_iter(f"rq:*{namespace}:*", count=1000)]
    if keys:
        client.delete(*keys)


@pytest.fixture
def store(redis_client: redis.Redis, namespace: str) -> Store:
    """A store in the test's namespace."""
    return Store(redis_client, namespace)


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    """An RSA key for the test app (generated once per run)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


_SANDBOX_HERE = functools.cache(devstack.sandbox_here)  # probed once per test process


@pytest.fixture
def settings(redis_url: str, private_key_pem: str, tmp_path: Path, namespace: str) -> Settings:
    """Valid settings pointing at the test Redis, the test's namespace and a temporary data dir.

    The dashboard is open (asked for, as an operator must): tests of sign-in and of the closed default say so.
    The sandbox is the local one where this machine can isolate tasks, else `none`, said out loud (as the
    devstack does): the product refuses every task it cannot isolate, and so would every engine test.
    """
    return Settings(app_id=4242, private_key=private_key_pem, webhook_secret=WEBHOOK_SECRET,
                    github_api_url="http://127.0.0.1:9/api/v3", redis_url=redis_url, data_dir=tmp_path / "data",
                    namespace=namespace, dashboard_auth="open", sandbox=_SANDBOX_HERE())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of the `stack` fixture is e2e; a test that starts the stack another way is marked in its module."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _stack_starts_only_in_e2e_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts the whole stack but is not marked e2e fails, or `make check` would wait on it."""
    if request.node.get_closest_marker("e2e") is not None:
        return

    def refused(*args: object, **kwargs: object) -> devstack.Stack:
        pytest.fail(f"{request.node.nodeid} starts the whole stack (devstack.start): mark it @pytest.mark.e2e",
                    pytrace=False)

    monkeypatch.setattr(devstack, "start", refused)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[devstack.Stack]:
    """The whole product (forge, web, a `clarity worker`) in a namespace of its own, with the test agent."""
    running = devstack.start(tmp_path / "stack", redis_url, agent_command=f"{sys.executable} {AGENT} {{prompt_file}}",
                             namespace=f"e2e-{uuid.uuid4().hex[:8]}", extra_env={"CLARITY_RETRY_BACKOFF": "0.05"})
    try:
        yield running
    finally:
        running.forget()
        running.stop()
