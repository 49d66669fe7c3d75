"""The app webhook's delivery log: list, read and redeliver attempts (JWT-authenticated), as GitHub serves them.

`GET /app/hook/deliveries` pages newest first with a `cursor` (never `page`) and a `Link` header naming
only the next page; GitHub keeps deliveries 3 days and redelivers only those (422 for older ones). A
redelivery is answered 202 at once and sent after the request, with the same X-GitHub-Delivery guid.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from forge.context import forge_context
from forge.hooks import REDELIVERY_WINDOW, Delivery
from forge.records import now
from forge.rest.access import require_jwt
from forge.rest.errors import ApiError, invalid_request, not_found
from forge.shapes import ts

blueprint = Blueprint("forge_rest_hook_deliveries", __name__)
_CURSOR = re.compile(r"v1_(\d{1,20})")
STATUSES = ("success", "failure")


def item(delivery: Delivery) -> dict[str, Any]:
    """A `hook-delivery-item`."""
    return {
        "id": delivery.id,
        "guid": delivery.delivery_id,
        "delivered_at": ts(delivery.delivered_at),
        "redelivery": delivery.redelivery,
        "duration": round(delivery.duration_ms / 1000, 2),
        "status": delivery.status,
        "status_code": delivery.status_code or 0,
        "event": delivery.event,
        "action": delivery.action,
        "installation_id": delivery.payload_id("installation"),
        "repository_id": delivery.payload_id("repository"),
        "throttled_at": None,
    }


def _per_page() -> int:
    raw = request.args.get("per_page", "30")
    if not raw.isdigit():
        raise invalid_request(f"Invalid property /per_page: `{raw}` is not of type `integer`.")
    return min(max(int(raw), 1), 100)


def _older_than() -> int | None:
    """The cursor's attempt id: the page lists attempts older than it."""
    raw = request.args.get("cursor")
    if raw is None:
        return None
    found = _CURSOR.fullmatch(raw)
    if found is None:
        raise ApiError(400, "Invalid cursor")
    return int(found.group(1))


@blueprint.get("/app/hook/deliveries")
def list_deliveries() -> Response:
    """GET /app/hook/deliveries: one page of attempts, newest first."""
    require_jwt()
    per_page, older_than, wanted = _per_page(), _older_than(), request.args.get("status")
    if wanted is not None and wanted not in STATUSES:
        raise invalid_request(f"Invalid property /status: `{wanted}` is not one of {list(STATUSES)}.")
    oldest = now() - REDELIVERY_WINDOW
    attempts = [d for d in forge_context().hooks.attempts() if d.delivered_at >= oldest
                and (older_than is None or d.id < older_than)
                and (wanted is None or d.ok == (wanted == "success"))]
    page = attempts[:per_page]
    resp = jsonify([item(d) for d in page])
    if len(attempts) > per_page:
        query = urlencode({**request.args.to_dict(), "per_page": per_page, "cursor": f"v1_{page[-1].id}"})
        resp.headers["Link"] = f'<{request.base_url}?{query}>; rel="next"'
    return resp


def _attempt(delivery_id: int) -> Delivery:
    found = forge_context().hooks.attempt(delivery_id)
    if found is None or found.url is None:
        raise not_found()
    return found


@blueprint.get("/app/hook/deliveries/<int:delivery_id>")
def get_delivery(delivery_id: int) -> Response:
    """GET /app/hook/deliveries/{delivery_id}: one attempt with its request and response."""
    require_jwt()
    delivery = _attempt(delivery_id)
    payload = delivery.as_json()["payload"]
    return jsonify({
        **item(delivery),
        "url": delivery.url,
        "request": {"headers": dict(delivery.headers), "payload": payload if isinstance(payload, dict) else None},
        "response": {"headers": dict(delivery.response_headers), "payload": delivery.response_body or None},
    })


@blueprint.post("/app/hook/deliveries/<int:delivery_id>/attempts")
def redeliver(delivery_id: int) -> Response:
    """POST /app/hook/deliveries/{delivery_id}/attempts: 202, and the event goes out again (same guid)."""
    require_jwt()
    hooks = forge_context().hooks
    delivery = _attempt(delivery_id)
    if delivery.delivered_at < now() - REDELIVERY_WINDOW:
        raise ApiError(422, "Delivery is older than 3 days and cannot be redelivered")
    hooks.redeliver_attempt(delivery.id)
    resp = jsonify({})
    resp.status_code = 202
    return resp
