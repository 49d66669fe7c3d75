"""The Queue, Resources and Audit pages: the rows each shows, scoping, roles, re-prioritising, the nav.

Requests go to the real app (`create_app`) over Flask's test client on a real Redis; the viewer comes
through the viewer contract (`?who=` picks one, as in tests/test_live.py). Re-prioritising goes through
the real engine port (jobs.api_engine → jobs.control → jobs.scheduler); GitHub is unreachable here, so
the issue comment the engine writes is only logged (tests/test_browser_queue.py runs it with the forge).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask, request
from flask.testing import FlaskClient
from rq import Queue, Worker
from simple_websocket import Client
from werkzeug.serving import make_server

from app import create_app
from clarity import resources
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import Store
from dashboard import audit
from dashboard.auth import Viewer
from dashboard.live import hub_of

A, B = 101, 202  # two customers' installations
VIEWERS = {
    "ada": Viewer("ada", {A: "manager"}),
    "tom": Viewer("tom", {A: "team_member"}),
    "vic": Viewer("vic", {A: "viewer"}),
    "bob": Viewer("bob", {B: "manager"}),
    "ops": Viewer("ops", everything=True),
}
CSRF = "test-csrf-token"
S = ExecutionStatus


def pick_viewer() -> Viewer | None:
    """Whoever `?who=` names; nobody when it names no one."""
    return VIEWERS.get(request.args.get("who", ""))


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    app = create_app(settings)
    app.extensions["clarity.viewer_provider"] = pick_viewer
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = CSRF  # as a page would have made it
    return client


def stored(store: Store, installation: int, repo: str, status: S = S.QUEUED, **fields: Any) -> Execution:
    return store.create(Execution(id="", installation_id=installation, repo=repo, account=repo.split("/")[0],
                                  issue_number=1, is_pull_request=False, branch="clarity/issue-1",
                                  base_branch="main", requester="ada", status=status, **fields), actor="ada")


def ready(store: Store, installation: int, repo: str, priority: int = 5) -> Execution:
    """An execution waiting for a worker (started, its repository's lease free, in the ready set)."""
    execution = stored(store, installation, repo, S.INITIALIZING, priority=priority)
    store.ready.add(execution.id, priority, installation)
    return execution


def rows(html: str, table_id: str | None = None) -> list[str]:
    """Execution ids of the page's rows, in page order (optionally only in one section)."""
    if table_id is not None:
        html = html.split(f'id="{table_id}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<tr data-key="(?:execution )?([^"]+)" data-execution=', html)


def prioritise(client: FlaskClient, execution_id: str, priority: str, who: str = "ada",
               token: str | None = CSRF) -> Any:
    form = {"priority": priority, **({"csrf_token": token} if token else {})}
    return client.post(f"/queue/{execution_id}/priority?who={who}", data=form)


# -- the queue ------------------------------------------------------------------------------------
def test_the_queue_shows_the_viewers_waiting_executions_with_position_priority_and_start(
        client: FlaskClient, store: Store) -> None:
    theirs = ready(store, B, "globex/gears", priority=9)
    first, second = ready(store, A, "acme/widgets", 7), ready(store, A, "acme/bolts", 3)
    holder = stored(store, A, "acme/widgets", S.INITIALIZING)
    store.acquire_lease("acme/widgets", holder.id, 60)
    line = stored(store, A, "acme/widgets")
    store.enqueue_waiting("acme/widgets", line.id)
    html = client.get("/queue?who=vic").get_data(as_text=True)
    assert rows(html, "for-worker") == [first.id, second.id]
    assert rows(html, "for-repository") == [line.id]
    assert theirs.id not in html and "globex" not in html
    first_row = html.split(f'<tr data-key="{first.id}"', 1)[1].split("</tr>", 1)[0]
    # Positions count everyone waiting (B's priority 9 goes first), as the API's do.
    assert 'data-field="position">2</td>' in first_row
    assert '<span data-field="priority">7</span>' in first_row
    assert "in about 2 min" in first_row  # one worker slot ahead of it, at the default task duration
    assert 'data-field="status-word">initializing</span>' in first_row  # the word, not colour alone
    line_row = html.split(f'<tr data-key="{line.id}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-field="position">1</td>' in line_row and "acme/widgets" in line_row
    assert 'name="priority"' not in html  # a viewer re-prioritises nothing


def test_a_manager_reprioritises_through_the_engine_and_the_queue_reorders(client: FlaskClient,
                                                                          store: Store) -> None:
    one, two, three = (ready(store, A, f"acme/r{n}") for n in range(3))
    page = client.get("/queue?who=ada").get_data(as_text=True)
    assert rows(page, "for-worker") == [one.id, two.id, three.id]
    assert page.count('name="priority"') == 3 and f'id="priority-{three.id}"' in page
    assert f'<label for="priority-{three.id}" class="visually-hidden">Priority of {three.id}' in page

    response = prioritise(client, three.id, "9")
    assert response.status_code == 303 and response.headers["Location"] == f"/queue?prioritised={three.id}"
    after = client.get(response.headers["Location"] + "&who=ada").get_data(as_text=True)
    assert rows(after, "for-worker") == [three.id, one.id, two.id]
    assert f"{three.id} (acme/r2) now has priority 9." in after
    assert store.get(three.id).priority == 9
    assert [e.priority for e in store.ready.entries() if e.execution_id == three.id] == [9]
    # The engine's own path (jobs.scheduler.reprioritise) left its marks: the audit record and the log line.
    record = next(r for r in store.audit(20) if r["kind"] == "execution.reprioritised")
    assert (record["execution"], record["actor"], record["from"], record["to"]) == (three.id, "ada", 5, 9)
    assert any("priority 5 → 9 by @ada" in line.get("message", "") for line in store.log_lines(three.id))


def test_a_team_member_cannot_reprioritise_and_sees_no_priority_inputs(client: FlaskClient, store: Store) -> None:
    ex = ready(store, A, "acme/widgets")
    assert 'name="priority"' not in client.get("/queue?who=tom").get_data(as_text=True)
    response = prioritise(client, ex.id, "9", who="tom")
    assert response.status_code == 403
    assert "needs the manager role in acme; yours is team_member" in response.get_data(as_text=True)
    assert store.get(ex.id).priority == 5
    assert not [r for r in store.audit(20) if r["kind"] == "execution.reprioritised"]


def test_another_installations_execution_cannot_be_reprioritised_or_seen(client: FlaskClient,
                                                                        store: Store) -> None:
    theirs = ready(store, B, "globex/gears")
    assert prioritise(client, theirs.id, "9", who="ada").status_code == 404  # as if it did not exist
    assert prioritise(client, "no-such-execution", "9", who="ada").status_code == 404
    assert store.get(theirs.id).priority == 5
    assert theirs.id in client.get("/queue?who=bob").get_data(as_text=True)


@pytest.mark.parametrize(("value", "status"), [("11", 400), ("0", 400), ("high", 400), ("", 400)])
def test_a_priority_outside_1_to_10_is_refused_with_the_reason(client: FlaskClient, store: Store, value: str,
                                                              status: int) -> None:
    ex = ready(store, A, "acme/widgets")
    response = prioritise(client, ex.id, value)
    assert response.status_code == status
    assert "must be a whole number from 1 to 10" in response.get_data(as_text=True)
    assert 'role="alert"' in response.get_data(as_text=True)
    assert store.get(ex.id).priority == 5


def test_the_engine_refusing_is_shown_on_the_page(client: FlaskClient, store: Store) -> None:
    done = stored(store, A, "acme/widgets", S.STOPPED)
    response = prioritise(client, done.id, "8")
    assert response.status_code == 409
    assert "is stopped: it waits for nobody, so its priority cannot change" in response.get_data(as_text=True)
    assert store.get(done.id).priority == 5


def test_reprioritising_needs_the_sessions_csrf_token(client: FlaskClient, store: Store) -> None:
    ex = ready(store, A, "acme/widgets")
    assert prioritise(client, ex.id, "9", token=None).status_code == 400
    assert prioritise(client, ex.id, "9", token="forged").status_code == 403
    assert store.get(ex.id).priority == 5


# -- signed out -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/queue", "/resources", "/audit"])
def test_nobody_signed_in_gets_401(client: FlaskClient, path: str) -> None:
    assert client.get(f"{path}?who=nobody").status_code == 401


def test_nobody_signed_in_cannot_reprioritise(client: FlaskClient, store: Store) -> None:
    ex = ready(store, A, "acme/widgets")
    assert prioritise(client, ex.id, "9", who="nobody").status_code == 401
    assert store.get(ex.id).priority == 5


@pytest.mark.parametrize("path", ["/queue", "/resources", "/audit"])
def test_with_sign_in_on_pages_redirect_to_login_and_scripts_get_401(settings: Settings, path: str) -> None:
    client = create_app(dataclasses.replace(settings, dashboard_auth="github")).test_client()
    page = client.get(path)
    assert page.status_code == 302 and page.headers["Location"] == f"/login?next=%2F{path[1:]}"
    assert client.get(path, headers={"Accept": "application/json"}).status_code == 401


# -- resources ------------------------------------------------------------------------------------
@pytest.fixture
def workers(redis_client: redis.Redis, settings: Settings) -> Iterator[list[Worker]]:
    """Steps workers registered in RQ (as `clarity worker --role steps` registers them)."""
    raw = redis.Redis.from_url(settings.redis_url)
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.register_death()
        raw.delete(worker.key)


def test_resources_show_workers_running_executions_and_the_host_scoped_to_the_viewer(
        client: FlaskClient, store: Store, settings: Settings, workers: list[Worker]) -> None:
    raw = redis.Redis.from_url(settings.redis_url)
    worker = Worker([Queue(f"{settings.steps_queue}:p{p}", connection=raw) for p in range(10, 0, -1)],
                    connection=raw, name=f"steps-{settings.namespace}-{uuid.uuid4().hex[:6]}")
    worker.register_birth()
    workers.append(worker)
    mine = stored(store, A, "acme/widgets", S.TASK_EXECUTING, current_task="1.2")
    theirs = stored(store, B, "globex/gears", S.TASK_EXECUTING)
    idle = stored(store, A, "acme/bolts", S.AUTONOMOUS)  # active, but no step runs it: no sample
    now = time.time()
    resources.record(store.r, store.namespace, mine.id, resources.Usage(12.5, 64 * 2**20, 3, now, "worker-a"))
    resources.record(store.r, store.namespace, theirs.id, resources.Usage(99.0, 2**30, 9, now, "worker-b"))

    html = client.get("/resources?who=vic").get_data(as_text=True)
    assert rows(html) == [mine.id] and theirs.id not in html and "worker-b" not in html and idle.id not in html
    row = html.split(f'data-execution="{mine.id}"', 1)[1].split("</tr>", 1)[0]
    for field, text in (("cpu", "12.5"), ("memory", "64.0"), ("processes", "3"), ("host", "worker-a"),
                        ("task", "1.2"), ("status-word", "task-executing")):
        assert f'data-field="{field}">{text}<' in row, field
    assert f'data-worker="{worker.name}"' in html and '<strong data-field="slots">0 of 1</strong>' in html
    assert re.search(r'data-field="host-cpu">\d+\.\d %<', html)
    assert re.search(r'data-field="host-memory">\d+ of [1-9]\d* MiB<', html)
    assert f'data-execution="{theirs.id}"' in client.get("/resources?who=bob").get_data(as_text=True)
    # A sample lives only while the step keeps writing it.
    assert store.r.ttl(resources.usage_key(store.namespace, mine.id)) <= resources.USAGE_TTL


# -- audit ----------------------------------------------------------------------------------------
def old_record(store: Store, when: float, **fields: Any) -> None:
    """An audit record written at `when` (the stream id carries the time, as the store's XADD does)."""
    body = {"actor": "engine", "time": when, **fields}
    store.r.xadd(f"{store.namespace}:audit", {"json": json.dumps(body)}, id=f"{int(when * 1000)}-0")


def test_audit_shows_only_the_viewers_installations_and_filters(client: FlaskClient, store: Store) -> None:
    old_record(store, 1_704_067_200, kind="execution.created", repo="acme/widgets", installation=A,
               execution="old-a")  # 2024-01-01 00:00 UTC
    old_record(store, 1_704_070_800, kind="execution.created", repo="globex/gears", installation=B,
               execution="old-b")
    mine = stored(store, A, "acme/widgets")
    theirs = stored(store, B, "globex/gears")
    ready(store, A, "acme/bolts")
    store.audit_event(mine, "task.override", "ada", {"task": "1.2", "outcome": "done"})
    store.audit_event(theirs, "task.override", "bob", {"task": "3", "outcome": "skipped"})

    html = client.get("/audit?who=vic").get_data(as_text=True)
    assert mine.id in html and "old-a" in html and "acme/bolts" in html
    assert theirs.id not in html and "old-b" not in html and "globex" not in html and "bob" not in html
    assert set(re.findall(r'<tr data-record="[^"]+" data-installation="(\d*)"', html)) == {str(A)}

    def shown(query: str, who: str = "vic") -> list[str]:
        page = client.get(f"/audit?who={who}&{query}").get_data(as_text=True)
        return [f"{kind} {repo}" for kind, repo in re.findall(
            r'data-field="kind">([^<]*)</td><td [^>]*data-field="repo">([^<]*)</td>', page)]

    assert shown("actor=ada&kind=task.override") == ["task.override acme/widgets"]
    assert shown("actor=@ADA&kind=task") == ["task.override acme/widgets"]  # a family, any case, "@" allowed
    assert shown("repo=acme/bolts") == ["execution.created acme/bolts"]
    assert shown("repo=acme&kind=execution.created") == [
        "execution.created acme/bolts", "execution.created acme/widgets", "execution.created acme/widgets"]
    assert shown("from=2024-01-01T00:00&to=2024-01-01T12:00") == ["execution.created acme/widgets"]
    assert shown("from=2024-01-01T00:00&to=2024-01-01T12:00", who="ops") == [
        "execution.created globex/gears", "execution.created acme/widgets"]
    assert shown(f"installation={B}", who="vic") == []  # naming an installation does not widen the scope
    assert shown(f"installation={B}&kind=task.override", who="ops") == ["task.override globex/gears"]


def test_audit_pages_through_older_records(client: FlaskClient, store: Store) -> None:
    ex = stored(store, A, "acme/widgets")
    for n in range(audit.PAGE_ROWS + 9):
        store.audit_event(ex, "task.override", "ada", {"task": str(n), "outcome": "done"})
    first = client.get("/audit?who=vic&kind=task.override").get_data(as_text=True)
    assert first.count("<tr data-record=") == audit.PAGE_ROWS
    assert "<dt>task</dt><dd>58</dd>" in first and "<dt>task</dt><dd>9</dd>" in first  # each field named
    older = re.search(r'href="(/audit\?[^"]+)" rel="next"', first)
    assert older is not None and "kind=task.override" in older.group(1)
    second = client.get(older.group(1).replace("&amp;", "&") + "&who=vic").get_data(as_text=True)
    assert second.count("<tr data-record=") == 9
    assert "<dt>task</dt><dd>8</dd>" in second and "<dt>task</dt><dd>9</dd>" not in second
    assert 'rel="next"' not in second


def test_a_sparse_filter_stops_after_the_scan_cap_and_continues_from_there(store: Store) -> None:
    mine, theirs = stored(store, A, "acme/widgets"), stored(store, B, "globex/gears")
    for n in range(30):
        store.audit_event(theirs, "task.override", "bob", {"task": str(n)})
    key, who = f"{store.namespace}:audit", VIEWERS["vic"]
    found = audit.page(store.r, key, who, audit.AuditQuery(), limit=5, scan=10)
    assert (found.rows, found.scanned) == ([], 10) and found.next_before
    rest = audit.page(store.r, key, who, audit.AuditQuery(before=found.next_before), limit=5, scan=100)
    assert [r.execution for r in rest.rows] == [mine.id] and rest.next_before == ""


def test_audit_filters_that_cannot_be_read_are_400_naming_them(client: FlaskClient) -> None:
    response = client.get("/audit?who=vic&from=yesterday&installation=acme")
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "from must be a date and time like 2026-01-31T14:05, got &#39;yesterday&#39;" in text
    assert "installation must be a number, got &#39;acme&#39;" in text


# -- the nav --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "current"), [("/", "Overview"), ("/queue", "Queue"), ("/resources", "Resources"),
                                               ("/audit", "Audit")])
