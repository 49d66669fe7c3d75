"""`POST /webhooks` under faults and load (issue 6): duplicates under concurrency, fuzzed requests,
oversized bodies and slow clients. Loopback only; the whole file takes well under a minute.

The in-process tests use the Flask test client on `app.create_app(settings)`; the server tests run
gunicorn in a subprocess from the Procfile's `web` command, as production does (see `web`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from gunicorn.config import KNOWN_SETTINGS
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.job import Job

from app import create_app
from clarity.settings import Settings
from github_app.webhooks import HANDLED_EVENTS
from tests.conftest import WEBHOOK_FIXTURES, WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[1]
COMMENT = (WEBHOOK_FIXTURES / "issue_comment.created.payload.json").read_bytes()
PAYLOADS = [path.read_bytes() for path in sorted(WEBHOOK_FIXTURES.glob("*.payload.json"))]
PARSED = [json.loads(body) for body in PAYLOADS]
DUPLICATE = {"message": "duplicate delivery"}  # the answer (200) to a delivery id seen before


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """`X-Hub-Signature-256` of `body`, as GitHub computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(body: bytes, delivery: str, event: str = "issue_comment") -> dict[str, str]:
    """The headers of a signed delivery."""
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json"}


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    return create_app(settings)


@pytest.fixture
def intake(settings: Settings, redis_client: redis.Redis) -> Iterator[Queue]:
    queue = Queue(settings.intake_queue, connection=redis.Redis.from_url(settings.redis_url))
    yield queue
    queue.delete(delete_jobs=True)  # job hashes (rq:job:<id>) carry no namespace: delete them here


def queued_jobs(queue: Queue) -> list[Job]:
    """Every job waiting on `queue`."""
    jobs = Job.fetch_many(queue.get_job_ids(), connection=queue.connection)
    assert all(job is not None for job in jobs)
    return [job for job in jobs if job is not None]


# --- duplicates under concurrency -------------------------------------------------------------


@pytest.mark.slow
def test_1000_deliveries_with_30_percent_duplicates_queue_each_delivery_exactly_once(
    app: Flask, intake: Queue
) -> None:
    rng = random.Random(6)
    run = uuid.uuid4().hex[:8]
    ids = [f"{run}-{n}" for n in range(700)]
    template = json.loads(COMMENT)
    bodies = {}
    for n, delivery in enumerate(ids):  # a body of its own per delivery, to see that none gets mixed up
        template["comment"]["id"] = n
        bodies[delivery] = json.dumps(template).encode()
    # 600 ids once each plus 150 re-sends of them, shuffled through 16 threads (copies of one id may
    # be in flight together); then 100 ids sent as bursts of 2 or 3 copies released at one instant.
    pooled = ids[:600] + [rng.choice(ids[:600]) for _ in range(150)]
    rng.shuffle(pooled)
    bursts = [(delivery, 3) for delivery in ids[600:650]] + [(delivery, 2) for delivery in ids[650:]]
    assert len(pooled) + sum(copies for _, copies in bursts) == 1000

    answers: list[tuple[str, int, dict[str, Any]]] = []
    local = threading.local()

    def send(delivery: str, barrier: threading.Barrier | None = None) -> None:
        client: FlaskClient = getattr(local, "client", None) or app.test_client()
        local.client = client
        body = bodies[delivery]
        if barrier is not None:
            barrier.wait(timeout=10)
        response = client.post("/webhooks", data=body, headers=delivery_headers(body, delivery))
        answers.append((delivery, response.status_code, response.get_json()))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, pooled))
    for wave in range(0, len(bursts), 10):
        threads = []
        for delivery, copies in bursts[wave : wave + 10]:
            barrier = threading.Barrier(copies)
            threads += [threading.Thread(target=send, args=(delivery, barrier)) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    assert len(answers) == 1000
    assert Counter(status for _, status, _ in answers) == {202: 700, 200: 300}
    accepted = Counter(delivery for delivery, status, _ in answers if status == 202)
    assert accepted == Counter(ids)  # every id accepted once, none twice
    for delivery, status, answer in answers:
        if status == 200:
            assert answer == DUPLICATE | {"delivery": delivery}
        else:
            assert answer == {"message": "queued", "delivery": delivery}
    jobs = queued_jobs(intake)
    assert intake.count == len(jobs) == 700
    assert Counter(job.args[1] for job in jobs) == Counter(ids)
    for job in jobs:
        event, delivery, body = job.args
        assert (job.func_name, event) == ("jobs.intake.handle_delivery", "issue_comment")
        assert json.loads(body) == json.loads(bodies[delivery])


# --- fuzzed requests --------------------------------------------------------------------------

# Header values as a WSGI server passes them: latin-1 text, no control characters but tab.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
                      | st.just("\t"), max_size=60)
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
EVENTS = st.none() | st.sampled_from(sorted(HANDLED_EVENTS) + ["ping", "issues", "star", ""]) | HEADER_TEXT
DELIVERIES = st.none() | st.uuids().map(str) | HEADER_TEXT
CONTENT_TYPES = st.none() | HEADER_TEXT | st.sampled_from([
    "application/json", "application/json; charset=utf-8", "application/x-www-form-urlencoded",
    "text/plain", "multipart/form-data; boundary=xyz", "application/octet-stream",
    "application/json; charset=utf-16",
])


