"""gunicorn's gthread worker, except that a request reaches a thread only once it has arrived whole.

gthread gives a connection a thread as soon as its first bytes arrive, and the thread then reads the
rest of the request from a blocking socket: a client that sends a request's start and then nothing
holds that thread for good. A few more such clients than the workers have threads (64 with the
Procfile's) stopped `/healthz` and `/webhooks` answering (issue 13). And gthread closes a
`Connection: close` answer on its event loop by reading the socket for up to 2 s: forty clients that
never close stalled a worker for 40 s.

`BufferedThreadWorker` reads each request in the worker's event loop instead, without blocking, until
its header section and body are complete (clarity.httpframe decides where it ends), then hands the
bytes to gunicorn's parser on a thread, which never waits on the client. A request not whole
REQUEST_DEADLINE seconds after its connection opened (kept alive: after its first byte) is answered
408; a body over MAX_BODY is answered 413 as soon as its length is known, a header section over
MAX_HEAD 431, framing that cannot be told 400, and past BUFFER_BUDGET bytes held for requests still
arriving, 503. Closing lingers in the event loop, never blocking it. Kept-alive and pipelined
requests take the same path. What stays: at most `--worker-connections` (1,000) connections per
worker, idle ones included until their deadline; a WebSocket holds its thread while it is open
(dashboard.live caps them). TLS, HTTP/2 and the PROXY protocol keep gthread's own path (the Procfile
uses none of them).

Run it with `gunicorn --worker-class clarity.webserver.BufferedThreadWorker` (the Procfile does). It
builds on gthread's internals, so gunicorn is pinned to 27.x in pyproject.toml.
"""

from __future__ import annotations

import errno
import json
import logging
import selectors
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import ThreadWorker

from clarity.httpframe import MAX_BODY, MAX_HEAD, REQUEST_DEADLINE, Framing, Verdict, frame

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024  # one recv: a 25 MB body in ~100 reads
BUFFER_BUDGET = 8 * MAX_BODY  # bytes held by one worker for requests still arriving
LINGER = 2.0  # seconds a refused connection is read (and dropped) before it closes, so the answer is not reset
_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            431: "Request Header Fields Too Large", 503: "Service Unavailable"}


@dataclass(slots=True)
class Arriving:
    """A request being read: its bytes so far, the last verdict on them, and when it runs out of time."""

    deadline: float
    data: bytearray = field(default_factory=bytearray)
    framing: Framing | None = None
    continued: bool = False  # a `100 Continue` was sent
    closing: bool = False  # answered: what comes is read and dropped until the client closes or LINGER ends
    watched: bool = False  # registered with the event loop


class BufferedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """A gthread worker whose threads only ever get whole requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arriving: dict[Any, Arriving] = {}
        self.deadlines: deque[tuple[float, Any, Arriving]] = deque()  # in deadline order (all alike)
        self.lingering: deque[tuple[float, Any, Arriving]] = deque()
        self.buffered = 0

    def buffers(self, conn: Any) -> bool:
        """Whether this connection's requests are read here (plain HTTP/1), or by gthread's own path."""
        return (not self.cfg.is_ssl and self.cfg.proxy_protocol in ("off", False, None)
                and getattr(self.cfg, "protocol", "http") == "http"
                and not negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def enqueue_req(self, conn: Any) -> None:
        """A connection with a request to come: read it here, and give it a thread once it is whole."""
        if not self.buffers(conn):
            super().enqueue_req(conn)
            return
        arriving = Arriving(time.monotonic() + REQUEST_DEADLINE)
        if conn.parser is not None:  # a kept-alive connection: the next request may be buffered already
            arriving.data += conn.parser.unreader.take_buffered()
        self.arriving[conn] = arriving
        self.buffered += len(arriving.data)
        self.deadlines.append((arriving.deadline, conn, arriving))
        conn.sock.setblocking(False)
        if arriving.data and self.judge(conn, arriving):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))
        arriving.watched = True

    def on_request_bytes(self, conn: Any, _sock: Any) -> None:
        """Bytes (or the end) on a connection whose request is arriving, or that is being closed."""
        arriving = self.arriving.get(conn)
        if arriving is None:
            return
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away (or finished reading our refusal)
            self.close(conn)
            return
        if arriving.closing:
            return  # a refused request's rest: dropped
        if self.buffered + len(data) > BUFFER_BUDGET:
            log.warning("web worker %s: %d bytes of requests held; refusing one more", self.pid, self.buffered)
            self.refuse(conn, 503, "the server is busy; retry later")
            return
        arriving.data += data
        self.buffered += len(data)
        self.judge(conn, arriving)

    def judge(self, conn: Any, arriving: Arriving) -> bool:
        """Act on the verdict on the bytes so far; True when the request has left the reading stage."""
        arriving.framing = framing = frame(arriving.data, arriving.framing)
        if framing.verdict is Verdict.MORE:
            if framing.expects_continue and framing.head_end and not arriving.continued:
                arriving.continued = True
                _send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
            return False
        if framing.verdict is Verdict.WHOLE:
            self.hand_over(conn, arriving)
        elif framing.verdict is Verdict.TOO_LARGE:
            self.refuse(conn, 413, f"payload larger than {MAX_BODY // (1024 * 1024)} MB")
        elif framing.verdict is Verdict.HEAD_TOO_LARGE:
            self.refuse(conn, 431, f"request headers larger than {MAX_HEAD // 1024} KB")
        else:
            self.refuse(conn, 400, f"cannot tell where the request ends: {framing.why}")
        return True

    def hand_over(self, conn: Any, arriving: Arriving) -> None:
        """Give a whole request (and any pipelined bytes after it) to gunicorn's parser on a thread."""
        self.forget(conn, arriving)
        if arriving.watched:
            self.poller.unregister(conn.sock)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(arriving.data))
        conn.data_ready = True  # the thread must not wait for data: it is all here
        super().enqueue_req(conn)

    def refuse(self, conn: Any, status: int, message: str) -> None:
        """Answer a request that will not be served, then close the connection without blocking."""
        body = json.dumps({"message": message}).encode() + b"\n"
        _send(conn, (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
        self.linger(conn, self.arriving[conn])

    def linger(self, conn: Any, arriving: Arriving) -> None:
        """Half-close, then read and drop what the client still sends until it closes or LINGER passes.

        Closing with unread bytes would reset the connection and could destroy the answer on its way;
        gthread lingers on a blocking socket in its event loop, stalling every connection of the
        worker for up to 2 s per client that does not close.
        """
        self.buffered -= len(arriving.data)
        arriving.data, arriving.closing = bytearray(), True
        self.arriving[conn] = arriving
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            if not arriving.watched:
                conn.sock.setblocking(False)
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_request_bytes, conn))
                arriving.watched = True
        except (OSError, ValueError):  # the socket is gone already
            self.close(conn)
            return
        self.lingering.append((time.monotonic() + LINGER, conn, arriving))

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gthread's, except that a connection to close lingers in the event loop instead of blocking it."""
        keep = not fs.cancelled() and fs.exception() is None and fs.result()
        if keep or not self.buffers(conn):
            super().finish_request(conn, fs)
            return
        self.linger(conn, Arriving(time.monotonic()))

    def forget(self, conn: Any, arriving: Arriving) -> None:
        """Stop tracking a connection's arriving request (its deque entries are skipped when they expire)."""
        if self.arriving.get(conn) is arriving:
            del self.arriving[conn]
            self.buffered -= len(arriving.data)

    def close(self, conn: Any) -> None:
        """Close a connection that never got (or no longer needs) a thread."""
        arriving = self.arriving.get(conn)
        if arriving is not None:
            self.forget(conn, arriving)
            if arriving.watched:
                try:
                    self.poller.unregister(conn.sock)
                except (KeyError, ValueError, OSError):
                    pass
        self.nr_conns -= 1
        util.close(conn.sock)

    def murder_pending(self) -> None:
        """gthread's timeouts, then: requests past their deadline get a 408; refused ones finish lingering."""
        super().murder_pending()
        now = time.monotonic()
        while self.deadlines and self.deadlines[0][0] <= now:
            _, conn, arriving = self.deadlines.popleft()
            if self.arriving.get(conn) is arriving and not arriving.closing:
                self.refuse(conn, 408, f"the request did not arrive whole within {REQUEST_DEADLINE:g} s")
        while self.lingering and self.lingering[0][0] <= now:
            _, conn, arriving = self.lingering.popleft()
            if self.arriving.get(conn) is arriving:
                self.close(conn)


def _send(conn: Any, data: bytes) -> None:
    """Send a short answer without blocking; what does not fit is dropped (the client stopped reading)."""
    try:
        conn.sock.send(data)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            raise
