"""Attacks on deliveries and intake (issue 13), each through the real product.

- A signed comment replayed under a new `X-GitHub-Delivery` (the header is not signed): the forge's
  webhook to the web app and a real `clarity worker`; the command must run once.
- Slow and partial bodies: the Procfile's gunicorn in a subprocess, held by more stalled connections
  than it has threads; `/healthz` and real deliveries must still be answered.
- Fuzzed payloads: 2,000 well-signed but mis-shaped payloads through the intake job against the real
  Redis store and the forge; nothing may escape the job.
- Commands hidden in markup (indented code, `<pre>`, `<details>`, HTML comments): posted as a comment,
  nothing may run. The parser's own table for each case is in tests/test_commands.py.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import Queue
from rq.job import Job

import devstack
from clarity.httpframe import REQUEST_DEADLINE
from github_app.webhooks import HANDLED_EVENTS
from jobs import context, intake
from jobs.routes import router
from tests.conftest import WEBHOOK_FIXTURES
from tests.conftest_forge import ForgeHandle
from tests.e2e import REPO, make_repo, store_of, tasks_md, wait_settled
from tests.test_webhook_faults import (
    COMMENT,
    HOST,
    procfile_web,
    read_response,
    request_head,
)

# --- 1. a signed comment replayed under a new delivery id -----------------------------------------


def intake_outcome(stack: devstack.Stack, delivery_id: str, timeout: float = 30) -> str:
    """What the intake job of a delivery returned (RQ keeps it), once a worker has run it."""
    connection = redis.Redis.from_url(stack.redis.url)
    queue = Queue(stack.settings.intake_queue, connection=connection)

    def outcome() -> str | None:
        for registry, failed in ((queue.finished_job_registry, False), (queue.failed_job_registry, True)):
            for job in Job.fetch_many(registry.get_job_ids(), connection=connection):
                if job is not None and job.description == f"issue_comment {delivery_id}":
                    return f"job failed: {job.latest_result().exc_string}" if failed else str(job.return_value())
        return None

    return str(devstack.wait_for(outcome, timeout, what=f"the intake job of delivery {delivery_id}"))


def replay(stack: devstack.Stack, delivery_id: str) -> tuple[str, httpx.Response]:
    """Send a recorded delivery's exact body and signature again under a fresh delivery id, as anyone can."""
    sent = next(d for d in stack.admin("GET", "/deliveries") if d["delivery_id"] == delivery_id)
    body = json.dumps(sent["payload"], separators=(",", ":"), ensure_ascii=False).encode()  # the forge's bytes
    headers = {name: value for name, value in sent["headers"].items() if name.lower() != "content-length"}
    fresh = f"replay-{uuid.uuid4()}"
    headers["X-GitHub-Delivery"] = fresh
    return fresh, httpx.post(f"{stack.web_url}/webhooks", content=body, headers=headers, timeout=10)


def test_a_comment_replayed_under_a_new_delivery_id_runs_once(stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "One", False), ("2", "Two", False)))
    first = stack.comment(REPO, 1, "/clarity run until 1", user="ada")
    assert first["status_code"] == 202
    assert wait_settled(stack).status.value == "paused"
    assert intake_outcome(stack, first["delivery_id"]).startswith("started ")

    fresh, answer = replay(stack, first["delivery_id"])
    assert answer.status_code == 202, answer.text  # the signature is GitHub's: the web app cannot tell
    assert intake_outcome(stack, fresh).startswith("ignored: comment ")
    state = stack.admin("GET", "/state")
    assert [r["content"] for r in state["reactions"]] == ["eyes"]
    assert len(store_of(stack).executions(repo=REPO)) == 1


# --- 2. slow and partial bodies against the Procfile's gunicorn ----------------------------------


@dataclasses.dataclass
class Web:
    """gunicorn started from the Procfile's `web` line, and how many threads it serves with."""

    port: int
    threads: int
    intake: Queue
    log: Path


