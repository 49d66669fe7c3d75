"""The webhook ack (issue 6): the job hash built without RQ is RQ's own, a real RQ worker runs it, lost
connections and flushed scripts are survived, and the WSGI endpoint answers its edges as Flask did."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import pickle
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.utils import utcparse
from werkzeug.test import Client

from app import create_app
from clarity.deliveries import PER_DELIVERY, DeliveryQueue, timestamp
from clarity.settings import Settings
from devstack import localredis
from github_app.webhooks import WebhookConfig, WebhookEndpoint
from jobs.worker import SteadyWorker
from tests.conftest import WEBHOOK_FIXTURES, WEBHOOK_SECRET

BODY = (WEBHOOK_FIXTURES / "issue_comment.created.payload.json").read_text()
ECHO = "tests.test_webhook_ack.echo"


def echo(event: str, delivery: str, body: str) -> list[str]:
    """The job the tests queue: returns its arguments, so the worker's result shows what it received."""
    return [event, delivery, body]


@pytest.fixture
def queue(settings: Settings, redis_client: redis.Redis) -> Iterator[Queue]:
    q = Queue(settings.intake_queue, connection=redis.Redis.from_url(settings.redis_url))
    yield q
    q.delete(delete_jobs=True)  # job hashes (rq:job:<id>) carry no namespace


@pytest.fixture
def private_queue() -> Iterator[Queue]:
    """A queue on a Redis of its own: these tests kill clients and flush scripts, which a shared one must not see."""
    handle = localredis.start_private()
    try:
        yield Queue("t:intake", connection=redis.Redis.from_url(handle.url))
    finally:
        handle.stop()


def job_hash(connection: redis.Redis, job_id: str) -> dict[Any, Any]:
    return dict(connection.hgetall(Job.key_for(job_id)))


def test_the_ack_writes_the_job_hash_rq_writes_for_the_same_call(queue: Queue, settings: Settings) -> None:
    acked = DeliveryQueue(queue, settings.namespace, ECHO, settings.delivery_ttl)
    assert acked.accept("issue_comment", "same-1", BODY)
    theirs = queue.enqueue(ECHO, "issue_comment", "same-1", BODY, description="issue_comment same-1")
    ours_id = next(job_id for job_id in queue.job_ids if job_id != theirs.id)
    ours, rq_own = job_hash(queue.connection, ours_id), job_hash(queue.connection, theirs.id)
    assert ours.keys() == rq_own.keys()
    for name in ours.keys() - {b"created_at", b"enqueued_at", b"data"}:
        assert ours[name] == rq_own[name], name
    for name in (b"created_at", b"enqueued_at"):  # the same text form, so RQ parses both
        assert abs((utcparse(ours[name].decode()) - utcparse(rq_own[name].decode())).total_seconds()) < 5
    # RQ zlibs the data; the ack stores the same pickle without it (RQ loads either).
    assert pickle.loads(ours[b"data"]) == pickle.loads(zlib.decompress(rq_own[b"data"]))


class InProcessWorker(SimpleWorker):
    """RQ's in-process worker with our workers' stop (jobs.worker): RQ's own may wait a minute for its pub/sub thread."""

    unsubscribe = SteadyWorker.unsubscribe


def test_a_real_rq_worker_runs_the_acked_job_with_the_delivery_arguments(queue: Queue, settings: Settings) -> None:
    acked = DeliveryQueue(queue, settings.namespace, ECHO, settings.delivery_ttl)
    assert acked.accept("issue_comment", "run-1", BODY)
    (job_id,) = queue.job_ids
    assert InProcessWorker([queue], connection=queue.connection).work(burst=True)
    job = Job.fetch(job_id, connection=queue.connection)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == ["issue_comment", "run-1", BODY]
    assert job.origin == queue.name and job.description == "issue_comment run-1"


def test_a_second_accept_of_one_delivery_queues_nothing(queue: Queue, settings: Settings,
                                                        redis_client: redis.Redis) -> None:
    acked = DeliveryQueue(queue, settings.namespace, ECHO, settings.delivery_ttl)
    assert acked.accept("push", "twice-1", "{}") is True
    assert acked.accept("push", "twice-1", "{}") is False
    assert queue.count == 1
    assert 0 < redis_client.ttl(f"{settings.namespace}:delivery:twice-1") <= settings.delivery_ttl


def test_a_connection_redis_dropped_is_replaced_without_failing_the_delivery(private_queue: Queue) -> None:
    acked = DeliveryQueue(private_queue, "t", ECHO, 60)
    assert acked.accept("push", "before-kill", "{}")
    private_queue.connection.client_kill_filter(_type="normal", skipme=True)  # what a Redis restart does to it
    assert acked.accept("push", "after-kill", "{}")
    assert [job.args[1] for job in private_queue.jobs] == ["before-kill", "after-kill"]


