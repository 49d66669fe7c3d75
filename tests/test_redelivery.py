"""The delivery reconciler (issue 14): GitHub never redelivers a failed delivery, so Clarity asks for it.

The forge serves the app webhook's delivery log as GitHub does (`GET /app/hook/deliveries`, cursor pages,
newest first; `POST .../attempts` sends the same guid again, 422 past 3 days). `jobs.redelivery.plan` is
a pure function tested as a table; `reconcile` runs against the forge, a recording receiver and a real
Redis; the end-to-end test loses Redis under a `/clarity run` and gets the command back through it.
"""

from __future__ import annotations

import dataclasses
import io
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import cli
import devstack
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from github_app import hook_deliveries
from github_app.hook_deliveries import Attempt
from jobs import context, redelivery
from jobs.redelivery import SPACING, TOO_OLD, plan
from tests.conftest_forge import ForgeHandle, WebhookReceiver
from tests.e2e import REPO, git, make_repo, store_of, tasks_md, wait_settled
from tests.test_redis_restart import AofRedis, stack_on_own_redis

NOW = 1_800_000_000.0


def attempt(id_: int, guid: str, age: float, status: int) -> Attempt:
    return Attempt(id_, guid, NOW - age, status)


# -- plan: a pure function ------------------------------------------------------------------------------
@pytest.mark.parametrize(("attempts", "memory", "limit", "asked", "checkpoint"), [
    pytest.param([], {}, 20, [], NOW, id="nothing read: the checkpoint moves to now"),
    pytest.param([attempt(1, "a", 30, 503)], {}, 20, [1], NOW, id="a failed delivery is asked for"),
    pytest.param([attempt(1, "a", 30, 0)], {}, 20, [1], NOW, id="no answer at all (timed out) counts as failed"),
    pytest.param([attempt(1, "a", 30, 503), attempt(2, "a", 20, 202)], {}, 20, [], NOW,
                 id="a guid with a 2xx attempt is never asked for"),
    pytest.param([attempt(1, "a", 30, 204)], {}, 20, [], NOW, id="204 (not acted on) is delivered too"),
    pytest.param([attempt(1, "a", 30, 503)], {"delivered": frozenset({"a"})}, 20, [], NOW,
                 id="a guid delivered in an earlier pass, or claimed by the endpoint, is never asked for"),
    pytest.param([attempt(1, "a", 30, 503), attempt(2, "a", 20, 503)], {}, 20, [2], NOW,
                 id="the newest failed attempt of a guid is the one asked for, once"),
    pytest.param([attempt(1, "a", 30, 503)], {"redelivered": frozenset({1})}, 20, [], NOW,
                 id="never the same failed attempt twice"),
    pytest.param([attempt(1, "a", 90, 503), attempt(2, "a", 30, 503)],
                 {"redelivered": frozenset({1}), "counts": {"a": 1}}, 20, [], NOW - 30,
                 id="its redelivery failed too: asked for again after a wait, the checkpoint held for it"),
    pytest.param([attempt(1, "a", 900, 503), attempt(2, "a", 70, 503)],
                 {"redelivered": frozenset({1}), "counts": {"a": 1}}, 20, [2], NOW,
                 id="after the wait, the new failed attempt is asked for"),
    pytest.param([attempt(9, "a", 7 * 3600, 503)], {"counts": {"a": len(SPACING)}}, 20, [], NOW,
                 id="a guid whose every redelivery failed is given up"),
    pytest.param([attempt(1, "a", TOO_OLD + 1, 503)], {}, 20, [], NOW, id="too old for GitHub to redeliver"),
    pytest.param([attempt(3, "c", 10, 500), attempt(1, "a", 30, 503), attempt(2, "b", 20, 502)], {}, 2, [1, 2],
                 NOW - 10, id="bounded per pass, oldest first; the checkpoint stays before what was left"),
])
def test_plan(attempts: list[Attempt], memory: dict[str, Any], limit: int, asked: list[int],
              checkpoint: float) -> None:
    decided = plan(attempts, NOW, limit, **memory)
    assert ([a.id for a in decided.redeliver], decided.checkpoint) == (asked, checkpoint)


def test_plan_names_the_guids_it_gives_up() -> None:
    decided = plan([attempt(9, "a", 7 * 3600, 503)], NOW, 20, counts={"a": len(SPACING)})
    assert decided.given_up == ("a",) and decided.redeliver == ()


