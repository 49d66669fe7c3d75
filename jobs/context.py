"""The engine's per-process wiring: settings, store, GitHub app and queues, built once and shared."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis
from rq import Queue

from clarity.app_credentials import load_settings
from clarity.pushes import PushedShas
from clarity.redaction import install_logging, redact
from clarity.settings import Settings
from clarity.store import Store
from github_app.client import GitHubApp, InstallationWriteLock, RetryPolicy, SharedCache
from github_app.identity import Identity

PRIORITIES = tuple(range(10, 0, -1))  # `/clarity run ... priority N`: 10 first, 5 by default


@dataclass(frozen=True, slots=True)
class Engine:
    """Everything a job needs to act."""

    settings: Settings
    store: Store
    github: GitHubApp
    intake_queue: Queue
    steps_queues: tuple[Queue, ...]  # by priority, highest first: workers drain them in this order
    identity: Identity  # the app's bot on GitHub: its login (own pushes, comments) and the commits' author
    pushed: PushedShas  # the commits Clarity pushed lately: a push webhook carrying one is its own

    def queue_for(self, priority: int) -> Queue:
        """The steps queue of a priority (1 to 10, 10 runs first)."""
        return self.steps_queues[PRIORITIES[0] - min(max(priority, PRIORITIES[-1]), PRIORITIES[0])]

    def dashboard_url(self, execution_id: str) -> str:
        """Where people watch an execution."""
        return f"{self.settings.public_url}/executions/{execution_id}"


def build(settings: Settings) -> Engine:
    """Wire an engine from settings (RQ needs a connection without decoding)."""
    for value in settings.secret_values():
        redact.add(value)
    raw = redis.Redis.from_url(settings.redis_url)
    store = Store.from_url(settings.redis_url, settings.namespace)
    github = GitHubApp(settings.app_id, settings.private_key, settings.github_api_url,
                       shared=SharedCache(raw, settings.namespace, settings.private_key),
                       api_version=settings.github_api_version,
                       retry=RetryPolicy(secondary_wait=settings.secondary_limit_wait),
                       writes=InstallationWriteLock(raw, settings.namespace))
    return Engine(
        settings=settings,
        store=store,
        github=github,
        intake_queue=Queue(settings.intake_queue, connection=raw),
        steps_queues=tuple(Queue(f"{settings.steps_queue}:p{p}", connection=raw) for p in PRIORITIES),
        identity=Identity(github, settings.bot_login),
        pushed=PushedShas(store.r, settings.namespace),
    )


@functools.cache
def engine() -> Engine:
    """The process's engine, from the environment (read once)."""
    settings = load_settings()  # the environment, and the app `clarity setup` stored for what it lacks
    install_logging(settings.log_level, settings.log_format)
    return build(settings)