def test_requests_on_short_lived_threads_share_connections(private_queue: Queue) -> None:
    # The development server runs each request on a thread of its own; gunicorn keeps its threads.
    acked = DeliveryQueue(private_queue, "t", ECHO, 60)
    before = private_queue.connection.info("stats")["total_connections_received"]
    for n in range(20):
        thread = threading.Thread(target=acked.accept, args=("push", f"thread-{n}", "{}"))
        thread.start()
        thread.join(10)
    assert private_queue.count == 20
    assert private_queue.connection.info("stats")["total_connections_received"] - before == 1


def test_flushed_scripts_are_loaded_again(private_queue: Queue) -> None:
    acked = DeliveryQueue(private_queue, "t", ECHO, 60)
    assert acked.accept("push", "before-flush", "{}")
    private_queue.connection.script_flush()
    assert acked.accept("push", "after-flush", "{}")
    assert acked.accept("push", "after-flush", "{}") is False
    assert private_queue.count == 2


def test_redis_down_raises_at_once_and_claims_nothing() -> None:
    acked = DeliveryQueue(Queue("t:intake", connection=redis.Redis.from_url("redis://127.0.0.1:9/0")), "t", ECHO, 60)
    with pytest.raises(redis.ConnectionError):
        acked.accept("push", "down-1", "{}")


def test_an_rq_whose_job_hash_lacks_a_field_the_ack_makes_stops_the_app_at_start_up(queue: Queue) -> None:
    class Reshaped(Job):
        def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
            mapping = super().to_dict(include_meta, include_result)
            mapping.pop("description", None)
            return mapping

    reshaped = Queue(queue.name, connection=queue.connection, job_class=Reshaped)
    with pytest.raises(RuntimeError, match="RQ's job hash has no description: clarity.deliveries needs updating"):
        DeliveryQueue(reshaped, "t", ECHO, 60)
    assert set(PER_DELIVERY) == {"created_at", "enqueued_at", "data", "description"}


def test_timestamps_have_rq_s_text_form() -> None:
    stamp = timestamp()
    assert len(stamp) == len("2026-01-31T12:00:00.123456Z") and stamp.endswith("Z")
    assert utcparse(stamp).microsecond == int(stamp[-7:-1])


# -- the WSGI endpoint's edges --------------------------------------------------------------------
class Failing:
    """An intake that breaks in an unexpected way (not a Redis error)."""

    def accept(self, event: str, delivery: str, body: str) -> bool:
        raise RuntimeError(f"broken intake while holding {WEBHOOK_SECRET}")


def signed(body: bytes) -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-GitHub-Delivery": "edge-1", "Content-Type": "application/json",
            "X-Hub-Signature-256": "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}


def test_other_methods_on_the_webhook_path_are_405_and_other_paths_reach_flask(settings: Settings,
                                                                                redis_client: redis.Redis) -> None:
    client = create_app(settings).test_client()
    answer = client.get("/webhooks")
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    assert answer.get_json() == {"message": "only POST is allowed here"}
    head = client.head("/webhooks")
    assert (head.status_code, head.get_data()) == (405, b"")
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_an_unexpected_error_is_a_logged_500_without_secrets(settings: Settings, redis_client: redis.Redis,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    flask_app = create_app(settings)  # teaches the redactor the webhook secret
    client = Client(WebhookEndpoint(WebhookConfig(WEBHOOK_SECRET, Failing()), flask_app.wsgi_app))
    body = b'{"ref": "refs/heads/main"}'
    with caplog.at_level(logging.ERROR, logger="github_app.webhooks"):
        answer = client.post("/webhooks", data=body, headers=signed(body))
    assert answer.status_code == 500 and json.loads(answer.get_data()) == {"message": "internal error"}
    (record,) = [r for r in caplog.records if r.name == "github_app.webhooks"]
    assert record.getMessage() == "webhook delivery edge-1 failed"
    assert WEBHOOK_SECRET not in caplog.text


def call(settings: Settings, body: bytes, stream: bytes, **extra: Any) -> tuple[str, Any]:
    """POST `stream` as the body of a signed delivery of `body`, straight through the app's WSGI callable."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks", "SERVER_NAME": "test", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(stream),
               "CONTENT_TYPE": "application/json", **extra}
    environ |= {"HTTP_" + name.upper().replace("-", "_"): value for name, value in signed(body).items()}
    started: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append(status)
        return lambda data: None

    answer = b"".join(create_app(settings).wsgi_app(environ, start_response))
    return started[0], json.loads(answer)


def test_a_body_shorter_than_its_content_length_is_400(settings: Settings, redis_client: redis.Redis,
                                                       queue: Queue) -> None:
    body = b'{"ref": "refs/heads/main"}'
    assert call(settings, body, body[:10], CONTENT_LENGTH=str(len(body))) == (
        "400 Bad Request", {"message": "the body ended before its Content-Length"})
    assert queue.count == 0


def test_a_chunked_body_cut_at_25_mb_is_413_not_a_signature_error(settings: Settings, redis_client: redis.Redis,
                                                                   queue: Queue) -> None:
    body = b"{" + b" " * (26 * 1024 * 1024) + b"}"
    assert call(settings, body, body, HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True}) == (
        "413 Request Entity Too Large", {"message": "payload larger than 25 MB"})
    assert queue.count == 0
