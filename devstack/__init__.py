"""A whole Clarity on one machine for the demo and the end-to-end tests: Redis, forge, web, workers.

Like `app.py`, this is a composition root: it may import every package. Product code never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets as pysecrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from app import create_app
from clarity.settings import Settings
from devstack import localredis
from forge.config import ForgeConfig
from forge.server import RunningForge, serve_in_thread
from jobs.sandboxes import shortfall

log = logging.getLogger(__name__)
APP_ID = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The app's slug on the local forge. Not "clarity": a real app's slug is whatever its name made it, so the
# stack (and every test on it) must find its bot's login from GitHub (`GET /app`), never assume it.
APP_SLUG = "clarity-local"


def generate_key() -> str:
    """A fresh RSA private key (PEM) for the app."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass
class Stack:
    """Everything running, plus what a test or the demo needs to drive and inspect it."""

    base: Path
    redis: localredis.RedisHandle
    forge: RunningForge
    web: BaseWSGIServer
    web_url: str
    env: dict[str, str]
    settings: Settings
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _web_thread: threading.Thread | None = None

    @property
    def bot_login(self) -> str:
        """The app's bot account on the forge (`<slug>[bot]`): the author of every comment and push of Clarity."""
        return self.forge.context.app.bot_login

    # -- driving ------------------------------------------------------------------------------
    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the forge's admin API and return its JSON."""
        response = httpx.request(method, f"{self.forge.url}/_forge{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def create_repo(self, full_name: str, source_dir: Path) -> dict[str, Any]:
        """A forge repository from a directory's files."""
        return self.admin("POST", "/repos", json={"full_name": full_name, "source_dir": str(source_dir)})

    def comment(self, repo: str, issue: int, body: str, user: str | None = None,
                delivery_id: str | None = None) -> dict[str, Any]:
        """Post a comment as a user; the forge sends the signed webhook to the web process."""
        payload: dict[str, Any] = {"repo": repo, "issue": issue, "body": body}
        if user:
            payload["user"] = user
        if delivery_id:
            payload["delivery_id"] = delivery_id
        return self.admin("POST", "/comment", json=payload)

    def start_worker(self, log_path: Path | None = None, role: str = "all") -> subprocess.Popen[bytes]:
        """A real `clarity worker` process (RQ) with the stack's environment; `role` as `--role` takes it.

        With role `intake` or `steps` the process is the RQ worker itself (no supervisor in between),
        so a test can kill exactly that worker.
        """
        log = open(log_path or self.base / f"worker-{len(self.workers)}.log", "ab")  # noqa: SIM115
        argv = [sys.executable, "-m", "cli", "worker", *(["--role", role] if role != "all" else [])]
        process = subprocess.Popen(argv, env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT, cwd=self.base, start_new_session=True)
        self.workers.append(process)
        return process

    # -- stopping -----------------------------------------------------------------------------
    def forget(self) -> int:
        """Delete this stack's keys (its namespace and its RQ queues) from a shared Redis."""
        import redis as redis_py

        client = redis_py.Redis.from_url(self.redis.url)
        ns = self.settings.namespace
        keys = [*client.scan_iter(f"{ns}:*", count=1000), *client.scan_iter(f"rq:*{ns}:*", count=1000)]
        return int(client.delete(*keys)) if keys else 0

    def stop(self, forget: bool = False) -> None:
        """Stop workers, web, forge and any Redis we started; with `forget`, delete this stack's keys once
        the workers are gone (before, a job finishing meanwhile would write some again)."""
        # TERM asks RQ for a warm shutdown (finish the job); a second TERM makes it cold. Whatever is
        # left after that (agents included) goes with the process group: nothing outlives the stack.
        for attempt in range(2):
            for process in self.workers:
                if process.poll() is None:
                    process.terminate()
            if _wait_all(self.workers, 3.0 if attempt == 0 else 5.0):
                break
        for process in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if forget:
            self.forget()
        self.web.shutdown()
        self.web.server_close()
        self.forge.stop()
        self.redis.stop()


def sandbox_here() -> str:
    """`local` where this machine can isolate tasks; else `none`, said out loud (the product itself would
    refuse every task: a development stack on a machine without bubblewrap or cgroups runs them unsandboxed)."""
    reason = shortfall(Settings(app_id=APP_ID, private_key="", webhook_secret=""))
    if reason is None:
        return "local"
    log.warning("this machine cannot isolate tasks (%s): the local stack runs them unsandboxed "
                "(CLARITY_SANDBOX=none)", reason)
    return "none"


def start(base: Path, redis_url: str | None = None, agent_command: str = "", workers: int = 1,
          extra_env: dict[str, str] | None = None, namespace: str = "clarity", sign_in: bool = False,
          app_slug: str = APP_SLUG) -> Stack:
    """Start Redis (reuse or private), the forge, the web app and `workers` worker processes.

    The dashboard is opened explicitly for tests on loopback; with `sign_in` it asks people to sign in
    through the forge's OAuth pages instead, as a real deployment asks them to sign in with GitHub.
    """
    base.mkdir(parents=True, exist_ok=True)
    redis = localredis.ensure(redis_url)
    key_pem = generate_key()
    key_path = base / "app-private-key.pem"
    key_path.write_text(key_pem)
    key_path.chmod(0o600)
    secret = pysecrets.token_hex(20)
    forge = serve_in_thread(ForgeConfig(data_dir=base / "forge", app_id=APP_ID, app_public_key_pem=key_pem,
                                        webhook_url=None, webhook_secret=secret, app_slug=app_slug,
                                        app_name=app_slug.replace("-", " ").title()))
    web = make_server("127.0.0.1", 0, _LateWsgi(), threaded=True, request_handler=_PlainRequestLog)
    web_url = f"http://127.0.0.1:{web.server_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CLARITY_"))},
        "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY_PATH": str(key_path), "GITHUB_WEBHOOK_SECRET": secret,
        "GITHUB_API_URL": forge.api_url, "REDIS_URL": redis.url, "CLARITY_DATA_DIR": str(base / "data"),
        "CLARITY_PUBLIC_URL": web_url, "CLARITY_AGENT_COMMAND": agent_command, "CLARITY_RETRY_BACKOFF": "0.2",
        "CLARITY_LOG_LEVEL": "INFO", "CLARITY_NAMESPACE": namespace,
        # A local stack on loopback for one person: the dashboard is opened explicitly (never a default).
        "CLARITY_DASHBOARD_AUTH": "open", "CLARITY_SANDBOX": sandbox_here(), **(extra_env or {}),
    }
    if sign_in:
        client = httpx.get(f"{forge.url}/_forge/app", timeout=30).json()
        env.update({"CLARITY_DASHBOARD_AUTH": "github", "CLARITY_GITHUB_CLIENT_ID": client["client_id"],
                    "CLARITY_GITHUB_CLIENT_SECRET": client["client_secret"]})
    settings = Settings.from_env(env)
    web.app.target = create_app(settings)  # type: ignore[attr-defined]
    thread = threading.Thread(target=web.serve_forever, name="clarity-web", daemon=True)
    thread.start()
    stack = Stack(base, redis, forge, web, web_url, env, settings, _web_thread=thread)
    stack.admin("PUT", "/webhook", json={"url": f"{web_url}/webhooks"})
    for _ in range(workers):
        stack.start_worker()
    return stack


class _PlainRequestLog(WSGIRequestHandler):
    """Werkzeug's access log without its ANSI colours: the stack's log is read in files, pipes and CI."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Log as werkzeug does, with escape sequences taken out of the arguments."""
        super().log(type, message, *(_ANSI.sub("", a) if isinstance(a, str) else a for a in args))


class _LateWsgi:
    """Bind first (the port decides the public URL), then point at the app."""

    def __init__(self) -> None:
        self.target: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.target(environ, start_response)


def _wait_all(processes: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.poll() is not None for p in processes):
            return True
        time.sleep(0.05)
    return False


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; raise TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