@st.composite
def real_payloads_broken(draw: st.DrawFn) -> bytes:
    """A shared GitHub payload, cut short, with a byte changed, or with a key dropped or retyped."""
    which = draw(st.integers(0, len(PAYLOADS) - 1))
    body = PAYLOADS[which]
    how = draw(st.sampled_from(["cut", "byte", "drop", "retype"]))
    if how == "cut":
        return body[: draw(st.integers(0, len(body)))]
    if how == "byte":
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    payload = dict(PARSED[which])  # the top level is all that changes
    key = draw(st.sampled_from(sorted(payload)))
    if how == "drop":
        del payload[key]
    else:
        payload[key] = draw(JSON_VALUES)
    return json.dumps(payload).encode()


BODIES = st.one_of(
    st.binary(max_size=600),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    real_payloads_broken(),
)


BAD_SIGNATURES = ["missing", "text", "hex", "empty", "other secret", "other body", "sha1", "upper case",
                  "leading blank", "short"]


@st.composite
def bad_signature(draw: st.DrawFn, body: bytes) -> str | None:
    """Anything but `sha256=<hmac of this body with the app's secret>` (a trailing blank is allowed)."""
    good = sign(body)
    kind = draw(st.sampled_from(BAD_SIGNATURES))
    signature: str | None
    if kind == "text":
        signature = draw(HEADER_TEXT)
    elif kind == "hex":
        signature = "sha256=" + draw(HEX)
    else:
        signature = {
            "missing": None,
            "empty": "sha256=",
            "other secret": sign(body, "another-secret"),
            "other body": sign(body + b" "),
            "sha1": "sha1=" + good.removeprefix("sha256="),
            "upper case": good.upper(),
            "leading blank": " " + good,
            "short": good[:-1],
        }[kind]
    assume(signature is None or signature.strip() != good)
    return signature


@st.composite
def requests(draw: st.DrawFn, signed: bool) -> tuple[bytes, dict[str, str]]:
    """A body and headers for `POST /webhooks` (a header drawn as None is left out)."""
    body = draw(BODIES)
    signature = sign(body) if signed else draw(bad_signature(body))
    fields = {"X-GitHub-Event": draw(EVENTS), "X-GitHub-Delivery": draw(DELIVERIES),
              "Content-Type": draw(CONTENT_TYPES), "X-Hub-Signature-256": signature}
    return body, {name: value for name, value in fields.items() if value is not None}


# The app and queue fixtures live for the whole test, across its examples: that is the point (one
# server taking every request); the queue is checked after each example.
FUZZ = settings(max_examples=5_000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


@FUZZ
@given(request=requests(signed=False))
@pytest.mark.slow
def test_5000_fuzzed_requests_with_bad_signatures_are_refused_with_4xx_and_queue_nothing(
    app: Flask, intake: Queue, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    response = app.test_client().post("/webhooks", data=body, headers=headers)
    event(f"answered {response.status_code}")
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:200])
    assert intake.count == 0


