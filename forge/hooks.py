"""Signed webhook deliveries the way GitHub's hookshot sends them, with a delivery log for redelivery.

Every attempt is logged with an id of its own (GitHub's delivery `id`; the `guid` is the
X-GitHub-Delivery header, shared by an event's first attempt and its redeliveries), which is what
`GET /app/hook/deliveries` lists (forge.rest.hook_deliveries). Like GitHub, the forge never tries a
failed delivery again by itself: only a redelivery someone asks for sends it again.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from forge.records import now

HOOK_ID = 1
FIRST_ATTEMPT_ID = 90_000_000_001  # attempt ids are GitHub-sized numbers, newest highest
REDELIVERY_WINDOW = timedelta(days=3)  # GitHub redelivers only deliveries of the last 3 days (and keeps no older)


def signatures(secret: str, body: bytes) -> dict[str, str]:
    """The `X-Hub-Signature-256` and legacy `X-Hub-Signature` headers for a body."""
    key = secret.encode()
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest(),
        "X-Hub-Signature": "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest(),
    }


def encode_payload(payload: dict[str, Any] | str | bytes) -> bytes:
    """The exact bytes to send: given bytes/str are kept byte-for-byte, dicts are compact JSON."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to deliver one event."""

    delivery_id: str
    event: str
    action: str | None
    body: bytes
    headers: tuple[tuple[str, str], ...]
    url: str | None
    status_code: int | None
    error: str | None
    duration_ms: int
    delivered_at: datetime
    redelivery: bool = False
    response_body: str = ""
    id: int = 0  # the attempt's own id (GitHub's delivery `id`); `delivery_id` is the guid
    response_headers: tuple[tuple[str, str], ...] = ()
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def status(self) -> str:
        """GitHub's `status` text: "OK", or why the attempt failed."""
        if self.ok:
            return "OK"
        if self.status_code is not None:
            return f"Invalid HTTP Response: {self.status_code}"
        return "timed out" if self.timed_out else "Couldn't connect to server"

    def payload_id(self, key: str) -> int | None:
        """`<key>.id` of the payload (installation, repository), None when absent or not JSON."""
        try:
            decoded = json.loads(self.body)
        except ValueError:
            return None
        found = decoded.get(key) if isinstance(decoded, dict) else None
        value = found.get("id") if isinstance(found, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def as_json(self) -> dict[str, Any]:
        """The delivery for the admin API (payload decoded when it is JSON)."""
        try:
            payload: Any = json.loads(self.body)
        except ValueError:
            payload = self.body.decode(errors="replace")
        return {
            "id": self.id,
            "delivery_id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "url": self.url,
            "status_code": self.status_code,
            "error": self.error,
            "ok": self.ok,
            "duration_ms": self.duration_ms,
            "delivered_at": self.delivered_at.isoformat(),
            "redelivery": self.redelivery,
            "headers": dict(self.headers),
            "payload": payload,
            "response_body": self.response_body,
        }


class WebhookSender:
    """Sends signed deliveries to one webhook URL (changeable at run time) and logs each attempt."""

    def __init__(self, url: str | None, secret: str, app_id: int, timeout: float) -> None:
        self._lock = threading.Lock()
        self._url = url
        self._secret = secret
        self._app_id = app_id
        self._timeout = timeout
        self._log: list[Delivery] = []
        self._ids = itertools.count(FIRST_ATTEMPT_ID)
        # Deliveries of the forge's own state changes and asked-for redeliveries, sent in order by one
        # thread (`deliver_later`, `redeliver_attempt`).
        self._later: queue.Queue[_Later] = queue.Queue()
        self._sender: threading.Thread | None = None

    @property
    def url(self) -> str | None:
        """Where deliveries go, or None when no receiver is configured."""
        with self._lock:
            return self._url

    def set_url(self, url: str | None) -> None:
        """Point deliveries somewhere else."""
        with self._lock:
            self._url = url

    def set_app(self, url: str | None, secret: str, app_id: int) -> None:
        """Deliver for another app from now on: its webhook URL, secret and id (the manifest flow)."""
        with self._lock:
            self._url, self._secret, self._app_id = url, secret, app_id

    def headers(self, event: str, delivery_id: str, body: bytes) -> dict[str, str]:
        """Hookshot's headers for one delivery."""
        with self._lock:
            secret, app_id = self._secret, self._app_id
        return {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/forge",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-ID": str(app_id),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            **signatures(secret, body),
        }

    def deliver(
        self, event: str, payload: dict[str, Any] | str | bytes, delivery_id: str | None = None
    ) -> Delivery:
        """Sign and POST one event; never raises for receiver failures (they are in the Delivery)."""
        body = encode_payload(payload)
        delivery_id = delivery_id or str(uuid.uuid4())
        action = payload.get("action") if isinstance(payload, dict) else _action_of(body)
        delivery = self._send(event, action, body, delivery_id, self.url)
        with self._lock:
            self._log.append(delivery)
        return delivery

    def deliver_later(self, event: str, payload: dict[str, Any]) -> None:
        """Send an event of the forge's own making after the request that caused it, as hookshot does.

        The URL is the one configured now: a change made before a test points the hook somewhere is
        logged as undelivered, never sent to the later receiver out of order.
        """
        with self._lock:
            url = self._url
        self._queue(_Later(event, payload.get("action"), encode_payload(payload), url, str(uuid.uuid4()), False))

    def _queue(self, item: _Later) -> None:
        with self._lock:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_later, name="forge-hooks", daemon=True)
                self._sender.start()
        self._later.put(item)

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until every `deliver_later` event was sent; False if some were still pending at `timeout`."""
        deadline = time.monotonic() + timeout
        while self._later.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._later.unfinished_tasks

    def _send_later(self) -> None:
        while True:
            item = self._later.get()
            try:
                delivery = self._send(item.event, item.action, item.body, item.guid, item.url, item.redelivery)
                with self._lock:
                    self._log.append(delivery)
            finally:
                self._later.task_done()

    def redeliver(self, delivery_id: str) -> Delivery | None:
        """Send an earlier delivery again, same id and body (signature recomputed like GitHub's)."""
        with self._lock:
            earlier = next((d for d in reversed(self._log) if d.delivery_id == delivery_id), None)
        if earlier is None:
            return None
        delivery = self._send(earlier.event, earlier.action, earlier.body, delivery_id, self.url, True)
        with self._lock:
            self._log.append(delivery)
        return delivery

    def redeliver_attempt(self, attempt_id: int) -> Delivery | None:
        """Queue one attempt's event to be sent again, as `POST /app/hook/deliveries/{id}/attempts` does.

        Same guid, same body, `redelivery: true`, sent after the request like GitHub's; the attempt
        redelivered, or None when there is no such attempt.
        """
        earlier = self.attempt(attempt_id)
        if earlier is not None:
            self._queue(_Later(earlier.event, earlier.action, earlier.body, self.url, earlier.delivery_id, True))
        return earlier

    def attempt(self, attempt_id: int) -> Delivery | None:
        """One attempt by its id."""
        with self._lock:
            return next((d for d in self._log if d.id == attempt_id), None)

    def attempts(self) -> list[Delivery]:
        """The attempts GitHub's deliveries API lists: those made to a webhook URL, newest first."""
        with self._lock:
            made = [d for d in self._log if d.url is not None]
        return sorted(made, key=lambda d: d.id, reverse=True)

    def backdate(self, attempt_id: int, age: timedelta) -> None:
        """Pretend an attempt was made `age` ago (tests of the 3-day redelivery window)."""
        with self._lock:
            self._log = [replace(d, delivered_at=now() - age) if d.id == attempt_id else d for d in self._log]

    def deliveries(self) -> list[Delivery]:
        """Every attempt, oldest first (the forge's own pending events sent first)."""
        self.settle()
        with self._lock:
            return list(self._log)

    def _send(self, event: str, action: str | None, body: bytes, delivery_id: str, url: str | None,
              redelivery: bool = False) -> Delivery:
        headers = self.headers(event, delivery_id, body)
        attempt_id = next(self._ids)
        delivered_at = now()
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        text = ""
        answered: tuple[tuple[str, str], ...] = ()
        timed_out = False
        if url is None:
            error = "no webhook URL configured"
        else:
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    status, text = response.status, response.read(4096).decode(errors="replace")
                    answered = tuple(response.headers.items())
            except urllib.error.HTTPError as exc:
                status, error = exc.code, f"HTTP {exc.code}"
                text = exc.read(4096).decode(errors="replace")
                answered = tuple(exc.headers.items()) if exc.headers is not None else ()
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                timed_out = isinstance(reason, TimeoutError)
                error = f"could not deliver to {url}: {reason}"
        duration = int((time.monotonic() - started) * 1000)
        return Delivery(
            delivery_id,
            event,
            action,
            body,
            tuple(headers.items()),
            url,
            status,
            error,
            duration,
            delivered_at,
            redelivery=redelivery,
            response_body=text,
            id=attempt_id,
            response_headers=answered,
            timed_out=timed_out,
        )


class _Later(NamedTuple):
    """A delivery the sender thread makes after the request that asked for it."""

    event: str
    action: str | None
    body: bytes
    url: str | None
    guid: str
    redelivery: bool


def _action_of(body: bytes) -> str | None:
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    return decoded.get("action") if isinstance(decoded, dict) else None
