"""Operating endpoints: `/readyz` (can this deployment take work?) and `/metrics` (Prometheus).

`/healthz` (in app.py) says only that the web process is up. `/readyz` also asks Redis and looks
for RQ workers that heartbeat on the deployment's queues: a load balancer or an orchestrator should
route webhooks to a web process only while it answers 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from rq import Worker

from clarity import metrics
from clarity.settings import Settings

bp = Blueprint("ops", __name__)


@dataclass(frozen=True, slots=True)
class OpsConfig:
    """What the views need, set on `app.extensions["clarity.ops"]` by the app factory."""

    settings: Settings
    connection: redis.Redis  # undecoded, as RQ wants it
    collectors: tuple[Any, ...]


def _config() -> OpsConfig:
    return current_app.extensions["clarity.ops"]


def worker_roles(connection: redis.Redis, settings: Settings, now: float | None = None) -> dict[str, int]:
    """How many workers with a recent heartbeat listen on the intake queue and on a steps queue."""
    now = time.time() if now is None else now
    roles = {"intake": 0, "steps": 0}
    for worker in Worker.all(connection=connection):
        beat = worker.last_heartbeat
        if beat is None or now - beat.replace(tzinfo=beat.tzinfo or UTC).timestamp() > settings.ready_worker_age:
            continue
        names = set(worker.queue_names())
        if settings.intake_queue in names:
            roles["intake"] += 1
        if any(n == settings.steps_queue or n.startswith(settings.steps_queue + ":") for n in names):
            roles["steps"] += 1
    return roles


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """200 when Redis answers and workers heartbeat on the intake and steps queues; else 503 naming what is missing."""
    config = _config()
    settings = config.settings
    try:
        config.connection.ping()
        roles = worker_roles(config.connection, settings)
    except redis.RedisError as exc:
        return jsonify({"status": "not ready", "redis": "down",
                        "missing": [f"redis: {type(exc).__name__}: {exc}"]}), 503
    missing = [f"no worker on the {role} queue{'' if role == 'intake' else 's'} "
               f"({settings.intake_queue if role == 'intake' else settings.steps_queue + '*'}) "
               f"with a heartbeat in the last {settings.ready_worker_age} s"
               for role, count in roles.items() if count == 0]
    body: dict[str, Any] = {"status": "not ready" if missing else "ready", "redis": "ok", "workers": roles,
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if missing:
        body["missing"] = missing
    return jsonify(body), 503 if missing else 200


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text format: recorded metrics plus queue depths and executions read from Redis now."""
    body, content_type = metrics.exposition(_config().collectors)
    return Response(body, content_type=content_type)
