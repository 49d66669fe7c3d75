"""Webhook volume: deliveries no router acts on are answered 204 at the endpoint and queue nothing.

On GitHub every Actions job of every installed repository sends `check_run.created` and
`check_run.completed`, every push a `check_suite`; only a few (event, action) pairs mean anything
to Clarity (github_app.routes.HANDLED). These go through the real endpoint (create_app's WSGI stack)
with a real Redis behind it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job

from app import create_app
from clarity import metrics
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from tests.conftest import WEBHOOK_FIXTURES, WEBHOOK_SECRET
from tests.e2e import REPO, make_repo, tasks_md, wait_settled

OTHER_APPS = (15368, 29310, 25811, 2)  # GitHub Actions, and the apps of the shared fixtures


def fixture(name: str) -> dict[str, Any]:
    return json.loads((WEBHOOK_FIXTURES / f"{name}.payload.json").read_text())


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


def post(client: Any, event: str, body: bytes, delivery: str | None = None) -> Any:
    return client.post("/webhooks", data=body, headers={
        "X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json", "X-Hub-Signature-256": sign(body)})


def irrelevant(n: int) -> tuple[str, bytes]:
    """The n-th of a stream of check deliveries nobody routes: created/completed runs and suites of other apps."""
    name = ("check_run.created", "check_run.completed", "check_suite.completed", "check_suite.requested")[n % 4]
    event = name.split(".")[0]
    payload = copy.deepcopy(fixture(name))
    payload[event]["id"] = 10_000 + n
    payload[event]["app"] = {**payload[event]["app"], "id": OTHER_APPS[n % len(OTHER_APPS)]}
    payload["installation"] = {"id": 1000 + n % 7}
    pretty = n % 2 == 0  # GitHub's fixtures are indented; the forge (and hookshot) send compact JSON
    return event, (json.dumps(payload, indent=2) if pretty else json.dumps(payload, separators=(",", ":"))).encode()


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> Any:
    # CLARITY_BOT_LOGIN set: the endpoint knows its bot without a worker having asked GitHub (test_identity.py)
    return create_app(dataclasses.replace(settings, bot_login="clarity[bot]")).test_client()


@pytest.fixture
def queue(settings: Settings, redis_client: redis.Redis) -> Queue:
    return Queue(settings.intake_queue, connection=redis.Redis.from_url(settings.redis_url))


def claimed(redis_client: redis.Redis, settings: Settings) -> list[str]:
    return list(redis_client.scan_iter(f"{settings.namespace}:delivery:*", count=1000))


def ignored_count(event: str) -> float:
    return float(metrics.DELIVERIES.labels(event, "ignored")._value.get())


@pytest.mark.slow
def test_a_thousand_irrelevant_check_deliveries_are_answered_204_and_queue_nothing(
        client: Any, queue: Queue, redis_client: redis.Redis, settings: Settings) -> None:
    before = (queue.count, ignored_count("check_run"), ignored_count("check_suite"))
    statuses = [post(client, *irrelevant(n)).status_code for n in range(1000)]
    assert statuses == [204] * 1000
    assert queue.count == before[0] == 0
    assert claimed(redis_client, settings) == []  # no delivery id claimed: a later real event is never a "duplicate"
    assert (ignored_count("check_run") - before[1], ignored_count("check_suite") - before[2]) == (500, 500)


@pytest.mark.parametrize("name", ["check_run.requested_action", "check_run.rerequested", "check_suite.rerequested",
                                  "issue_comment.created", "pull_request.closed", "installation.created",
                                  "installation.suspend", "installation_repositories.added"])
def test_handled_pairs_are_still_queued_with_202(client: Any, queue: Queue, redis_client: redis.Redis,
                                                 settings: Settings, name: str) -> None:
    body = (WEBHOOK_FIXTURES / f"{name}.payload.json").read_bytes()
    assert post(client, name.split(".")[0], body, delivery="handled-1").status_code == 202
    assert queue.count == 1 and len(claimed(redis_client, settings)) == 1


@pytest.mark.parametrize("name", ["pull_request.opened", "pull_request.synchronize", "pull_request.labeled",
                                  "issue_comment.edited", "issue_comment.deleted", "check_suite.completed"])
def test_unrouted_actions_of_subscribed_events_are_answered_204(client: Any, queue: Queue, redis_client: redis.Redis,
                                                                settings: Settings, name: str) -> None:
    body = (WEBHOOK_FIXTURES / f"{name}.payload.json").read_bytes()
    assert post(client, name.split(".")[0], body).status_code == 204
    assert queue.count == 0 and claimed(redis_client, settings) == []


def push_payload(ref: str, sender: str) -> bytes:
    payload = copy.deepcopy(fixture("push"))
    payload.update(ref=ref, sender={**payload["sender"], "login": sender})
    return json.dumps(payload).encode()


@pytest.mark.parametrize(("ref", "sender", "queued"), [
    ("refs/heads/clarity/issue-1", "ada", True),  # someone else's push may pause an execution
    ("refs/heads/clarity/issue-1", "clarity[bot]", False),  # our own push: on_push ignores it, so does the endpoint
    ("refs/heads/clarity/issue-1", "Clarity[Bot]", False),
    ("refs/tags/v1.0", "ada", False),  # not a branch
])
def test_pushes_are_queued_only_when_they_can_matter(client: Any, queue: Queue, ref: str, sender: str,
                                                     queued: bool) -> None:
    response = post(client, "push", push_payload(ref, sender))
    assert (response.status_code, queue.count) == ((202, 1) if queued else (204, 0))


def test_a_body_whose_action_cannot_be_read_cheaply_is_still_judged_by_its_action(client: Any, queue: Queue) -> None:
    payload = fixture("check_run.created")
    moved = {"check_run": payload["check_run"], "action": "created"}  # action not first: the slow path
    assert post(client, "check_run", json.dumps(moved).encode()).status_code == 204
    moved["action"] = "rerequested"
    assert post(client, "check_run", json.dumps(moved).encode()).status_code == 202
    twice = b'{"action": "created", "check_run": {}, "action": "rerequested"}'  # the last one is what intake reads
    assert post(client, "check_run", twice).status_code == 202
    assert queue.count == 2


def test_the_endpoint_table_is_exactly_the_routers_routes() -> None:
    """github_app may not import jobs, so the endpoint keeps its own table; it must say what the routers take."""
    from github_app import routes, webhooks
    from jobs.routes import router

    assert router.routes() == set(routes.HANDLED)
    assert router.events() == webhooks.HANDLED_EVENTS == routes.HANDLED_EVENTS


def test_a_router_refuses_a_route_missing_from_the_table() -> None:
    from jobs.router import Router

    with pytest.raises(ValueError, match="github_app.routes.HANDLED"):
        Router().register("pull_request", action="opened")


def intake_jobs(stack: Any) -> list[str]:
    """The descriptions (`<event> <delivery>`) of every intake job RQ holds: queued, running, finished or failed."""
    queue = Queue(stack.settings.intake_queue, connection=redis.Redis.from_url(stack.redis.url))
    ids = [*queue.job_ids, *queue.started_job_registry.get_job_ids(), *queue.finished_job_registry.get_job_ids(),
           *queue.failed_job_registry.get_job_ids()]
    return [job.description for job in Job.fetch_many(ids, connection=queue.connection) if job is not None]


def test_the_forges_own_webhooks_arrive_and_the_run_completes_without_intake_work_for_them(
        stack: Any, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "One", False), ("2", "Two", False)))
    before = len(stack.admin("GET", "/deliveries"))
    assert stack.comment(REPO, 1, "/clarity run", user="ada")["status_code"] == 202
    ex = wait_settled(stack)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason  # its own pushes did not pause it
    sent = stack.admin("GET", "/deliveries")[before:]
    counted = Counter(f"{d['event']}.{d['action']}" if d["action"] else d["event"] for d in sent)
    assert counted["push"] >= 2 and counted["check_run.created"] >= 2 and counted["check_run.completed"] >= 2, counted
    assert counted["check_suite.requested"] >= 2 and counted["pull_request.opened"] == 1, counted
    own = [d for d in sent if d["event"] != "issue_comment"]
    assert {d["status_code"] for d in own} == {204}, [(d["event"], d["action"], d["status_code"]) for d in own]
    assert {d["payload"]["sender"]["login"] for d in sent if d["event"] == "push"} == {stack.bot_login}
    assert [job.split()[0] for job in intake_jobs(stack)] == ["issue_comment"]  # only the command was queued
