"""`POST /webhooks`: verify the signature, dedupe the delivery, enqueue intake, answer 202 in milliseconds.

The endpoint is a plain WSGI application in front of the Flask app (`WebhookEndpoint`, composed by
app.py), not a Flask view: a delivery needs none of what Flask does for every request (request and
app contexts, URL routing, the dashboard's signed-cookie session and sign-in guard, response
objects), and on this path that machinery cost more CPU than verifying, claiming and queueing the
delivery together (docs/PERFORMANCE.md, "Webhooks"). Every other request goes to Flask unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import redis
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream

from clarity import logcontext, metrics
from clarity.httpframe import MAX_BODY  # GitHub caps payloads at 25 MB; the web server refuses more too
from github_app import routes

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

PATH = "/webhooks"
INTAKE_JOB = "jobs.intake.handle_delivery"
# The events the app subscribes to (its manifest lists the same). A delivery of another event, or of an
# action no router in jobs/ takes (github_app.routes), is answered 204 and dropped.
HANDLED_EVENTS = routes.HANDLED_EVENTS
_JSON_OBJECT = re.compile(rb"\s*\{")  # the blanks bytes.lstrip() removes, then "{", without copying the body


class Intake(Protocol):
    """Claims a delivery id and queues its intake job, both or neither (clarity.deliveries.DeliveryQueue)."""

    def accept(self, event: str, delivery: str, body: str) -> bool:
        """True if queued; False if the delivery id was already seen. Raises if Redis fails."""
        ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What the endpoint needs: the app's webhook secret and the intake queue."""

    secret: str = field(repr=False)
    intake: Intake
    own_push: routes.OwnPush | None = None  # tells Clarity's own pushes, dropped here (github_app.identity)
    # The HMAC keyed once; each delivery copies it instead of hashing the padded key again.
    keyed: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyed", hmac.new(self.secret.encode(), digestmod=hashlib.sha256))

    def signature_ok(self, body: bytes, header: str | None) -> bool:
        """Constant-time check of `X-Hub-Signature-256: sha256=<hex hmac of the raw body>`."""
        if not header or not header.startswith("sha256="):
            return False
        mac = self.keyed.copy()
        mac.update(body)
        return hmac.compare_digest(b"sha256=" + mac.hexdigest().encode(), header.strip().encode())


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint answers: HTTP status, JSON fields, and the result counted in the metrics."""

    status: int
    fields: dict[str, str]
    result: str


class WebhookEndpoint:
    """WSGI middleware: `/webhooks` is answered here, every other path by the wrapped app (Flask's)."""

    def __init__(self, config: WebhookConfig, app: WSGIApplication) -> None:
        self.config = config
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":  # not a delivery: not counted
            answered = respond(start_response, Answer(405, {"message": "only POST is allowed here"}, "malformed"))
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else answered
        started = time.perf_counter()
        event = environ.get("HTTP_X_GITHUB_EVENT", "")
        delivery = environ.get("HTTP_X_GITHUB_DELIVERY", "")
        with logcontext.bind(delivery_id=delivery):
            try:
                answer = receive(self.config, environ, event, delivery)
            except Exception:  # the WSGI boundary: logged here, through the redactor, rather than by the server
                log.exception("webhook delivery %s failed", delivery or "?")  # not counted, as before
                return respond(start_response, Answer(500, {"message": "internal error"}, "error"))
        # The event header is the sender's word until the signature checks: count only the known ones.
        known = event if event in HANDLED_EVENTS or event == "ping" else "other"
        metrics.webhook_delivery(known, answer.result, time.perf_counter() - started)
        return respond(start_response, answer)


def receive(config: WebhookConfig, environ: WSGIEnvironment, event: str, delivery: str) -> Answer:
    """Judge one delivery and, if it is new and well formed, queue it."""
    if (get_content_length(environ) or 0) > MAX_BODY:
        return Answer(413, {"message": "payload larger than 25 MB"}, "too_large")
    body = read_body(environ)
    if isinstance(body, Answer):
        return body
    if not config.signature_ok(body, environ.get("HTTP_X_HUB_SIGNATURE_256")):
        log.warning("webhook refused: bad or missing signature (delivery %s)", delivery or "?")
        return Answer(401, {"message": "signature does not match"}, "bad_signature")
    if not event or not delivery:
        return Answer(400, {"message": "X-GitHub-Event and X-GitHub-Delivery headers are required"}, "malformed")
    if event == "ping":
        return Answer(200, {"message": "pong", "delivery": delivery}, "ping")
    if event not in HANDLED_EVENTS:
        return Answer(204, {"message": f"event {event} is not handled"}, "ignored")
    if not _JSON_OBJECT.match(body) and not declares_json(environ.get("CONTENT_TYPE", "")):
        return Answer(400, {"message": "expected a JSON body"}, "malformed")
    if not routes.wanted(event, body, config.own_push):
        # Most of GitHub's traffic (every Actions job's check runs, every push and PR change): nothing
        # claimed, nothing queued, so the intake queue holds only work that can matter.
        return Answer(204, {"message": f"{event} delivery not acted on"}, "ignored")
    try:
        queued = config.intake.accept(event, delivery, body.decode("utf-8", "replace"))
    except redis.RedisError:
        # Nothing was claimed, so a redelivery is processed. GitHub never redelivers by itself: it records
        # the delivery as failed, and the delivery reconciler (jobs.redelivery) asks for a redelivery.
        log.exception("could not queue delivery %s", delivery)
        return Answer(503, {"message": "could not queue the delivery; retry later"}, "unavailable")
    if not queued:
        log.info("delivery %s already seen: ignored", delivery)
        return Answer(200, {"message": "duplicate delivery", "delivery": delivery}, "duplicate")
    log.info("delivery %s (%s) queued", delivery, event)
    return Answer(202, {"message": "queued", "delivery": delivery}, "accepted")


def read_body(environ: WSGIEnvironment) -> bytes | Answer:
    """The raw body, read as Flask reads it (at most MAX_BODY of a chunked stream); an Answer if it cannot be."""
    try:
        body = get_input_stream(environ, max_content_length=MAX_BODY).read()
    except RequestEntityTooLarge:
        return Answer(413, {"message": "payload larger than 25 MB"}, "too_large")
    except ClientDisconnected:
        return Answer(400, {"message": "the body ended before its Content-Length"}, "malformed")
    if len(body) >= MAX_BODY and get_content_length(environ) is None:  # a stream cut at the cap, not a whole body
        return Answer(413, {"message": "payload larger than 25 MB"}, "too_large")
    return body


def declares_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON (`application/json`, `application/*+json`), as Flask's `is_json`."""
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def respond(start_response: StartResponse, answer: Answer) -> list[bytes]:
    """Send an answer: its fields as one line of JSON (none for a 204)."""
    status = f"{answer.status} {HTTP_STATUS_CODES[answer.status]}"
    if answer.status == 204:  # no content, as werkzeug would send it
        start_response(status, [])
        return []
    data = json.dumps(answer.fields).encode() + b"\n"
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if answer.status == 405:
        headers.append(("Allow", "POST"))
    start_response(status, headers)
    return [data]
