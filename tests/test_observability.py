"""Operating Clarity: /readyz, /metrics (also across processes) and JSON log lines with context."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, Worker
from rq.utils import now, utcformat

from app import create_app
from clarity import logcontext, metrics
from clarity.models import Execution
from clarity.redaction import RedactingFilter, install_logging
from clarity.settings import Settings, SettingsError
from clarity.status import ExecutionStatus
from clarity.store import Store
from runner.sandbox import Limits, LocalSandbox
from tests.conftest import WEBHOOK_FIXTURES, WEBHOOK_SECRET
from tests.test_webhooks import comment_body, post

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis):
    return create_app(settings).test_client()


@pytest.fixture
def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def workers(raw: redis.Redis) -> Iterator[list[Worker]]:
    """RQ workers registered in Redis (birth = a heartbeat now); their keys are removed afterwards."""
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.register_death()
        raw.delete(worker.key)


def register_worker(workers: list[Worker], raw: redis.Redis, *queue_names: str) -> Worker:
    worker = Worker([Queue(name, connection=raw) for name in queue_names], connection=raw,
                    name=f"test-{uuid.uuid4().hex[:10]}")
    worker.register_birth()
    workers.append(worker)
    return worker


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


# -- /readyz ---------------------------------------------------------------------------------------
def test_readyz_without_workers_is_503_and_names_both_missing_roles(client, settings: Settings) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not ready"
    assert body["redis"] == "ok"
    assert body["workers"] == {"intake": 0, "steps": 0}
    assert any(settings.intake_queue in m and "heartbeat" in m for m in body["missing"])
    assert any(settings.steps_queue in m for m in body["missing"])


def test_readyz_is_200_when_workers_heartbeat_on_intake_and_a_priority_steps_queue(
        client, settings: Settings, raw: redis.Redis, workers: list[Worker]) -> None:
    register_worker(workers, raw, settings.intake_queue)
    register_worker(workers, raw, settings.intake_queue, f"{settings.steps_queue}:p10", f"{settings.steps_queue}:p5")
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["workers"] == {"intake": 2, "steps": 1}
    assert "missing" not in body
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_names_the_steps_role_when_only_an_intake_worker_runs(
        client, settings: Settings, raw: redis.Redis, workers: list[Worker]) -> None:
    register_worker(workers, raw, settings.intake_queue)
    response = client.get("/readyz")
    assert response.status_code == 503
    (missing,) = response.get_json()["missing"]
    assert "steps" in missing and settings.intake_queue not in missing


def test_a_worker_with_a_stale_heartbeat_does_not_count(
        settings: Settings, redis_client: redis.Redis, raw: redis.Redis, workers: list[Worker]) -> None:
    app = create_app(dataclasses.replace(settings, ready_worker_age=30))
    worker = register_worker(workers, raw, settings.intake_queue, settings.steps_queue)
    assert app.test_client().get("/readyz").status_code == 200
    raw.hset(worker.key, "last_heartbeat", utcformat(now() - timedelta(seconds=31)))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "in the last 30 s" in response.get_json()["missing"][0]


def test_workers_of_another_namespace_do_not_make_this_one_ready(
        client, raw: redis.Redis, workers: list[Worker]) -> None:
    register_worker(workers, raw, "someone-else:intake", "someone-else:steps")
    assert client.get("/readyz").status_code == 503


def test_readyz_is_503_naming_redis_when_redis_does_not_answer(settings: Settings) -> None:
    down = dataclasses.replace(settings, redis_url="redis://127.0.0.1:9/0")
    client = create_app(down).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"] == "down"
    assert "redis" in body["missing"][0].lower()
    assert client.get("/healthz").status_code == 200  # the process itself is up


# -- /metrics --------------------------------------------------------------------------------------
def test_metrics_page_names_every_clarity_metric(client) -> None:
    post(client, comment_body())  # labelled series appear once something was recorded
    metrics.task_finished("command", True, 1.0, 1)
    metrics.sandbox_killed("cpu")
    text = client.get("/metrics").get_data(as_text=True)
    for name, kind in [("clarity_webhook_duration_seconds", "histogram"),
                       ("clarity_webhook_deliveries_total", "counter"), ("clarity_queue_jobs", "gauge"),
                       ("clarity_executions", "gauge"), ("clarity_task_duration_seconds", "histogram"),
                       ("clarity_task_attempts_total", "counter"), ("clarity_tool_tasks_total", "counter"),
                       ("clarity_sandbox_kills_total", "counter"), ("clarity_redis_up", "gauge")]:
        assert f"# TYPE {name} {kind}" in text


def test_delivery_counts_move_with_accepted_duplicate_and_bad_signature(client) -> None:
    before = scrape(client)
    delivery = str(uuid.uuid4())
    assert post(client, comment_body(), delivery=delivery).status_code == 202
    assert post(client, comment_body(), delivery=delivery).status_code == 200
    assert post(client, comment_body(), signature="sha256=" + "0" * 64).status_code == 401
    assert post(client, comment_body(), event="made_up_event", signature="sha256=00").status_code == 401
    after = scrape(client)
    name = "clarity_webhook_deliveries_total"
    for event, result in [("issue_comment", "accepted"), ("issue_comment", "duplicate"),
                          ("issue_comment", "bad_signature"), ("other", "bad_signature")]:
        assert value(after, name, event=event, result=result) - value(before, name, event=event, result=result) == 1
    # An unsigned sender cannot invent label values: unknown events count as "other".
    assert not any(dict(labels).get("event") == "made_up_event" for (_, labels) in after)
    hist = "clarity_webhook_duration_seconds_count"
    assert value(after, hist) - value(before, hist) == 4


def test_queue_depth_is_read_from_redis_per_queue_and_priority(client, settings: Settings,
                                                               raw: redis.Redis) -> None:
    assert value(scrape(client), "clarity_queue_jobs", queue=settings.intake_queue, priority="") == 0
    post(client, comment_body())
    post(client, comment_body())
    Queue(f"{settings.steps_queue}:p7", connection=raw).enqueue("jobs.step.run_slot")
    Queue("someone-else:steps:p7", connection=raw).enqueue("jobs.step.run_slot")
    try:
        page = scrape(client)
    finally:
        Queue("someone-else:steps:p7", connection=raw).delete(delete_jobs=True)
    assert value(page, "clarity_queue_jobs", queue=settings.intake_queue, priority="") == 2
    assert value(page, "clarity_queue_jobs", queue=f"{settings.steps_queue}:p7", priority="7") == 1
    assert not any(dict(labels).get("queue", "").startswith("someone-else") for (_, labels) in page)


def test_executions_by_status_are_counted_from_the_store(client, store: Store) -> None:
    for _ in range(2):
        store.create(Execution(id="", installation_id=7, repo="o/r", account="o", issue_number=1,
                               is_pull_request=False, branch="b", base_branch="main", requester="u"), "test")
    page = scrape(client)
    assert value(page, "clarity_executions", status=str(ExecutionStatus.QUEUED)) == 2
    assert value(page, "clarity_executions", status=str(ExecutionStatus.COMPLETED)) == 0
    assert value(page, "clarity_redis_up") == 1


def test_metrics_still_answer_when_redis_is_down(settings: Settings) -> None:
    client = create_app(dataclasses.replace(settings, redis_url="redis://127.0.0.1:9/0")).test_client()
    page = scrape(client)
    assert value(page, "clarity_redis_up") == 0


def test_a_sandbox_timeout_counts_as_a_kill(tmp_path: Path, client) -> None:
    before = value(scrape(client), "clarity_sandbox_kills_total", reason="timeout")
    result = LocalSandbox().run([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, {},
                                Limits(timeout=0.3))
    assert result.killed_by == "timeout"
    assert value(scrape(client), "clarity_sandbox_kills_total", reason="timeout") - before == 1


def test_finished_tasks_feed_duration_attempts_and_tool_results(client) -> None:
    before = scrape(client)
    metrics.task_finished("command", True, 12.0, 1)
    metrics.task_finished("command", False, 40.0, 4)
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("clarity_task_attempts_total", tool="command") == 5
    assert moved("clarity_tool_tasks_total", tool="command", result="success") == 1
    assert moved("clarity_tool_tasks_total", tool="command", result="failure") == 1
    assert moved("clarity_task_duration_seconds_sum", tool="command", result="failure") == 40.0
    assert moved("clarity_task_duration_seconds_bucket", tool="command", result="success", le="15.0") == 1


def test_odd_kill_reasons_are_folded_into_other(client) -> None:
    before = value(scrape(client), "clarity_sandbox_kills_total", reason="other")
    metrics.sandbox_killed("no such\nreason {}")
    assert value(scrape(client), "clarity_sandbox_kills_total", reason="other") - before == 1


MULTIPROCESS_SCRIPT = textwrap.dedent("""
    import sys
    import redis
    from rq import Queue, Worker
    from clarity import metrics
    role, url, queue = sys.argv[1:4]
    if role == "web":
        metrics.webhook_delivery("push", "accepted", 0.002)
    elif role == "worker":
        # Two jobs, each in a work horse RQ forks: they record into files named after this worker.
        connection = redis.Redis.from_url(url)
        q = Queue(queue, connection=connection)
        for _ in range(2):
            q.enqueue("clarity.metrics.sandbox_killed", "memory")
        Worker([q], connection=connection).work(burst=True)
    else:
        sys.stdout.write(metrics.exposition()[0].decode())
