"""The live feed: one subscription per web process, scoped fan-out, catch-up, resync, polling, controls."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from flask import Flask, request
from rq import Queue
from simple_websocket import Client, ConnectionClosed
from werkzeug.serving import make_server

from app import create_app
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import Store
from dashboard import hub as hub_module
from dashboard.auth import Viewer
from dashboard.hub import Hub, wait_subscribed
from dashboard.live import hub_of

ALICE = Viewer("alice", roles={1: "team_member"})  # sees installation 1 only
BOB = Viewer("bob", roles={2: "viewer"})  # sees installation 2 only
OPERATOR = Viewer("ops", everything=True)
VIEWERS = {"alice": ALICE, "bob": BOB, "ops": OPERATOR}


def pick_viewer() -> Viewer | None:
    """The tests' viewer provider: whoever `?who=` names (nobody when it names no one)."""
    return VIEWERS.get(request.args.get("who", "ops"))


@dataclass
class Server:
    app: Flask
    url: str
    store: Store

    def socket(self, who: str = "ops", hello: dict[str, Any] | None = None) -> Client:
        ws = Client.connect(f"{self.url.replace('http', 'ws')}/live?who={who}")
        ws.send(json.dumps(hello or {}))
        first = json.loads(ws.receive(timeout=5))
        assert first["type"] == "hello"
        return ws


@pytest.fixture
def server(settings: Settings, redis_client: redis.Redis) -> Iterator[Server]:
    """The real app on a threaded werkzeug server (as devstack serves it), viewers picked by `?who=`."""
    app = create_app(settings)
    app.extensions["clarity.viewer_provider"] = pick_viewer
    web = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(app, f"http://127.0.0.1:{web.server_port}", app.extensions["clarity.store"])
    finally:
        hub_of(app).stop()
        web.shutdown()
        web.server_close()


def new_execution(store: Store, installation: int, repo: str = "acme/widgets") -> Execution:
    return store.create(Execution(id="", installation_id=installation, repo=repo, account=f"acct{installation}",
                                  issue_number=1, is_pull_request=False, branch="clarity/issue-1",
                                  base_branch="main", requester="ada"), "test")