@pytest.fixture(scope="module")
def web(redis_url: str, private_key_pem: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The Procfile's web process on a loopback port, with its own namespace; stopped and cleaned at the end."""
    workdir = tmp_path_factory.mktemp("slow-web")
    with procfile_web(redis_url, private_key_pem, workdir, {"CLARITY_DASHBOARD_AUTH": "open"}) as (
            port, argv, queue, log):
        threads = int(argv[argv.index("--threads") + 1]) * int(argv[argv.index("--workers") + 1])
        yield Web(port, threads, queue, log)


def healthz_seconds(port: int, timeout: float = 3.0) -> float:
    """How long `GET /healthz` takes to answer 200 (`timeout` when it does not)."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            status, _ = read_response(sock, timeout)
    except OSError:
        return timeout
    return time.monotonic() - started if status == 200 else timeout


def delivery_status(port: int) -> int:
    """Send one signed `issue_comment` delivery; its HTTP status (0 when none came within 5 s)."""
    head = request_head(f"Content-Length: {len(COMMENT)}\r\nConnection: close\r\n", f"real-{uuid.uuid4()}")
    try:
        with socket.create_connection((HOST, port), timeout=5) as sock:
            sock.sendall(head + COMMENT)
            status, _ = read_response(sock, timeout=5)
    except OSError:
        return 0
    return status


def stalled(port: int, count: int, first: bytes) -> list[socket.socket]:
    """`count` connections that sent `first` (a request's start) and then nothing more."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(first)
        sockets.append(sock)
    return sockets


STALLED_BODY = request_head("Content-Length: 100000\r\n", "stalled") + b"{"
STALLED_HEADERS = b"POST /webhooks HTTP/1.1\r\nHost: test\r\nX-GitHub-Event: issue_comment\r\n"


@pytest.mark.parametrize("first", [STALLED_BODY, STALLED_HEADERS], ids=["body", "headers"])
def test_more_stalled_requests_than_threads_leave_healthz_and_deliveries_answered(web: Web, first: bytes) -> None:
    before = web.intake.count
    held = stalled(web.port, 3 * web.threads, first)  # every thread of every worker, three times over
    try:
        time.sleep(0.5)  # each has reached the server and sent its bytes
        waits = []
        for _ in range(10):
            waits.append(round(healthz_seconds(web.port), 3))
            time.sleep(0.05)
        statuses = [delivery_status(web.port) for _ in range(3)]
    finally:
        for sock in held:
            sock.close()
    assert max(waits) < 1.0, waits
    assert statuses == [202] * 3
    assert web.intake.count == before + 3


@pytest.mark.parametrize(("first", "trickle"), [(STALLED_BODY, b" "), (STALLED_HEADERS, b"X-Slow: 1\r\n")],
                         ids=["body", "headers"])
@pytest.mark.slow
def test_a_stalled_or_trickling_request_is_cut_off_within_seconds(web: Web, first: bytes, trickle: bytes) -> None:
    with socket.create_connection((HOST, web.port), timeout=5) as sock:
        sock.sendall(first)
        started = time.monotonic()
        answer = b""
        # A byte every half second keeps any per-read timeout happy: only a deadline on the whole
        # request ends it.
        while time.monotonic() - started < REQUEST_DEADLINE + 5:
            try:
                sock.sendall(trickle)
            except OSError:  # closed by the server
                break
            sock.settimeout(0.5)
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            answer += data
            if not data or b"\r\n\r\n" in answer:
                break
        cut_after = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert cut_after < REQUEST_DEADLINE + 2, cut_after


def test_clients_that_never_close_after_their_answer_stall_nothing(web: Web) -> None:
    # gthread closes a `Connection: close` answer gracefully on its event loop, reading the socket for
    # up to 2 s: forty such clients stalled a worker for 40 s.
    request = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    held = stalled(web.port, 40, request)  # never read, never closed
    try:
        time.sleep(0.5)
        waits = []
        for _ in range(10):
            waits.append(round(healthz_seconds(web.port), 3))
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
    assert max(waits) < 1.0, waits


@pytest.mark.parametrize("path", ["/webhooks", "/healthz"])
def test_a_body_over_25_mb_is_refused_with_413_before_it_is_sent(web: Web, path: str) -> None:
    with socket.create_connection((HOST, web.port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {25 * 1024 * 1024 + 1}\r\n"
                     "Content-Type: application/json\r\n\r\n".encode())
        started = time.monotonic()
        status, data = read_response(sock, timeout=5)
    assert status == 413, data[:200]
    assert json.loads(data) == {"message": "payload larger than 25 MB"}
    assert time.monotonic() - started < 2


def test_a_whole_delivery_sent_in_pieces_is_still_accepted(web: Web) -> None:
    before = web.intake.count
    head = request_head(f"Content-Length: {len(COMMENT)}\r\nConnection: close\r\n", f"pieces-{uuid.uuid4()}")
    data = head + COMMENT
    with socket.create_connection((HOST, web.port), timeout=5) as sock:
        for start in range(0, len(data), len(data) // 6 + 1):  # six pieces over ~0.6 s: slow, not stalled
            sock.sendall(data[start : start + len(data) // 6 + 1])
            time.sleep(0.1)
        status, body = read_response(sock, timeout=5)
    assert status == 202, body
    assert web.intake.count == before + 1


def statuses_on(stream: Any, count: int) -> list[int]:
    """The statuses of the next `count` responses on one connection's reader (each has a Content-Length)."""
    statuses = []
    for _ in range(count):
        status = int(stream.readline().split()[1])
        length = 0
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            length = int(value) if name.strip().lower() == b"content-length" else length
        stream.read(length)
        statuses.append(status)
    return statuses


def test_keep_alive_and_pipelined_requests_are_each_answered(web: Web) -> None:
    one = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
    delivery = request_head(f"Content-Length: {len(COMMENT)}\r\n", f"pipelined-{uuid.uuid4()}") + COMMENT
    with socket.create_connection((HOST, web.port), timeout=5) as sock, sock.makefile("rb") as stream:
        sock.sendall(one + delivery + one)  # three requests in one write
        statuses = statuses_on(stream, 3)
        sock.sendall(one[:20])  # and one more on the same connection afterwards, in two parts
        time.sleep(0.2)
        sock.sendall(one[20:])
        statuses += statuses_on(stream, 1)
    assert statuses == [200, 202, 200, 200]


def test_a_chunked_delivery_is_read_whole(web: Web) -> None:
    before = web.intake.count
    head = request_head("Transfer-Encoding: chunked\r\nConnection: close\r\n", f"chunked-ok-{uuid.uuid4()}")
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n"
                      for part in (COMMENT[:100], COMMENT[100:1000], COMMENT[1000:]) if part)
    with socket.create_connection((HOST, web.port), timeout=5) as sock:
        sock.sendall(head + chunks)
        time.sleep(0.2)
        sock.sendall(b"0\r\n\r\n")
        status, body = read_response(sock, timeout=5)
    assert status == 202, body
    assert web.intake.count == before + 1


# --- 3. fuzzed, well-signed payloads through the intake job --------------------------------------

FUZZ_RUNS = 2000
ODD_VALUES: list[Any] = [
    None, 0, -1, 2**64, 1.5, True, False, "", "widgets", "acme/widgets/extra", "../../etc/passwd", "acme/",
    "x" * 70_000, [], [1, "two", None], {}, {"id": "7"}, {"login": ["ada"]}, {"full_name": 42},
    [{"full_name": "acme"}], "/clarity run", "/clarity status\n/clarity help", "refs/heads/clarity/issue-1",
]
COMMAND_BODIES = ["/clarity run until 1", "/clarity status", "/clarity stop", "/clarity retry 1", "/clarity help",
                  "/clarity pause\n/clarity resume", "/clarity fly"]


def fixture_payloads() -> list[tuple[str, dict[str, Any]]]:
    """(event, payload) of every shared fixture of an event Clarity subscribes to."""
    found = []
    for path in sorted(WEBHOOK_FIXTURES.glob("*.payload.json")):
        event = path.name.split(".")[0]
        if event in HANDLED_EVENTS:
            found.append((event, json.loads(path.read_text())))
    return found


def routed(fixtures: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The fixtures some intake handler acts on (the others are ignored before any field is read)."""
    return [(event, payload) for event, payload in fixtures if router.handler_for(event, payload.get("action"))]


def pointed_at(payload: dict[str, Any], installation: int, rng: random.Random) -> dict[str, Any]:
    """The payload aimed at the forge's repository, installation and a writer, so it reaches deep paths."""
    shaped = copy.deepcopy(payload)
    shaped["repository"] = {**(shaped.get("repository") or {}), "full_name": REPO, "name": "widgets",
                            "owner": {"login": "acme", "type": "Organization"}}
    shaped["installation"] = {"id": installation, "account": {"login": "acme", "type": "Organization"}}
    shaped["sender"] = {"login": "ada", "type": "User"}
    if isinstance(shaped.get("comment"), dict):
        shaped["comment"] = {**shaped["comment"], "id": rng.randrange(10**6, 10**9), "body": rng.choice(COMMAND_BODIES),
                             "user": {"login": "ada", "type": "User"}}
        shaped["issue"] = {**shaped["issue"], "number": 1, "locked": False}
    if "ref" in shaped:
        shaped["ref"] = "refs/heads/clarity/issue-1"
        shaped["sender"] = {"login": "bob", "type": "User"}
    if isinstance(shaped.get("pull_request"), dict):
        shaped["pull_request"] = {**shaped["pull_request"], "number": 1}
    return shaped


def random_spot(node: Any, rng: random.Random) -> tuple[Any, Any, str] | None:
    """A random (container, key, path) in a JSON tree, shallow spots more often than deep ones."""
    path: list[str] = []
    spot = None
    while isinstance(node, dict | list) and node:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(str(key))
        spot = (node, key, ".".join(path))
        if rng.random() < 0.4:
            break
        node = node[key]
    return spot


def mutate(payload: Any, rng: random.Random) -> tuple[Any, list[str]]:
    """Drop keys and swap values for lists, numbers, nulls, odd texts; sometimes replace the whole payload."""
    if rng.random() < 0.02:
        replacement = rng.choice([[], [payload], "payload", 7, None])
        return replacement, [f"payload = {type(replacement).__name__}"]
    done = []
    for _ in range(rng.randint(1, 4)):
        spot = random_spot(payload, rng)
        if spot is None:
            break
        container, key, where = spot
        if isinstance(container, dict) and rng.random() < 0.3:
            del container[key]
            done.append(f"del {where}")
        else:
            value = copy.deepcopy(rng.choice(ODD_VALUES))
            container[key] = value
            done.append(f"{where} = {json.dumps(value)[:40]}")
    return payload, done


@pytest.fixture
def engine(forge: ForgeHandle, settings: Any) -> context.Engine:
    """An engine on the test's Redis namespace, talking to a forge that has acme/widgets and a writer."""
    forge.seed(REPO, {"tasks_list.md": "- [ ] 1 One\n- [ ] 2 Two\n"}, writers=("ada",))
    return forge.engine(settings)


@pytest.mark.slow
def test_no_well_signed_payload_shape_crashes_an_intake_job(engine: context.Engine,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(13)
    installation = engine.github.installation_id_for(REPO)
    fixtures = fixture_payloads()
    # One execution on issue 1 first, so pushes, closed PRs and buttons find something to act on.
    created = next(p for e, p in fixtures if e == "issue_comment" and p.get("action") == "created")
    setup = pointed_at(created, installation, rng)
    setup["comment"]["body"] = "/clarity run until 1"
    assert intake.process(engine, "issue_comment", "setup", json.dumps(setup)).startswith("started ")
    crashed, outcomes = [], []
    caplog.set_level(logging.WARNING, logger="jobs")
    acted_on = routed(fixtures)
    for run in range(FUZZ_RUNS):
        # Comments most (the longest path: commands, permission, reactions, executions), then every
        # other payload a handler reads, then any payload of a subscribed event.
        pick = rng.random()
        event, original = ("issue_comment", created) if pick < 0.4 else rng.choice(
            acted_on if pick < 0.85 else fixtures)
        payload = pointed_at(original, installation, rng) if rng.random() < 0.7 else copy.deepcopy(original)
        payload, how = mutate(payload, rng)
        delivery = f"fuzz-{run}"
        try:
            outcomes.append((delivery, intake.process(engine, event, delivery, json.dumps(payload))))
        except Exception as exc:  # noqa: BLE001 - what the attack looks for
            crashed.append(f"{delivery} {event} {how}: {type(exc).__name__}: {str(exc)[:120]}")
    assert crashed == [], f"{len(crashed)} of {FUZZ_RUNS} payloads crashed intake:\n" + "\n".join(crashed[:15])
    rejected = [delivery for delivery, outcome in outcomes if outcome.startswith("ignored: malformed")]
    assert len(rejected) > FUZZ_RUNS // 10  # the mutator does reach the checks
    logged = {record.getMessage().split(":")[0].removeprefix("delivery ") for record in caplog.records}
    assert set(rejected) <= logged  # each rejection has its log line, naming the delivery


@pytest.mark.parametrize(("event", "body"), [
    ("push", "[" * 100_000 + "]" * 100_000),  # deeper than Python's parser recurses
    ("push", "{\"ref\": " + "[" * 5000 + "]" * 5000 + "}"),
    ("issue_comment", "\"just a text\""),
    ("installation", "not json"),
    ("check_run", "{\"action\": \"requested_action\", \"check_run\": {\"external_id\": [\"a:1\"]}}"),
])
def test_bodies_that_are_no_payload_at_all_are_ignored_with_a_reason(engine: context.Engine, event: str,
                                                                     body: str) -> None:
    assert intake.process(engine, event, "odd", body).startswith("ignored: ")


# --- 4. commands hidden in markup ----------------------------------------------------------------

HIDDEN = (
    "Notes for later, not commands:\n"
    "\n"
    "    /clarity run\n"
    "\n"
    "\t/clarity stop\n"
    "<pre>\n"
    "/clarity run\n"
    "</pre>\n"
    "<details><summary>old log</summary>\n"
    "\n"
    "/clarity run\n"
    "</details>\n"
    "some text <!-- a note\n"
    "/clarity run\n"
    "-->"
)


def test_commands_in_indented_code_pre_details_and_comments_run_nothing(stack: devstack.Stack,
                                                                      tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "One", False)))
    sent = stack.comment(REPO, 1, HIDDEN, user="ada")
    assert sent["status_code"] == 202
    assert intake_outcome(stack, sent["delivery_id"]) == "ignored: no command"
    state = stack.admin("GET", "/state")
    assert state["reactions"] == []
    assert [c for c in state["comments"] if c["author"] == stack.bot_login] == []
    assert store_of(stack).executions(repo=REPO) == []