""")


@pytest.mark.slow
def test_multiprocess_metrics_merge_web_processes_and_work_horses(tmp_path: Path, redis_url: str,
                                                                  namespace: str, raw: redis.Redis) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(ROOT)}

    def run(role: str) -> str:
        done = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRIPT, role, redis_url, f"{namespace}:jobs"], check=False,
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        run("web")
        run("web")
        run("worker")
        page = samples(run("scrape"))
    finally:
        Queue(f"{namespace}:jobs", connection=raw).delete(delete_jobs=True)
    assert value(page, "clarity_webhook_deliveries_total", event="push", result="accepted") == 2
    assert value(page, "clarity_sandbox_kills_total", reason="memory") == 2
    # Both horses of the worker wrote one file, not one file per job.
    horse_files = [p.name for p in metrics_dir.iterdir() if p.name.startswith("counter_") and p.stem.endswith("h")]
    assert len(horse_files) == 1, sorted(p.name for p in metrics_dir.iterdir())


# -- JSON logs -------------------------------------------------------------------------------------
@pytest.fixture
def log_lines(settings: Settings) -> Iterator[io.StringIO]:
    """Clarity's log handler, switched to JSON and writing into a buffer; put back as text afterwards."""
    install_logging(settings.log_level, "json")
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactingFilter) for f in h.filters))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        if previous is not None:
            handler.setStream(previous)
        install_logging(settings.log_level, "text")


