"""Redis with a password: compose's ACL users per role, and a Clarity that works through them and never says
the password (settings repr, errors, logs, /readyz).

The Redis here is started by the test with compose's own ACL script (compose.yaml, service `redis`), on a
free port, so the machine's Redis is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis
import yaml
from rq import Queue

import devstack
from app import create_app
from clarity.settings import Settings, SettingsError
from clarity.status import ExecutionStatus
from clarity.store import Store
from jobs.worker import SteadyWorker
from tests.e2e import REPO, make_repo, tasks_md, wait_settled

ROOT = Path(__file__).resolve().parent.parent
WEB_PASSWORD = "web-" + uuid.uuid4().hex
WORKER_PASSWORD = "worker-" + uuid.uuid4().hex

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")


@dataclass(frozen=True)
class AclRedis:
    port: int
    folder: Path

    def url(self, user: str, password: str, db: int = 0) -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/{db}"


def compose_redis() -> dict[str, object]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["redis"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[AclRedis]:
    """redis-server started by compose's entrypoint script, with compose's ACL rules and our passwords."""
    service = compose_redis()
    entrypoint = service["entrypoint"]  # type: ignore[index]
    assert entrypoint[:2] == ["sh", "-c"]  # type: ignore[index]
    folder = Path(tempfile.mkdtemp(prefix="clarity-acl-redis-"))
    # Compose turns `$$` into `$`; the image's entrypoint only drops root before starting redis-server.
    script = entrypoint[2].replace("$$", "$").replace("/data/", f"{folder}/").replace(  # type: ignore[index]
        "exec docker-entrypoint.sh", "exec")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "REDIS_WEB_PASSWORD": WEB_PASSWORD, "REDIS_WORKER_PASSWORD": WORKER_PASSWORD,
           "REDIS_ACL_RULES": service["environment"]["REDIS_ACL_RULES"]}  # type: ignore[index]
    server = subprocess.Popen(["sh", "-c", script, "redis-acl", "redis-server", "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = AclRedis(port, folder)
    try:
        devstack.wait_for(lambda: _pings(handle.url("clarity-worker", WORKER_PASSWORD)), 10,
                          what="the ACL redis-server to answer")
        yield handle
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_the_default_user_is_off_and_each_role_has_its_own_password(acl_redis: AclRedis) -> None:
    with socket.create_connection(("127.0.0.1", acl_redis.port), timeout=5) as anonymous:
        anonymous.sendall(b"PING\r\n")
        assert anonymous.recv(100).startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(acl_redis.url("clarity-web", WORKER_PASSWORD)).ping()
    assert redis.Redis.from_url(acl_redis.url("clarity-web", WEB_PASSWORD)).ping()
    # compose's health check, as the container runs it
    health = compose_redis()["healthcheck"]["test"][1].replace("$$", "$")  # type: ignore[index]
    done = subprocess.run(["sh", "-c", f"{health.replace('redis-cli', f'redis-cli -p {acl_redis.port}', 1)}"],
                          env={**os.environ, "REDIS_WORKER_PASSWORD": WORKER_PASSWORD}, check=False)
    assert done.returncode == 0


def test_a_role_reaches_only_clarity_and_rq_keys_and_no_admin_command(acl_redis: AclRedis) -> None:
    web = redis.Redis.from_url(acl_redis.url("clarity-web", WEB_PASSWORD))
    assert web.set("clarity:probe", "1") and web.delete("clarity:probe") == 1
    for refused in (lambda: web.set("other:key", "1"), lambda: web.flushall(), lambda: web.config_get("*"),
                    lambda: web.keys("*"), lambda: web.execute_command("ACL", "LIST"),
                    lambda: web.publish("elsewhere", "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


def test_settings_store_and_rq_work_with_the_credentials_in_redis_url(
        acl_redis: AclRedis, private_key_pem: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = acl_redis.url("clarity-worker", WORKER_PASSWORD)
    settings = Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key_pem,
                                  "GITHUB_WEBHOOK_SECRET": "s" * 20, "REDIS_URL": url,
                                  "CLARITY_DATA_DIR": str(tmp_path)})
    assert settings.redis_url == url and WORKER_PASSWORD not in repr(settings)
    assert WORKER_PASSWORD in settings.secret_values()  # the redactor learns it
    store = Store.from_url(settings.redis_url, settings.namespace)
    assert store.r.ping()
    connection = redis.Redis.from_url(settings.redis_url)
    job = Queue(settings.intake_queue, connection=connection).enqueue("os.getcwd")
    SteadyWorker([Queue(settings.intake_queue, connection=connection)], connection=connection).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    assert WORKER_PASSWORD not in caplog.text


def test_a_bad_redis_url_is_named_without_its_password(private_key_pem: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key_pem, "GITHUB_WEBHOOK_SECRET": "s",
                           "REDIS_URL": f"http://clarity-web:{WEB_PASSWORD}@redis:6379/0"})
    assert WEB_PASSWORD not in str(caught.value)
    assert "REDIS_URL must be a redis/rediss/unix URL, got 'http://clarity-web:***@redis:6379/0'" in str(caught.value)


def test_readyz_never_shows_the_password(acl_redis: AclRedis, settings: Settings) -> None:
    wrong = replace(settings, redis_url=acl_redis.url("clarity-web", "not-" + WEB_PASSWORD), namespace="clarity")
    down = create_app(wrong).test_client().get("/readyz")
    assert down.status_code == 503 and "not-" + WEB_PASSWORD not in down.get_data(as_text=True)
    assert "AuthenticationError" in down.get_data(as_text=True)
    right = replace(settings, redis_url=acl_redis.url("clarity-web", WEB_PASSWORD), namespace="clarity")
    answer = create_app(right).test_client().get("/readyz")
    assert answer.json["redis"] == "ok" and WEB_PASSWORD not in answer.get_data(as_text=True)  # type: ignore[index]


@pytest.mark.e2e
def test_the_whole_product_runs_on_the_acl_users_and_never_logs_their_passwords(
        acl_redis: AclRedis, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    from tests.conftest import AGENT

    # One process here plays the web role, the `clarity worker` process the worker role.
    stack = devstack.start(tmp_path / "stack", acl_redis.url("clarity-worker", WORKER_PASSWORD), workers=0,
                           agent_command=f"{sys.executable} {AGENT} {{prompt_file}}", namespace="clarity",
                           extra_env={"CLARITY_RETRY_BACKOFF": "0.05"})
    try:
        stack.start_worker()
        make_repo(stack, tmp_path, tasks_md(("1", "Build it", False)))
        stack.comment(REPO, 1, "/clarity run", user="ada")
        ex = wait_settled(stack, timeout=60)
        assert ex.status is ExecutionStatus.COMPLETED, ex.reason
        ready = devstack.wait_for(lambda: _ready(stack), 30, what="/readyz to see the worker")
        assert WORKER_PASSWORD not in ready
    finally:
        stack.forget()
        stack.stop()
    time.sleep(0.1)
    logs = "".join(path.read_text(errors="replace") for path in (tmp_path / "stack").glob("worker-*.log"))
    assert "listening on" in logs  # the worker did log, and said nothing of its password
    assert WORKER_PASSWORD not in logs and WORKER_PASSWORD not in caplog.text


def _ready(stack: devstack.Stack) -> str | None:
    import httpx

    answer = httpx.get(f"{stack.web_url}/readyz", timeout=5)
    return answer.text if answer.status_code == 200 else None
