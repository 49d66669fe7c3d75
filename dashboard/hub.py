"""The live hub: ONE Redis subscription per web process, fanned out to every socket of the process.

A thread started on first use listens on `{namespace}:events` and offers each event to every
subscriber whose viewer sees the event's installation, through a bounded queue per subscriber. The
hub never waits for a socket: a subscriber whose queue is full is marked lagging and gets nothing
more; its socket tells the browser to resync and closes, and the browser reconnects with its cursors
and catches up from the execution streams, so a slow socket loses nothing and slows nobody down.
When Redis drops the subscription the hub resubscribes with backoff and marks every subscriber
lagging, for the same reason.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

log = logging.getLogger(__name__)

QUEUE_SIZE = 512  # events a socket may fall behind before it is told to resync
BACKOFF = (0.1, 0.5, 1.0, 2.0, 5.0)  # seconds between resubscribe attempts


class Sees(Protocol):
    """What the hub needs of a viewer (dashboard.auth.Viewer has it)."""

    def sees(self, installation_id: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One live event as the hub passes it on: the raw JSON (sent as is) and what routing needs."""

    raw: str
    execution: str
    installation: int
    entry_id: str  # the event's id in `exec:<id>:log`, "" for events that are not streamed


@dataclass(eq=False)
class Subscriber:
    """One socket's inbox; `lagging` once it fell QUEUE_SIZE events behind (it must resync)."""

    viewer: Sees
    inbox: queue.Queue[Event] = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    lagging: threading.Event = field(default_factory=threading.Event)

    def offer(self, event: Event) -> None:
        """Queue an event without ever blocking the hub."""
        if self.lagging.is_set():
            return
        try:
            self.inbox.put_nowait(event)
        except queue.Full:
            self.lagging.set()


def parse(raw: str) -> Event | None:
    """An Event from a published payload, or None when it is not one of ours."""
    try:
        data = json.loads(raw)
        return Event(raw, str(data["execution"]), int(data["installation"]), str(data.get("id", "")))
    except (ValueError, KeyError, TypeError):
        return None


class Hub:
    """The process's one subscription and its subscribers."""

    def __init__(self, client: redis.Redis, channel: str, shape: Callable[[str], str] | None = None) -> None:
        self.client = client
        self.channel = channel
        # What each event becomes before it is offered (dashboard.updates adds the PRD's fields), once per process.
        self.shape: Callable[[str], str] = shape or _as_is
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.subscribed = threading.Event()  # set while the Redis subscription is up
        self.delivered = 0  # events received from Redis (for tests and the bench)

    def subscribe(self, viewer: Sees, queue_size: int = QUEUE_SIZE) -> Subscriber:
        """A new inbox for a socket; starts the hub thread on first use."""
        subscriber = Subscriber(viewer, queue.Queue(queue_size))
        with self._lock:
            self._subscribers.add(subscriber)
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="clarity-live-hub", daemon=True)
                self._thread.start()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forget a socket's inbox (the socket closed)."""
        with self._lock:
            self._subscribers.discard(subscriber)

    def count(self) -> int:
        """Subscribers now."""
        with self._lock:
            return len(self._subscribers)

    def stop(self, timeout: float = 3.0) -> None:
        """End the hub thread and send every socket away (tests, and a web process shutting down).

        Each open socket is told to resync, so its handler closes it within a second and the browser
        reconnects, with its cursors, to a process that still runs; the handlers' threads end with them.
        """
        self._stopping.set()
        self.resync_all()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        while self.count() and time.monotonic() < deadline:
            time.sleep(0.05)

    def publish(self, event: Event) -> None:
        """Offer one event to every subscriber allowed to see it."""
        with self._lock:
            subscribers = tuple(self._subscribers)
        for subscriber in subscribers:
            if subscriber.viewer.sees(event.installation):
                subscriber.offer(event)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.subscribed.set()
                if failures:
                    self.resync_all()  # events published while we were away are only in the streams
                failures = 0
                self._listen(pubsub)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.subscribed.clear()
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                log.warning("live hub lost its Redis subscription (%s); resubscribing in %.1f s", exc, delay)
                self._stopping.wait(delay)
            finally:
                self.subscribed.clear()
                pubsub.close()

    def _listen(self, pubsub: Any) -> None:
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            data = message["data"]
            event = parse(self.shape(data.decode() if isinstance(data, bytes) else data))
            if event is not None:
                self.delivered += 1
                self.publish(event)

    def resync_all(self) -> None:
        """Tell every subscriber to resync (the subscription was down: events may have been missed)."""
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.lagging.set()


def _as_is(raw: str) -> str:
    return raw


def wait_subscribed(hub: Hub, timeout: float = 5.0) -> bool:
    """Whether the hub's subscription came up within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.subscribed.wait(0.05):
            return True
    return False