def parsed(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_json_log_lines_carry_the_delivery_id_of_the_webhook_request(settings: Settings, redis_client,
                                                                      log_lines: io.StringIO) -> None:
    client = create_app(dataclasses.replace(settings, log_format="json")).test_client()
    delivery = str(uuid.uuid4())
    assert post(client, comment_body(), delivery=delivery).status_code == 202
    assert post(client, comment_body(), signature="sha256=" + "1" * 64, delivery="bad-one").status_code == 401
    lines = parsed(log_lines)
    queued = next(line for line in lines if "queued" in line["message"])
    assert queued["delivery_id"] == delivery
    assert queued["level"] == "INFO"
    assert queued["logger"] == "github_app.webhooks"
    assert queued["ts"].endswith("Z") and "T" in queued["ts"]
    refused = next(line for line in lines if "refused" in line["message"])
    assert refused["delivery_id"] == "bad-one" and refused["level"] == "WARNING"
    assert logcontext.current() == {}  # nothing leaks into the next request on this thread


def test_json_log_lines_redact_secrets_in_messages_and_exceptions(settings: Settings, redis_client,
                                                                   log_lines: io.StringIO) -> None:
    create_app(dataclasses.replace(settings, log_format="json"))  # teaches the redactor the webhook secret
    log = logging.getLogger("clarity.test")
    with logcontext.bind(execution_id="e1", task_id="2.3", repo="octo/repo", installation=77):
        log.warning("calling with %s and ghs_%s", WEBHOOK_SECRET, "a" * 36)
        try:
            raise RuntimeError(f"token {WEBHOOK_SECRET} refused")
        except RuntimeError:
            log.exception("step failed")
    text = log_lines.getvalue()
    assert WEBHOOK_SECRET not in text and "ghs_aaaa" not in text
    warning, failure = parsed(log_lines)[-2:]
    assert "[REDACTED]" in warning["message"]
    assert "[REDACTED]" in failure["exc"] and "RuntimeError" in failure["exc"]
    assert (warning["execution_id"], warning["task_id"], warning["repo"], warning["installation"]) == (
        "e1", "2.3", "octo/repo", "77")
    assert "delivery_id" not in warning


def test_log_context_binds_nest_and_unwind() -> None:
    with logcontext.bind(delivery_id="d1"):
        with logcontext.bind(repo="o/r", task_id=None):
            assert logcontext.current() == {"delivery_id": "d1", "repo": "o/r"}
        assert logcontext.current() == {"delivery_id": "d1"}
    assert logcontext.current() == {}
    with pytest.raises(ValueError, match="unknown log context field"), logcontext.bind(user="x"):
        pass


def test_log_format_and_ready_age_are_read_from_the_environment(private_key_pem: str, tmp_path: Path) -> None:
    base = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": private_key_pem, "GITHUB_WEBHOOK_SECRET": "s3cret!"}
    settings = Settings.from_env({**base, "CLARITY_LOG_FORMAT": "JSON", "CLARITY_READY_WORKER_AGE": "90",
                                  "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert (settings.log_format, settings.ready_worker_age, settings.metrics_dir) == ("json", 90, tmp_path)
    assert Settings.from_env(base).log_format == "text"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**base, "CLARITY_LOG_FORMAT": "xml", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "no")})
    assert "CLARITY_LOG_FORMAT must be one of text, json, got 'xml'" in str(caught.value)
    assert "PROMETHEUS_MULTIPROC_DIR must be an existing directory" in str(caught.value)


def test_every_shared_fixture_is_counted_under_a_known_event(client) -> None:
    before = scrape(client)
    for path in sorted(WEBHOOK_FIXTURES.glob("*.payload.json")):
        post(client, path.read_bytes(), event=path.name.split(".")[0])
    after = scrape(client)
    moved = sum(v - before.get(k, 0.0) for k, v in after.items() if k[0] == "clarity_webhook_deliveries_total")
    assert moved == len(list(WEBHOOK_FIXTURES.glob("*.payload.json")))