@FUZZ
@given(request=requests(signed=True))
@pytest.mark.slow
def test_5000_fuzzed_signed_requests_are_answered_without_a_5xx(
    app: Flask, intake: Queue, request: tuple[bytes, dict[str, str]]
) -> None:
    body, headers = request
    before = intake.count
    response = app.test_client().post("/webhooks", data=body, headers=headers)
    status = response.status_code
    event(f"answered {status}")  # --hypothesis-show-statistics: how far into the view requests got
    # Accepted (the intake job reads and judges it), pong, ignored, duplicate, or refused: never 5xx.
    assert status in (200, 202, 204) or 400 <= status < 500, (status, response.get_data()[:200])
    assert intake.count == before + (1 if status == 202 else 0)
    if status == 202:
        assert headers.get("X-GitHub-Event") in HANDLED_EVENTS


# --- a real server: gunicorn as the Procfile runs it -------------------------------------------

# 20 slow clients hold 20 of gthread's threads (a thread reads a request's headers and body with a
# blocking socket), so `--threads 8` per worker is not enough: docs/PERFORMANCE.md ("Webhooks under
# faults") has the numbers. The Procfile must give at least this many threads per worker.
MIN_THREADS = 32
SLOW_CLIENTS = 20
HOST = "127.0.0.1"


@dataclass
class Web:
    """gunicorn serving `app:create_app()` on a loopback port, with its own namespace and queue."""

    port: int
    argv: list[str]
    intake: Queue


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def procfile_web_argv(port: int, control: Path) -> list[str]:
    """The Procfile's `web` command on `port`, as it is (it must have MIN_THREADS threads per worker)."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    argv = shlex.split(line.removeprefix("web:").replace("${PORT:-8000}", str(port)))
    assert argv[0] == "gunicorn" and "--threads" in argv, line
    assert int(argv[argv.index("--threads") + 1]) >= MIN_THREADS, f"the Procfile starves on slow clients: {line}"
    # gunicorn's control socket defaults to one path in $HOME, shared by every gunicorn on the host.
    if any(setting.name == "control_socket" for setting in KNOWN_SETTINGS):
        argv[1:1] = ["--control-socket", str(control)]
    return [sys.executable, "-m", *argv]


@contextlib.contextmanager
def procfile_web(redis_url: str, private_key_pem: str, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> Iterator[tuple[int, list[str], Queue, Path]]:
    """The Procfile's web process on a free loopback port with a namespace of its own: (port, argv,
    intake queue, log); stopped, and its Redis keys deleted, at the end."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("GITHUB_", "CLARITY_", "PROMETHEUS_"))}
    env |= {"GITHUB_APP_ID": "4242", "GITHUB_PRIVATE_KEY": private_key_pem,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_API_URL": "http://127.0.0.1:9/api/v3",
            "REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace, "CLARITY_DATA_DIR": str(workdir / "data"),
            "CLARITY_LOG_LEVEL": "WARNING", **(extra_env or {})}
    argv = procfile_web_argv(port, workdir / "gunicorn.ctl")
    log = workdir / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(f"{namespace}:intake", connection=connection)
    try:
        wait_until_serving(port, process, log)
        yield port, argv, queue, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        queue.delete(delete_jobs=True)
        keys = [*connection.scan_iter(f"{namespace}:*", count=1000),
                *connection.scan_iter(f"rq:*{namespace}:*", count=1000)]
        if keys:
            connection.delete(*keys)


