"""`POST /webhooks`: verify the signature, dedupe the delivery, enqueue intake, answer 202 in milliseconds."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from flask import Blueprint, Response, current_app, jsonify, request

from clarity import logcontext, metrics

log = logging.getLogger(__name__)

INTAKE_JOB = "jobs.intake.handle_delivery"
# The events the app subscribes to (its manifest lists the same); everything else is answered 204 and
# dropped. Which actions of them matter is decided by the routers in jobs/.
HANDLED_EVENTS = frozenset({"issue_comment", "check_run", "check_suite", "pull_request", "push", "installation",
                            "installation_repositories"})
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB

bp = Blueprint("webhooks", __name__)


class Intake(Protocol):
    """Claims a delivery id and queues its intake job, both or neither (clarity.deliveries.DeliveryQueue)."""

    def accept(self, event: str, delivery: str, body: str) -> bool:
        """True if queued; False if the delivery id was already seen. Raises if Redis fails."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What the view needs, set on `app.extensions["clarity.webhooks"]` by the app factory."""

    secret: str
    intake: Intake


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of `X-Hub-Signature-256: sha256=<hex hmac of the raw body>`."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def _problem(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"message": message}), status


@bp.post("/webhooks")
def receive() -> tuple[Response, int]:
    """Accept one GitHub delivery; count it and time the answer."""
    started = time.perf_counter()
    event = request.headers.get("X-GitHub-Event", "")
    with logcontext.bind(delivery_id=request.headers.get("X-GitHub-Delivery")):
        response, status, result = _receive(current_app.extensions["clarity.webhooks"], event)
    # The event header is the sender's word until the signature checks: count only the known ones.
    known = event if event in HANDLED_EVENTS or event == "ping" else "other"
    metrics.webhook_delivery(known, result, time.perf_counter() - started)
    return response, status


def _receive(config: WebhookConfig, event: str) -> tuple[Response, int, str]:
    if (request.content_length or 0) > MAX_BODY:
        return *_problem(413, "payload larger than 25 MB"), "too_large"
    body = request.get_data(cache=False)
    if not signature_ok(config.secret, body, request.headers.get("X-Hub-Signature-256")):
        log.warning("webhook refused: bad or missing signature (delivery %s)",
                    request.headers.get("X-GitHub-Delivery", "?"))
        return *_problem(401, "signature does not match"), "bad_signature"
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery:
        return *_problem(400, "X-GitHub-Event and X-GitHub-Delivery headers are required"), "malformed"
    if event == "ping":
        return jsonify({"message": "pong", "delivery": delivery}), 200, "ping"
    if event not in HANDLED_EVENTS:
        return jsonify({"message": f"event {event} is not handled"}), 204, "ignored"
    if not request.is_json and not body.lstrip().startswith(b"{"):
        return *_problem(400, "expected a JSON body"), "malformed"
    try:
        queued = config.intake.accept(event, delivery, body.decode("utf-8", "replace"))
    except redis.RedisError:
        # Nothing was claimed: GitHub's redelivery (or its automatic retry) will be processed.
        log.exception("could not queue delivery %s", delivery)
        return *_problem(503, "could not queue the delivery; retry later"), "unavailable"
    if not queued:
        log.info("delivery %s already seen: ignored", delivery)
        return jsonify({"message": "duplicate delivery", "delivery": delivery}), 200, "duplicate"
    log.info("delivery %s (%s) queued", delivery, event)
    return jsonify({"message": "queued", "delivery": delivery}), 202, "accepted"
