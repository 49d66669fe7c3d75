"""POST /webhooks: signature, dedupe, fast 202, routing of real GitHub payloads."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus

from app import create_app
from clarity.settings import Settings
from github_app import routes
from github_app.payloads import PayloadError
from jobs.comment_event import parse_comment
from tests.conftest import WEBHOOK_FIXTURES, WEBHOOK_SECRET

FIXTURES = sorted(WEBHOOK_FIXTURES.glob("*.payload.json"))


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_of(path: Path) -> str:
    return path.name.split(".")[0]


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis):
    return create_app(settings).test_client()


@pytest.fixture
def intake(settings: Settings, redis_client: redis.Redis) -> Queue:
    return Queue(settings.intake_queue, connection=redis.Redis.from_url(settings.redis_url))


def post(client, body: bytes, event: str = "issue_comment", delivery: str | None = None,
         signature: str | None = None):
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "Content-Type": "application/json",
               "X-Hub-Signature-256": sign(body) if signature is None else signature}
    return client.post("/webhooks", data=body, headers=headers)


def comment_body() -> bytes:
    return (WEBHOOK_FIXTURES / "issue_comment.created.payload.json").read_bytes()


def test_signed_comment_is_queued_with_202(client, intake: Queue) -> None:
    response = post(client, comment_body())
    assert response.status_code == 202
    assert intake.count == 1
    job = intake.jobs[0]
    assert job.func_name == "jobs.intake.handle_delivery"
    assert job.args[0] == "issue_comment"


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, "sha1=abc", sign(b"other body"),
                                       sign(comment_body(), "wrong-secret")])
def test_bad_signature_is_refused_with_401_and_nothing_queued(client, intake: Queue, signature: str) -> None:
    response = post(client, comment_body(), signature=signature)
    assert response.status_code == 401
    assert response.get_json()["message"] == "signature does not match"
    assert intake.count == 0


def test_missing_signature_header_is_401(client, intake: Queue) -> None:
    response = client.post("/webhooks", data=comment_body(), headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d1"})
    assert response.status_code == 401
    assert intake.count == 0


def test_same_delivery_twice_is_queued_once(client, intake: Queue) -> None:
    first = post(client, comment_body(), delivery="dup-1")
    second = post(client, comment_body(), delivery="dup-1")
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.get_json()["message"] == "duplicate delivery"
    assert intake.count == 1


def test_ping_is_answered_and_not_queued(client, intake: Queue) -> None:
    body = (WEBHOOK_FIXTURES / "ping.payload.json").read_bytes()
    response = post(client, body, event="ping")
    assert response.status_code == 200
    assert response.get_json()["message"] == "pong"
    assert intake.count == 0


def test_missing_event_headers_are_400(client) -> None:
    body = comment_body()
    response = client.post("/webhooks", data=body, headers={"X-Hub-Signature-256": sign(body)})
    assert response.status_code == 400


def test_oversized_body_is_refused_before_reading(client, intake: Queue) -> None:
    body = b"{" + b" " * (26 * 1024 * 1024) + b"}"
    response = client.post("/webhooks", data=body, headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "big", "X-Hub-Signature-256": sign(body)})
    assert response.status_code == 413
    assert intake.count == 0


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_shared_payload_routes_or_is_ignored(client, intake: Queue, path: Path) -> None:
    body = path.read_bytes()
    response = post(client, body, event=event_of(path))
    payload = json.loads(body)
    # Queued only if a router takes its (event, action); the shared pushes are of tags, never a branch's.
    queued = routes.handles(event_of(path), payload.get("action")) and not (
        event_of(path) == "push" and not payload["ref"].startswith("refs/heads/"))
    assert response.status_code == (202 if queued else 200 if event_of(path) == "ping" else 204)
    assert intake.count == (1 if queued else 0)


@pytest.mark.parametrize("path", [p for p in FIXTURES if event_of(p) == "issue_comment"], ids=lambda p: p.name)
def test_issue_comment_payloads_parse_for_intake(path: Path) -> None:
    payload = json.loads(path.read_text())
    # These examples come from a repository webhook; an App delivery always names its installation.
    payload.setdefault("installation", {"id": 77, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc="})
    event = parse_comment("d", payload)
    if payload["action"] == "created":
        assert event is not None
        assert event.repo == payload["repository"]["full_name"]
        assert event.comment_id == payload["comment"]["id"]
        assert event.installation_id == payload["installation"]["id"]
    else:
        assert event is None


def test_malformed_comment_payload_names_what_is_missing() -> None:
    payload = json.loads((WEBHOOK_FIXTURES / "issue_comment.created.payload.json").read_text())
    payload["installation"] = {"id": 77}
    del payload["comment"]
    with pytest.raises(PayloadError, match="malformed issue_comment payload: missing or bad 'comment'"):
        parse_comment("d", payload)
    payload = json.loads((WEBHOOK_FIXTURES / "issue_comment.created.payload.json").read_text())
    payload.pop("installation", None)
    with pytest.raises(PayloadError, match="no installation id"):
        parse_comment("d", payload)


# -- the ack path: claim + job + push in one atomic step (clarity.deliveries) ----------------------
def test_accepted_delivery_is_one_rq_job_with_the_exact_arguments(client, intake: Queue, settings: Settings,
                                                                  redis_client: redis.Redis) -> None:
    body = comment_body()
    response = post(client, body, delivery="exact-1")
    assert response.status_code == 202
    (job_id,) = intake.job_ids
    job = Job.fetch(job_id, connection=intake.connection)  # read back by RQ, as a worker does
    assert job.func_name == "jobs.intake.handle_delivery"
    assert job.args == ("issue_comment", "exact-1", body.decode())
    assert job.kwargs == {}
    assert job.get_status() == JobStatus.QUEUED
    assert job.origin == settings.intake_queue
    assert job.description == "issue_comment exact-1"
    assert job.enqueued_at is not None
    assert f"rq:queue:{settings.intake_queue}".encode() in intake.connection.smembers("rq:queues")
    claim = f"{settings.namespace}:delivery:exact-1"
    assert 0 < redis_client.ttl(claim) <= settings.delivery_ttl


def test_concurrent_copies_of_one_delivery_queue_exactly_one_job(settings: Settings, intake: Queue) -> None:
    app = create_app(settings)
    body = comment_body()
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda _: post(app.test_client(), body, delivery="race-1").status_code, range(24)))
    assert sorted(statuses) == [200] * 23 + [202]
    assert intake.count == 1


@pytest.mark.slow
def test_redis_failure_while_queueing_answers_503_and_leaves_the_delivery_unclaimed(
        client, intake: Queue, settings: Settings, redis_client: redis.Redis) -> None:
    # The queue key holds a string, so pushing the job id fails after the claim and the job hash were written.
    queue_key = f"rq:queue:{settings.intake_queue}"
    redis_client.set(queue_key, "not a list")
    delivery = f"retry-{uuid.uuid4()}"
    response = post(client, comment_body(), delivery=delivery)
    assert response.status_code == 503
    assert response.get_json()["message"] == "could not queue the delivery; retry later"
    assert not redis_client.exists(f"{settings.namespace}:delivery:{delivery}")
    assert not any(redis_client.hget(key, "description") == f"issue_comment {delivery}"
                   for key in redis_client.scan_iter("rq:job:*", count=1000))
    redis_client.delete(queue_key)
    # GitHub's redelivery (same X-GitHub-Delivery) is processed.
    assert post(client, comment_body(), delivery=delivery).status_code == 202
    assert intake.count == 1
    assert intake.jobs[0].args[1] == delivery


def test_redis_down_answers_503_and_a_later_redelivery_is_queued(settings: Settings, redis_client: redis.Redis,
                                                                intake: Queue) -> None:
    down = create_app(dataclasses.replace(settings, redis_url="redis://127.0.0.1:9/0")).test_client()
    assert post(down, comment_body(), delivery="while-down").status_code == 503
    assert post(create_app(settings).test_client(), comment_body(), delivery="while-down").status_code == 202
    assert intake.count == 1
