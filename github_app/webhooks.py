"""`POST /webhooks`: verify the signature, dedupe the delivery, enqueue intake, answer 202 in milliseconds."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Blueprint, Response, current_app, jsonify, request

log = logging.getLogger(__name__)

INTAKE_JOB = "jobs.intake.handle_delivery"
# The events the app subscribes to (its manifest lists the same); everything else is answered 204 and
# dropped. Which actions of them matter is decided by the routers in jobs/.
HANDLED_EVENTS = frozenset({"issue_comment", "check_run", "check_suite", "pull_request", "push", "installation",
                            "installation_repositories"})
MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB

bp = Blueprint("webhooks", __name__)


class DeliveryClaims(Protocol):
    """The dedupe half of the store (kept narrow so the view stays testable)."""

    def claim_delivery(self, delivery_id: str, ttl: int) -> bool: ...
    def release_delivery(self, delivery_id: str) -> None: ...


class Enqueuer(Protocol):
    """Anything that can enqueue a job by dotted name (an rq.Queue)."""

    def enqueue(self, f: str, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What the view needs, set on `app.extensions["clarity.webhooks"]` by the app factory."""

    secret: str
    claims: DeliveryClaims
    intake: Enqueuer
    delivery_ttl: int = 7 * 24 * 3600


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
    """Accept one GitHub delivery."""
    config: WebhookConfig = current_app.extensions["clarity.webhooks"]
    if (request.content_length or 0) > MAX_BODY:
        return _problem(413, "payload larger than 25 MB")
    body = request.get_data(cache=False)
    if not signature_ok(config.secret, body, request.headers.get("X-Hub-Signature-256")):
        log.warning("webhook refused: bad or missing signature (delivery %s)",
                    request.headers.get("X-GitHub-Delivery", "?"))
        return _problem(401, "signature does not match")
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if not event or not delivery:
        return _problem(400, "X-GitHub-Event and X-GitHub-Delivery headers are required")
    if event == "ping":
        return jsonify({"message": "pong", "delivery": delivery}), 200
    if event not in HANDLED_EVENTS:
        return jsonify({"message": f"event {event} is not handled"}), 204
    if not request.is_json and not body.lstrip().startswith(b"{"):
        return _problem(400, "expected a JSON body")
    if not config.claims.claim_delivery(delivery, config.delivery_ttl):
        log.info("delivery %s already seen: ignored", delivery)
        return jsonify({"message": "duplicate delivery", "delivery": delivery}), 200
    try:
        config.intake.enqueue(INTAKE_JOB, event, delivery, body.decode("utf-8", "replace"),
                              description=f"{event} {delivery}")
    except Exception:
        config.claims.release_delivery(delivery)  # let GitHub's redelivery through
        log.exception("could not enqueue delivery %s", delivery)
        return _problem(503, "could not queue the delivery; retry later")
    log.info("delivery %s (%s) queued", delivery, event)
    return jsonify({"message": "queued", "delivery": delivery}), 202
