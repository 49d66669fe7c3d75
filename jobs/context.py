"""The engine's per-process wiring: settings, store, GitHub app and queues, built once and shared."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis
from rq import Queue

from clarity.redaction import install_logging, redact
from clarity.settings import Settings
from clarity.store import Store
from github_app.client import GitHubApp


@dataclass(frozen=True, slots=True)
class Engine:
    """Everything a job needs to act."""

    settings: Settings
    store: Store
    github: GitHubApp
    intake_queue: Queue
    steps_queue: Queue

    def dashboard_url(self, execution_id: str) -> str:
        """Where people watch an execution."""
        return f"{self.settings.public_url}/executions/{execution_id}"


def build(settings: Settings) -> Engine:
    """Wire an engine from settings (RQ needs a connection without decoding)."""
    for value in settings.secret_values():
        redact.add(value)
    raw = redis.Redis.from_url(settings.redis_url)
    return Engine(
        settings=settings,
        store=Store.from_url(settings.redis_url, settings.namespace),
        github=GitHubApp(settings.app_id, settings.private_key, settings.github_api_url),
        intake_queue=Queue(settings.intake_queue, connection=raw),
        steps_queue=Queue(settings.steps_queue, connection=raw),
    )


@functools.cache
def engine() -> Engine:
    """The process's engine, from the environment (read once)."""
    settings = Settings.from_env()
    install_logging(settings.log_level)
    return build(settings)