def test_the_nav_marks_the_current_page(client: FlaskClient, path: str, current: str) -> None:
    html = client.get(f"{path}?who=vic").get_data(as_text=True)
    nav = html.split('<nav aria-label="Dashboard"', 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'aria-current="page">([^<]+)<', nav) == [current]
    assert re.findall(r'<a href="([^"]+)"', nav) == ["/", "/queue", "/resources", "/audit", "/insights"]


# -- the socket -----------------------------------------------------------------------------------
def test_a_reprioritise_reaches_the_socket_of_its_installation_only(app: Flask, client: FlaskClient,
                                                                    store: Store) -> None:
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"ws://127.0.0.1:{web.server_port}/live"
    sockets: dict[str, Client] = {}
    try:
        for who in ("vic", "bob"):
            sockets[who] = Client.connect(f"{url}?who={who}")
            sockets[who].send("{}")
            assert json.loads(sockets[who].receive(timeout=5))["type"] == "hello"
        deadline = time.monotonic() + 5
        while hub_of(app).count() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        ex = ready(store, A, "acme/widgets")
        assert prioritise(client, ex.id, "8").status_code == 303
        kinds: list[str | None] = []
        while "execution.reprioritised" not in kinds:
            raw = sockets["vic"].receive(timeout=5)
            assert raw is not None, f"vic's socket got {kinds}"
            kinds.append(json.loads(raw).get("kind"))
        assert sockets["bob"].receive(timeout=0.5) is None  # nothing of installation A, not even a ping
    finally:
        for ws in sockets.values():
            ws.close()
        hub_of(app).stop()
        web.shutdown()
        web.server_close()