def receive_events(ws: Client, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next `count` events (messages with a kind), skipping snapshots and pings."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        raw = ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        if raw is None:
            break
        message = json.loads(raw)
        if "kind" in message:
            events.append(message)
    return events


def numsub(store: Store) -> int:
    return int(dict(store.r.pubsub_numsub(store.events_channel))[store.events_channel])


def wait_for_subscribers(server: Server, count: int) -> None:
    deadline = time.monotonic() + 5
    while hub_of(server.app).count() < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hub_of(server.app).count() == count
    assert wait_subscribed(hub_of(server.app))


def test_every_socket_of_a_process_gets_every_event_over_one_redis_subscription(server: Server) -> None:
    sockets = [server.socket() for _ in range(12)]
    wait_for_subscribers(server, 12)
    execution = new_execution(server.store, 1)
    for n in range(5):
        server.store.log(execution.id, f"line {n}")
    for ws in sockets:
        events = receive_events(ws, 6)
        assert [e["kind"] for e in events] == ["execution.created"] + ["log"] * 5
        assert [e["message"] for e in events[1:]] == [f"line {n}" for n in range(5)]
        assert all(e["id"] for e in events)  # each carries its stream id, the cursor of a catch-up
    assert numsub(server.store) == 1
    for ws in sockets:
        ws.close()


def test_a_viewer_never_receives_events_of_an_installation_they_do_not_see(server: Server) -> None:
    alice, bob = server.socket("alice"), server.socket("bob")
    wait_for_subscribers(server, 2)
    theirs = new_execution(server.store, 2, "bobco/app")
    server.store.log(theirs.id, "secret plans of installation 2")
    mine = new_execution(server.store, 1)
    server.store.log(mine.id, "alice's line")
    got = receive_events(alice, 2)
    assert [(e["execution"], e["kind"]) for e in got] == [(mine.id, "execution.created"), (mine.id, "log")]
    assert {e["installation"] for e in got} == {1}
    assert [(e["execution"], e["installation"]) for e in receive_events(bob, 2)] == [(theirs.id, 2)] * 2
    assert receive_events(alice, 1, timeout=0.5) == []  # nothing of installation 2 came after either


def test_a_dropped_socket_catches_up_on_every_event_it_missed(server: Server) -> None:
    execution = new_execution(server.store, 1)
    ws = server.socket("alice", {"cursors": {execution.id: ""}})
    server.store.log(execution.id, "before the drop")
    seen = receive_events(ws, 2)
    assert [e["kind"] for e in seen] == ["execution.created", "log"]
    ws.close()
    server.store.log(execution.id, "missed 1")
    server.store.transition(execution.id, ExecutionStatus.INITIALIZING, "engine", "started")
    server.store.log(execution.id, "missed 2")
    again = server.socket("alice", {"cursors": {execution.id: seen[-1]["id"]}})
    snapshot = json.loads(again.receive(timeout=5))
    assert snapshot["type"] == "snapshot" and snapshot["execution"]["status"] == "initializing"
    caught = receive_events(again, 3)
    assert [(e["kind"], e.get("message") or e.get("to")) for e in caught] == [
        ("log", "missed 1"), ("execution.status", "initializing"), ("log", "missed 2")]
    server.store.log(execution.id, "live again")
    assert [e["message"] for e in receive_events(again, 1)] == ["live again"]  # and no repeats before it


def test_catch_up_refuses_executions_of_other_installations(server: Server) -> None:
    theirs = new_execution(server.store, 2, "bobco/app")
    server.store.log(theirs.id, "installation 2 only")
    ws = server.socket("alice", {"cursors": {theirs.id: ""}, "since": 0})
    assert ws.receive(timeout=0.5) is None


@pytest.mark.slow
def test_a_slow_subscriber_is_dropped_and_never_holds_back_the_hub_or_the_others(store: Store) -> None:
    hub = Hub(store.r, store.events_channel)
    slow, quick = hub.subscribe(OPERATOR, queue_size=20), hub.subscribe(OPERATOR)
    received: list[hub_module.Event] = []

    def drain() -> None:
        while len(received) < 200:
            received.append(quick.inbox.get(timeout=10))

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        assert wait_subscribed(hub)
        execution = new_execution(store, 1)
        for n in range(199):
            store.log(execution.id, f"line {n}")
        reader.join(10)
        assert len(received) == 200
        assert slow.lagging.is_set() and slow.inbox.qsize() == 20  # it got what fitted, then was cut off
        assert numsub(store) == 1
    finally:
        hub.stop()


def test_a_socket_that_fell_behind_is_told_to_resync_and_closed(server: Server) -> None:
    ws = server.socket()
    wait_for_subscribers(server, 1)
    hub_of(server.app).resync_all()
    assert json.loads(ws.receive(timeout=5)) == {"type": "resync"}
    with pytest.raises(ConnectionClosed):
        ws.receive(timeout=5)
    assert ws.close_reason == 4000


@pytest.mark.slow
def test_past_the_socket_cap_a_page_is_told_to_poll(server: Server) -> None:
    cap = server.app.extensions["clarity.settings"].live_max_sockets
    sockets = [server.socket() for _ in range(cap)]
    wait_for_subscribers(server, cap)
    extra = Client.connect(f"{server.url.replace('http', 'ws')}/live")
    assert json.loads(extra.receive(timeout=5)) == {"type": "poll"}
    with pytest.raises(ConnectionClosed):
        extra.receive(timeout=5)
    assert extra.close_reason == 4001
    for ws in sockets:
        ws.close()


def test_polling_returns_what_changed_since_the_cursor(server: Server) -> None:
    client = server.app.test_client()
    mine, theirs = new_execution(server.store, 1), new_execution(server.store, 2, "bobco/app")
    first = client.get("/live/poll?who=alice&since=0").get_json()
    assert [m["execution"]["id"] for m in first["messages"]] == [mine.id]  # never installation 2
    time.sleep(2.1)  # past the slack
    quiet = client.get(f"/live/poll?who=alice&since={time.time()}").get_json()
    assert quiet["messages"] == []
    server.store.update(mine.id, current_task="1.1", tasks_total=3)
    server.store.log(mine.id, "working on 1.1")
    changed = client.get(f"/live/poll?who=alice&since={quiet['time']}").get_json()
    assert [(m["type"], m["execution"]["currentTask"]) for m in changed["messages"]] == [("snapshot", "1.1")]
    cursor = server.store.log_lines(mine.id)[0]["id"]
    events = client.get(f"/live/poll?who=alice&execution={mine.id}&after={cursor}").get_json()["messages"]
    assert [m.get("message") for m in events if "kind" in m] == ["working on 1.1"]
    assert client.get(f"/live/poll?who=alice&execution={theirs.id}").get_json()["messages"] == []
    assert client.get("/live/poll?who=nobody").status_code == 401
    assert client.get("/live/poll?since=soon").status_code == 400


def test_overview_groups_by_customer_and_repository_and_counts_what_the_viewer_sees(server: Server) -> None:
    new_execution(server.store, 1, "acme/widgets")
    new_execution(server.store, 1, "acme/gears")
    running = new_execution(server.store, 1, "acme/gears")
    server.store.transition(running.id, ExecutionStatus.INITIALIZING, "engine", "started")
    new_execution(server.store, 2, "bobco/app")
    page = server.app.test_client().get("/?who=alice").get_data(as_text=True)
    assert "acct1" in page and "bobco/app" not in page and "acct2" not in page
    assert page.index('data-repo="acme/gears"') < page.index('data-repo="acme/widgets"')
    assert 'data-count="queued"' in page and '<strong class="n">2</strong>' in page
    assert "waiting for a worker" in page and "min left" not in page  # 0/0: its list not read yet (issue 15)
    assert server.app.test_client().get("/?who=nobody").status_code == 401


def test_controls_show_and_work_only_for_team_members(server: Server, settings: Settings) -> None:
    execution = new_execution(server.store, 1)
    client = server.app.test_client()
    as_member = client.get(f"/executions/{execution.id}?who=alice").get_data(as_text=True)
    assert f'action="/executions/{execution.id}/actions/stop"' in as_member
    assert 'name="csrf_token"' in as_member
    resume = as_member[as_member.index("/actions/resume"):]
    assert resume[:resume.index(">")].rstrip().endswith("hidden")  # queued: nothing to resume yet
    operator = client.get(f"/executions/{execution.id}?who=ops").get_data(as_text=True)
    assert "/actions/" not in operator  # sees everything, with the viewer role only
    token = re.search(r'name="csrf_token" value="([^"]+)"', as_member)
    assert token, "the forms carry the session's CSRF token"
    form = {"csrf_token": token.group(1)}
    assert client.post(f"/executions/{execution.id}/actions/stop?who=alice").status_code == 400  # no token
    assert client.post(f"/executions/{execution.id}/actions/stop?who=ops", data=form).status_code == 403
    assert client.post(f"/executions/{execution.id}/actions/stop?who=bob", data=form).status_code == 404
    assert client.get(f"/executions/{execution.id}?who=bob").status_code == 404
    pressed = client.post(f"/executions/{execution.id}/actions/stop?who=alice", data=form)
    assert pressed.status_code == 303 and re.search(rf"/executions/{execution.id}\?requested=stop&at=\d+-\d+$",
                                                    pressed.location)
    jobs = Queue(settings.intake_queue, connection=redis.Redis.from_url(settings.redis_url)).get_jobs()
    assert [(j.func_name, j.args) for j in jobs] == [
        ("jobs.control_jobs.dashboard_action", (execution.id, "stop", "alice"))]
    assert client.post(f"/executions/{execution.id}/actions/explode?who=alice", data=form).status_code == 404