def test_next_cursor_reads_githubs_link_header() -> None:
    link = ('<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12077215967>; rel="next"')
    assert hook_deliveries.next_cursor(link) == "v1_12077215967"
    assert hook_deliveries.next_cursor(None) is None
    assert hook_deliveries.next_cursor('<https://x/y?cursor=v1_1>; rel="prev"') is None


# -- the forge's delivery log -----------------------------------------------------------------------------
@pytest.fixture
def hooked(forge: ForgeHandle, webhook_receiver: WebhookReceiver) -> tuple[ForgeHandle, WebhookReceiver]:
    assert forge.admin("PUT", "/webhook", {"url": webhook_receiver.url})[0] == 200
    return forge, webhook_receiver


def deliver(forge: ForgeHandle, n: int = 1, event: str = "issues") -> list[str]:
    guids = []
    for i in range(n):
        guid = str(uuid.uuid4())
        payload = {"action": "opened", "issue": {"number": i}, "installation": {"id": 7}, "repository": {"id": 9}}
        status, _ = forge.admin("POST", "/deliver", {"event": event, "payload": payload, "delivery_id": guid})
        assert status == 200
        guids.append(guid)
    return guids


def api(forge: ForgeHandle, method: str, path: str, auth: bool = True, **params: Any) -> httpx.Response:
    headers = {"Accept": "application/vnd.github+json"}
    if auth:
        now = int(time.time())
        token = jwt.encode({"iss": str(forge.app_id), "iat": now - 30, "exp": now + 300}, forge.private_key_pem,
                           algorithm="RS256")
        headers["Authorization"] = f"Bearer {token}"
    return httpx.request(method, forge.api_url + path, headers=headers, params=params, timeout=30)