@pytest.fixture(scope="module")
def web(redis_url: str, private_key_pem: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """gunicorn for this module's server tests, stopped (and its Redis keys deleted) at the end."""
    with procfile_web(redis_url, private_key_pem, tmp_path_factory.mktemp("web")) as (port, argv, queue, _):
        yield Web(port, argv, queue)


def wait_until_serving(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Until gunicorn answers /healthz; its log in the error when it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as probe:
                probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                if probe.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def request_head(body_headers: str, delivery: str) -> bytes:
    """A signed delivery's request line and headers (for the body COMMENT), before `body_headers`."""
    return (f"POST /webhooks HTTP/1.1\r\nHost: {HOST}\r\nX-GitHub-Event: issue_comment\r\n"
            f"X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {sign(COMMENT)}\r\n"
            f"Content-Type: application/json\r\n{body_headers}\r\n").encode()


def read_response(sock: socket.socket, timeout: float) -> tuple[int, bytes]:
    """Status and body of the response on `sock` (without waiting for the server to close)."""
    sock.settimeout(timeout)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


@pytest.mark.slow
def test_a_declared_30_mb_body_is_refused_after_the_headers_alone(web: Web) -> None:
    with socket.create_connection((HOST, web.port), timeout=5) as sock:
        sock.sendall(request_head(f"Content-Length: {30 * 1024 * 1024}\r\n", f"big-{uuid.uuid4()}"))
        started = time.monotonic()
        ready, _, _ = select.select([sock], [], [], 5)  # not a byte of the body has been sent
        assert ready, "no answer to the headers of a 30 MB delivery within 5 s"
        status, data = read_response(sock, timeout=5)
        answered_in = time.monotonic() - started
    assert status == 413, data[:300]
    assert json.loads(data) == {"message": "payload larger than 25 MB"}
    assert answered_in < 2
    assert web.intake.count == 0


@pytest.mark.slow
def test_a_chunked_body_is_cut_at_25_mb_and_refused(web: Web) -> None:
    # No Content-Length to refuse early: the app reads at most MAX_CONTENT_LENGTH (25 MB) of the
    # stream, then answers. What it read is not the body that was signed, so the answer is a 4xx.
    chunk = b"x" * (256 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    answered_after = None
    with socket.create_connection((HOST, web.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)  # little slack on our side
        sock.sendall(request_head("Transfer-Encoding: chunked\r\n", f"chunked-{uuid.uuid4()}"))
        while sent < 80 * 1024 * 1024:  # offer up to 80 MB; the server must stop reading near 25
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                answered_after = sent
                break
            assert writable, f"the server neither read nor answered for 10 s after {sent} bytes"
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                answered_after = sent
                break
            sent += len(chunk)
        assert answered_after is not None, "the server read 80 MB of a chunked body"
        status, data = read_response(sock, timeout=5)
    assert status in (401, 413), data[:300]
    # Sent when the answer came: the 25 MB the app read, plus what the two sockets buffer.
    assert 25 * 1024 * 1024 <= answered_after < 40 * 1024 * 1024, answered_after
    assert web.intake.count == 0


def slow_client(port: int, kind: str, stop: threading.Event, opened: threading.Barrier) -> None:
    """Keep a request unfinished: send a header (or a body byte) every 0.2 s until `stop`."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        if kind == "headers":
            sock.sendall(b"POST /webhooks HTTP/1.1\r\nHost: slow\r\n")
            trickle = iter(lambda: b"X-Slow: 1\r\n", None)
        else:
            sock.sendall(request_head(f"Content-Length: {len(COMMENT)}\r\n", f"slow-{uuid.uuid4()}"))
            trickle = (COMMENT[i : i + 1] for i in range(len(COMMENT)))
        opened.wait(timeout=10)
        while not stop.wait(0.2):
            sock.sendall(next(trickle))


@pytest.mark.slow
def test_deliveries_are_answered_within_2_s_while_20_slow_clients_hold_connections(web: Web) -> None:
    stop = threading.Event()
    opened = threading.Barrier(SLOW_CLIENTS + 1)
    slow = [threading.Thread(target=slow_client, args=(web.port, ("headers", "body")[n % 2], stop, opened))
            for n in range(SLOW_CLIENTS)]
    for thread in slow:
        thread.start()
    try:
        opened.wait(timeout=10)
        time.sleep(1.0)  # every slow request has sent its first bytes and holds a thread by now

        def deliver(n: int) -> tuple[int, float]:
            started = time.monotonic()
            try:
                with socket.create_connection((HOST, web.port), timeout=5) as sock:
                    sock.sendall(request_head(f"Content-Length: {len(COMMENT)}\r\nConnection: close\r\n",
                                              f"fast-{n}-{uuid.uuid4()}") + COMMENT)
                    status, _ = read_response(sock, timeout=5)
            except OSError:  # starved: no answer within 5 s
                status = 0
            return status, round(time.monotonic() - started, 3)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(deliver, range(20)))
    finally:
        stop.set()
        for thread in slow:
            thread.join(timeout=10)
    assert [status for status, _ in answers] == [202] * 20, answers
    assert max(seconds for _, seconds in answers) < 2.0, answers
    assert web.intake.count == 20