def test_deliveries_are_listed_newest_first_in_githubs_shape_and_paged_by_cursor(
        hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, _ = hooked
    guids = deliver(forge, 5)
    first = api(forge, "GET", "/app/hook/deliveries", per_page=2)
    assert first.status_code == 200
    items = first.json()
    assert [i["guid"] for i in items] == guids[::-1][:2]
    assert set(items[0]) == {"id", "guid", "delivered_at", "redelivery", "duration", "status", "status_code",
                             "event", "action", "installation_id", "repository_id", "throttled_at"}
    assert (items[0]["status"], items[0]["status_code"], items[0]["event"], items[0]["action"],
            items[0]["installation_id"], items[0]["repository_id"], items[0]["redelivery"]) == \
        ("OK", 202, "issues", "opened", 7, 9, False)
    assert items[0]["id"] > items[1]["id"] and items[0]["delivered_at"].endswith("Z")
    seen = [i["guid"] for i in items]
    link = first.headers["Link"]
    while link:
        cursor = hook_deliveries.next_cursor(link)
        assert cursor is not None and 'rel="next"' in link and "page=" not in link.replace("per_page=", "")
        page = api(forge, "GET", "/app/hook/deliveries", per_page=2, cursor=cursor)
        seen += [i["guid"] for i in page.json()]
        link = page.headers.get("Link", "")
    assert seen == guids[::-1]
    # The app's own client reads them all the same way (githubkit's models, strict).
    read, more = hook_deliveries.newest_first(forge.app_client(), 0.0, 10)
    assert ([a.guid for a in read], more) == (guids[::-1], False)


def test_the_delivery_log_wants_the_app_jwt(hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, _ = hooked
    assert api(forge, "GET", "/app/hook/deliveries", auth=False).status_code == 401
    assert api(forge, "GET", "/app/hook/deliveries", cursor="nonsense").status_code == 400


def test_one_delivery_carries_its_request_and_response(hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 503
    [guid] = deliver(forge)
    [item] = api(forge, "GET", "/app/hook/deliveries").json()
    one = api(forge, "GET", f"/app/hook/deliveries/{item['id']}").json()
    assert (one["guid"], one["status"], one["status_code"]) == (guid, "Invalid HTTP Response: 503", 503)
    assert one["request"]["headers"]["X-GitHub-Delivery"] == guid
    assert one["request"]["payload"]["issue"] == {"number": 0}
    assert one["response"]["payload"] == '{"ok": true}' and one["url"] == receiver.url
    assert api(forge, "GET", "/app/hook/deliveries/1").status_code == 404
    # githubkit's strict model parses it
    parsed = forge.app_client().rest.apps.get_webhook_delivery(item["id"]).parsed_data
    assert (parsed.guid, parsed.status_code) == (guid, 503)


def test_a_redelivery_sends_the_same_guid_again_marked_as_one(hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 503
    [guid] = deliver(forge)
    [failed] = api(forge, "GET", "/app/hook/deliveries").json()
    receiver.status = 202
    answer = api(forge, "POST", f"/app/hook/deliveries/{failed['id']}/attempts")
    assert (answer.status_code, answer.json()) == (202, {})
    forge.running.context.hooks.settle()
    assert [h.headers["X-Github-Delivery"] for h in receiver.received] == [guid, guid]
    assert receiver.received[0].body == receiver.received[1].body
    newest = api(forge, "GET", "/app/hook/deliveries").json()
    assert [(i["guid"], i["status_code"], i["redelivery"]) for i in newest] == [(guid, 202, True), (guid, 503, False)]


def test_deliveries_older_than_three_days_are_not_redelivered(hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 500
    deliver(forge)
    [old] = api(forge, "GET", "/app/hook/deliveries").json()
    forge.running.context.hooks.backdate(old["id"], timedelta(days=3, minutes=1))
    answer = api(forge, "POST", f"/app/hook/deliveries/{old['id']}/attempts")
    assert answer.status_code == 422 and "3 days" in answer.json()["message"]
    assert api(forge, "GET", "/app/hook/deliveries").json() == []  # GitHub keeps 3 days
    assert len(receiver.received) == 1


# -- reconcile against the forge ----------------------------------------------------------------------------
@pytest.fixture
def engine(settings: Settings, hooked: tuple[ForgeHandle, WebhookReceiver], redis_client: Any) -> context.Engine:
    forge, _ = hooked
    return forge.engine(settings, redeliver_max=20)


def sent(receiver: WebhookReceiver) -> Counter[str]:
    return Counter(h.headers["X-Github-Delivery"] for h in receiver.received)


def test_failed_deliveries_are_redelivered_once_each_and_delivered_ones_never(
        engine: context.Engine, hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    hooks = forge.running.context.hooks
    receiver.status = 202
    [fine] = deliver(forge)
    receiver.status = 503
    [healed, lost] = deliver(forge, 2)
    receiver.status = 202
    hooks.redeliver(healed)  # someone pressed "Redeliver": it got through
    first = redelivery.reconcile(engine)
    hooks.settle()
    assert first.asked == (lost,) and sent(receiver) == {fine: 1, healed: 2, lost: 2}
    # A delivered guid whose later attempt failed (a person redelivered it while Clarity was down) is
    # remembered as delivered, even when its 2xx attempt is older than what the next pass reads.
    for earlier in hooks.attempts():
        hooks.backdate(earlier.id, timedelta(hours=2))
    receiver.status = 503
    hooks.redeliver(fine)
    engine.store.r.set(f"{engine.settings.namespace}:redeliver:checkpoint", repr(time.time() - 60))
    again = redelivery.reconcile(engine)
    hooks.settle()
    assert (again.read, again.asked) == (1, ()) and sent(receiver) == {fine: 2, healed: 2, lost: 2}


def test_a_failed_attempt_is_never_asked_for_twice_and_a_failed_redelivery_waits(
        engine: context.Engine, hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 503
    [guid] = deliver(forge)
    assert redelivery.reconcile(engine).asked == (guid,)
    forge.running.context.hooks.settle()  # the redelivery failed too: a new attempt
    assert redelivery.reconcile(engine).asked == ()  # its wait (SPACING[1]) has not passed
    later = redelivery.reconcile(engine, now=time.time() + SPACING[1] + 1)
    forge.running.context.hooks.settle()
    assert later.asked == (guid,) and sent(receiver)[guid] == 3
    attempts = api(forge, "GET", "/app/hook/deliveries").json()
    assert [(a["redelivery"], a["status_code"]) for a in attempts] == [(True, 503), (True, 503), (False, 503)]


def test_a_pass_is_bounded_and_the_next_one_takes_what_was_left(
        engine: context.Engine, hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 502
    guids = deliver(forge, 3)
    receiver.status = 202
    bounded = dataclasses.replace(engine, settings=dataclasses.replace(engine.settings, redeliver_max=2))
    assert redelivery.reconcile(bounded).asked == tuple(guids[:2])  # oldest first
    forge.running.context.hooks.settle()
    assert redelivery.reconcile(bounded).asked == (guids[2],)
    forge.running.context.hooks.settle()
    assert redelivery.reconcile(bounded).asked == ()
    assert sent(receiver) == dict.fromkeys(guids, 2)


def test_a_pass_reads_every_page_since_its_checkpoint(
        engine: context.Engine, hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 503
    [oldest] = deliver(forge)
    receiver.status = 202
    deliver(forge, hook_deliveries.PER_PAGE + 30)  # the failed one is on the second page
    report = redelivery.reconcile(engine)
    assert (report.read, report.asked, report.truncated) == (hook_deliveries.PER_PAGE + 31, (oldest,), False)


def test_only_one_pass_runs_at_a_time(engine: context.Engine, hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 503
    deliver(forge)
    engine.store.r.set(f"{engine.settings.namespace}:redeliver:lock", "another-worker", px=60_000)
    assert redelivery.reconcile(engine).skipped
    assert len(receiver.received) == 1


def test_clarity_deliveries_reconcile_runs_a_pass(engine: context.Engine,
                                                  hooked: tuple[ForgeHandle, WebhookReceiver]) -> None:
    forge, receiver = hooked
    receiver.status = 503
    [guid] = deliver(forge)
    receiver.status = 202
    settings = engine.settings
    env = {"GITHUB_APP_ID": str(settings.app_id), "GITHUB_PRIVATE_KEY": settings.private_key,
           "GITHUB_WEBHOOK_SECRET": "x", "GITHUB_API_URL": settings.github_api_url, "REDIS_URL": settings.redis_url,
           "CLARITY_NAMESPACE": settings.namespace}
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli.main(["deliveries", "reconcile"], env=env) == 0
    assert out.getvalue() == f"{guid}\n" and "asked GitHub to redeliver 1" in err.getvalue()
    forge.running.context.hooks.settle()
    assert sent(receiver)[guid] == 2


# -- the whole product: a command lost to a Redis outage comes back --------------------------------------------
@pytest.fixture
def outage_stack(tmp_path: Path) -> Iterator[tuple[devstack.Stack, AofRedis]]:
    with stack_on_own_redis(tmp_path, "rd", CLARITY_REDELIVER_EVERY="1") as running:
        yield running


@pytest.mark.e2e
def test_a_run_answered_503_while_redis_was_away_is_redelivered_and_runs_exactly_once(
        outage_stack: tuple[devstack.Stack, AofRedis], tmp_path: Path) -> None:
    stack, server = outage_stack
    make_repo(stack, tmp_path, tasks_md(("1", "One", False), ("2", "Two", False)))
    stack.start_worker(role="intake")
    stack.start_worker(role="steps")  # runs the delivery reconciler every second
    store = store_of(stack)

    server.crash()
    try:
        lost = stack.comment(REPO, 1, "/clarity run", user="ada")
    finally:
        server.start()
    assert lost["status_code"] == 503, lost  # not acknowledged: GitHub records a failure, and leaves it there

    ex = wait_settled(stack, timeout=90)
    assert ex.status is ExecutionStatus.COMPLETED, ex.reason
    guid = lost["delivery_id"]
    attempts = [(d["status_code"], d["redelivery"]) for d in stack.admin("GET", "/deliveries")
                if d["delivery_id"] == guid]
    assert attempts == [(503, False), (202, True)]
    # Exactly once: one execution, one 👀, each task committed once; a later pass asks for nothing more.
    assert len(store.executions(repo=REPO)) == 1
    state = stack.admin("GET", "/state")
    assert [r["content"] for r in state["reactions"] if r["comment_id"] == lost["comment"]["id"]] == ["eyes"]
    subjects = git(stack, "log", "--format=%s", "clarity/issue-1").splitlines()
    assert sorted(s for s in subjects if s.startswith("clarity:")) == ["clarity: 1 One", "clarity: 2 Two"]
    engine = context.build(stack.settings)
    assert redelivery.reconcile(engine).asked == ()
    assert len(store.executions(repo=REPO)) == 1
