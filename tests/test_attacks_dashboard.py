"""Attacks on the dashboard's side of the tenant boundary, each through the real app (`create_app`).

An anonymous visitor of the documented set-up, a stolen session cookie, a page of another site that frames
the dashboard or opens its live socket, garbage in query strings, and a hostile check that plants links and
FIFOs in its artifacts folder (or keeps swapping them) must never read another customer's data, keep a
session alive past logout, or wedge the web process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from simple_websocket import Client, ConnectionClosed
from simple_websocket import ConnectionError as HandshakeRefused
from werkzeug.serving import make_server

import cli
from app import create_app
from clarity import artifacts
from clarity.apitokens import ApiTokens
from clarity.settings import Settings
from clarity.store import Store
from dashboard import live
from dashboard.live import hub_of
from tests import test_auth
from tests.conftest import WEBHOOK_SECRET
from tests.conftest_forge import ForgeHandle
from tests.test_auth import session_of, sign_in, signin_settings

TEMPLATES = Path(__file__).resolve().parents[1] / "dashboard" / "templates"
PUBLIC = "http://clarity.test"
world = test_auth.world  # the fixture: customers A and B on the forge, one execution and artifact each


def compose_env(settings: Settings) -> dict[str, str]:
    """What the README's compose `.env` holds: the app, Redis and a data folder; no OAuth client."""
    return {"GITHUB_APP_ID": str(settings.app_id), "GITHUB_PRIVATE_KEY": settings.private_key,
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "REDIS_URL": settings.redis_url,
            "CLARITY_NAMESPACE": settings.namespace, "CLARITY_DATA_DIR": str(settings.data_dir)}


def secret_paths(world: dict[str, Any]) -> list[str]:
    """Everything an anonymous visitor of the old default could read: both customers' data."""
    ex_a, ex_b = world["ex_a"].id, world["ex_b"].id
    return ["/", f"/executions/{ex_a}", f"/executions/{ex_a}/artifacts", f"/executions/{ex_a}/artifacts/1/prompt.md",
            f"/api/executions/{ex_b}", "/api/devteam/executions", "/api/devteam/executions/dashboard",
            f"/api/devteam/executions/{ex_b}/progress", f"/api/devteam/executions/{ex_b}/artifacts",
            "/api/devteam/history/executions", "/api/devteam/resources/queue", "/live/poll?since=0",
            f"/live/poll?execution={ex_a}", "/queue", "/resources", "/audit", "/insights"]


# 1. closed by default ------------------------------------------------------------------------------

def test_the_documented_setup_without_sign_in_shows_nobody_any_customers_data(
        settings: Settings, world: dict[str, Any]) -> None:
    configured = Settings.from_env(compose_env(settings))
    assert configured.dashboard_auth == "closed"
    client = create_app(configured).test_client()
    for path in secret_paths(world):
        answer = client.get(path)
        body = answer.get_data(as_text=True)
        assert answer.status_code in (401, 503), (path, answer.status_code)
        for leak in (world["ex_a"].id, world["ex_b"].id, "alpha/app", "beta/svc", "prompt of"):
            assert leak not in body, (path, leak)


def test_a_closed_dashboard_says_why_and_how_to_open_it(settings: Settings, world: dict[str, Any]) -> None:
    client = create_app(Settings.from_env(compose_env(settings))).test_client()
    page = client.get("/")
    text = page.get_data(as_text=True)
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "sign-in is not configured" in text
    assert "CLARITY_GITHUB_CLIENT_ID" in text and "CLARITY_DASHBOARD_AUTH=open" in text
    assert client.get("/login").status_code == 503  # no OAuth client: nothing to send people to
    api = client.get("/api/devteam/executions")
    assert api.status_code == 401 and "sign-in is not configured" in api.get_json()["message"]
    assert api.headers["WWW-Authenticate"] == 'Bearer realm="clarity"'


def test_a_closed_dashboard_still_answers_probes_metrics_webhooks_and_api_tokens(
        settings: Settings, world: dict[str, Any], redis_url: str, namespace: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    client = create_app(Settings.from_env(compose_env(settings))).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)  # no worker here: "not ready", but answered
    hook = client.post("/webhooks", data=b"{}", headers={"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d1"})
    assert hook.status_code == 401  # its own HMAC check, not the dashboard's refusal
    status = cli.main(["tokens", "create", "--role", "viewer", "--installation", str(world["a"])],
                      env={"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace})
    token = capsys.readouterr().out.strip()
    assert status == 0
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/executions/{world['ex_a'].id}", headers=bearer).status_code == 200
    assert client.get(f"/api/executions/{world['ex_b'].id}", headers=bearer).status_code == 404


def test_an_open_dashboard_must_be_asked_for_and_says_so_in_the_log(
        settings: Settings, world: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    configured = Settings.from_env({**compose_env(settings), "CLARITY_DASHBOARD_AUTH": "open"})
    assert configured.dashboard_auth == "open"
    caplog.set_level(logging.WARNING)
    client = create_app(configured).test_client()
    assert "CLARITY_DASHBOARD_AUTH=open" in caplog.text and "every installation" in caplog.text
    text = client.get("/").get_data(as_text=True)
    assert world["ex_a"].id in text and world["ex_b"].id in text


def test_an_open_dashboard_answers_only_its_own_host_so_dns_rebinding_reads_nothing(
        settings: Settings, world: dict[str, Any]) -> None:
    client = create_app(replace(settings, dashboard_auth="open", public_url=PUBLIC)).test_client()
    for host in ("clarity.test", "127.0.0.1:8000", "localhost", "[::1]:8000"):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
    for path in secret_paths(world):
        answer = client.get(path, headers={"Host": "rebound.evil.example:8000"})
        assert answer.status_code == 421, path
        assert world["ex_a"].id not in answer.get_data(as_text=True)
    assert client.get("/healthz", headers={"Host": "rebound.evil.example"}).status_code == 200


def test_compose_publishes_the_web_port_on_loopback_only() -> None:
    compose = (Path(__file__).resolve().parents[1] / "compose.yaml").read_text()
    assert '"127.0.0.1:8000:8000"' in compose
    assert '"8000:8000"' not in compose


# 2. sessions end at logout, server-side ---------------------------------------------------------------

def test_a_session_cookie_copied_before_logout_is_refused_after_it(
        settings: Settings, forge: ForgeHandle, world: dict[str, Any]) -> None:
    web = create_app(signin_settings(settings, forge))
    client = web.test_client()
    sign_in(client, forge, "alice")
    stolen = client.get_cookie("clarity_session")
    assert stolen is not None and client.get("/").status_code == 200
    assert client.post("/logout", headers={"X-CSRF-Token": session_of(client)["csrf"]}).status_code == 302
    replay = web.test_client()
    replay.set_cookie("clarity_session", stolen.value)
    page = replay.get("/")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    assert replay.get(f"/api/executions/{world['ex_a'].id}").status_code == 401
    assert replay.get(f"/executions/{world['ex_a'].id}/artifacts/1/prompt.md").status_code == 302


def test_revoking_a_persons_sessions_ends_all_of_them_and_nobody_elses(
        settings: Settings, forge: ForgeHandle, world: dict[str, Any], redis_url: str,
        namespace: str, capsys: pytest.CaptureFixture[str]) -> None:
    web = create_app(signin_settings(settings, forge))
    laptop, phone, bob = web.test_client(), web.test_client(), web.test_client()
    for client, login in ((laptop, "alice"), (phone, "alice"), (bob, "bob")):
        sign_in(client, forge, login)
        assert client.get("/").status_code == 200
    status = cli.main(["sessions", "revoke", "alice"], env={"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace})
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "ended 2 dashboard session(s) of alice" in out
    assert laptop.get("/").status_code == 302 and phone.get("/").status_code == 302
    assert bob.get("/").status_code == 200


def test_a_live_socket_opened_with_a_session_closes_when_the_session_is_revoked(
        settings: Settings, forge: ForgeHandle, world: dict[str, Any], redis_url: str, namespace: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "RECHECK", 0.3)  # 30 s in production
    app = create_app(signin_settings(settings, forge))
    web = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        client = app.test_client()
        sign_in(client, forge, "alice")
        cookie = client.get_cookie("clarity_session")
        assert cookie is not None
        ws = Client.connect(f"ws://127.0.0.1:{web.server_port}/live",
                            headers={"Cookie": f"clarity_session={cookie.value}"})
        ws.send("{}")
        assert json.loads(ws.receive(timeout=5))["type"] == "hello"
        assert cli.main(["sessions", "revoke", "alice"], env={"REDIS_URL": redis_url, "CLARITY_NAMESPACE": namespace}) == 0
        deadline = time.monotonic() + 5
        with pytest.raises(ConnectionClosed):
            while time.monotonic() < deadline:
                ws.receive(timeout=0.5)
        assert time.monotonic() < deadline
    finally:
        hub_of(app).stop()
        web.shutdown()
        web.server_close()


# 3. headers ---------------------------------------------------------------------------------------

def test_pages_carry_a_csp_without_inline_script_and_refuse_to_be_framed(
        settings: Settings, world: dict[str, Any]) -> None:
    client = create_app(replace(settings, dashboard_auth="open", public_url=PUBLIC)).test_client()
    for path in ("/", f"/executions/{world['ex_a'].id}", "/queue", "/api/devteam/executions", "/healthz"):
        headers = client.get(path).headers
        csp = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
        assert csp["script-src"] == "'self'", path
        assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
        assert "ws://clarity.test" in csp["connect-src"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in headers  # plain http: HSTS would mean nothing
    https = create_app(replace(settings, dashboard_auth="open", public_url="https://clarity.example")).test_client()
    headers = https.get("/").headers
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "wss://clarity.example" in headers["Content-Security-Policy"]


def test_no_template_holds_inline_script_that_the_csp_would_block() -> None:
    import re

    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert " src=" in tag, (template.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "javascript:" not in text, template.name


def test_an_artifact_is_served_as_inert_text(settings: Settings, world: dict[str, Any]) -> None:
    folder = artifacts.execution_dir(settings.artifacts_dir, world["ex_a"].id) / "1"
    (folder / "agent.log").write_text("<html><script>alert(document.cookie)</script></html>\n")
    client = create_app(replace(settings, dashboard_auth="open")).test_client()
    answer = client.get(f"/executions/{world['ex_a'].id}/artifacts/1/agent.log")
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Disposition"] == 'inline; filename="agent.log"'
    assert answer.headers["Content-Security-Policy"].startswith("sandbox;")


# 4. the live socket's Origin ------------------------------------------------------------------------

@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[int]:
    """The open dashboard with these settings on a real threaded server on loopback; its port."""
    app = create_app(replace(settings, dashboard_auth="open"))
    web = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        yield web.server_port
    finally:
        hub_of(app).stop()
        web.shutdown()
        web.server_close()


@pytest.fixture
def live_server(settings: Settings, world: dict[str, Any]) -> Iterator[str]:
    """The open dashboard (public URL http://clarity.test) on a real threaded server; its ws:// URL."""
    with serving(replace(settings, public_url=PUBLIC)) as port:
        yield f"ws://127.0.0.1:{port}/live"


def greeted(url: str, headers: dict[str, str]) -> bool:
    """Whether the socket opens and says hello."""
    try:
        ws = Client.connect(url, headers=headers)
    except HandshakeRefused:
        return False
    try:
        ws.send(json.dumps({"since": 0}))
        raw = ws.receive(timeout=5)
        return raw is not None and json.loads(raw)["type"] == "hello"
    finally:
        ws.close()


def test_a_page_of_another_site_cannot_open_the_live_socket(live_server: str) -> None:
    port = int(live_server.rsplit(":", 1)[1].split("/")[0])
    for origin in ("http://evil.example", "null", "http://clarity.test.evil.example", "https://clarity.test",
                   "http://clarity.test:8080", f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}"):
        assert not greeted(live_server, {"Origin": origin}), origin
    answer = httpx.get(live_server.replace("ws://", "http://"), headers={
        "Origin": "http://evil.example", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert answer.status_code == 403 and "Origin" in answer.json()["message"]


def test_the_dashboards_own_pages_and_non_browser_clients_open_the_live_socket(live_server: str) -> None:
    assert greeted(live_server, {"Origin": PUBLIC})
    here = live_server.removeprefix("ws://").removesuffix("/live")
    assert handshake_status(live_server, f"http://{here}") == 101  # a browser on the machine itself
    assert handshake_status(live_server, "http://evil.example") == 403


def handshake_status(url: str, origin: str) -> int:
    """The status a browser's handshake gets (Host with its port, as browsers send it), from a raw socket."""
    host, port = url.removeprefix("ws://").removesuffix("/live").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall((f"GET /live HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n"
                      "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        return int(conn.recv(4096).split(b" ", 2)[1])
    assert greeted(live_server, {})  # no Origin: not a browser, so no ambient cookie to abuse


# 5. garbage in query strings ------------------------------------------------------------------------

def test_a_garbage_cursor_in_live_poll_is_a_400_that_says_what_is_wrong(
        settings: Settings, world: dict[str, Any]) -> None:
    client = create_app(replace(settings, dashboard_auth="open")).test_client()
    answer = client.get("/live/poll", query_string={"execution": world["ex_a"].id, "after": "garbage"})
    assert answer.status_code == 400
    assert "after must be a stream id" in answer.get_json()["message"]


GARBAGE = ("garbage", "-1", "0", "1e999", "nan", "inf", "%", "\x00", "9" * 40, "[", "1-2-3", "' OR 1=1 --",
           "../../etc/passwd", "x" * 5000, "{}", "1700000000000-99999999999999999999")


def test_no_query_parameter_of_the_dashboard_or_api_answers_500(
        settings: Settings, world: dict[str, Any]) -> None:
    client = create_app(replace(settings, dashboard_auth="open")).test_client()
    ex = world["ex_a"].id
    params = {
        "/live/poll": ("since", "execution", "after"), f"/live/poll?execution={ex}": ("after", "since"),
        "/": ("live",), f"/executions/{ex}": ("requested",), "/queue": ("prioritised",), "/resources": (),
        "/audit": ("installation", "from", "to", "before", "actor", "kind", "repo"), "/insights": ("days",),
        "/api/devteam/executions": ("installation", "repo", "status", "limit", "cursor"),
        "/api/devteam/history/executions": ("installation", "repo", "status", "since", "limit", "cursor"),
        "/api/devteam/history/trends": ("days",), "/api/devteam/repos/alpha/app/tasks": ("ref",),
        f"/api/devteam/executions/{ex}/progress": (), f"/api/devteam/executions/{ex}/artifacts": (),
    }
    failures = []
    for path, names in params.items():
        for name in names:
            for value in GARBAGE:
                joiner = "&" if "?" in path else "?"
                answer = client.get(f"{path}{joiner}{name}={httpx.QueryParams({'v': value})['v']}")
                if answer.status_code == 500:  # (503 is an answer: the test's GitHub is not there)
                    failures.append((path, name, value[-30:], answer.status_code))
    for value in GARBAGE:
        for path in (f"/executions/{value}", f"/executions/{ex}/artifacts/{value}", f"/api/executions/{value}"):
            if client.get(path).status_code == 500:
                failures.append((path, "", value[-30:], 500))
    assert failures == [], "\n".join(map(repr, failures))


def test_a_repository_name_that_climbs_out_of_repos_is_refused_before_github_is_asked(
        settings: Settings, store: Store) -> None:
    token, _ = ApiTokens(store.r, settings.namespace).create("admin", everything=True)
    client = create_app(settings).test_client()
    for name in ("../app", "acme/..", "./x", "acme/.", "../../app/hook"):
        answer = client.post("/api/devteam/executions/initialize", json={"repository": name},
                             headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 422, (name, answer.get_data(as_text=True))
        assert client.get("/api/devteam/executions", query_string={"repo": name}).status_code == 422, name


def test_a_garbage_hello_on_the_live_socket_is_ignored_not_a_crash(live_server: str, world: dict[str, Any]) -> None:
    ws = Client.connect(live_server)
    try:
        ws.send(json.dumps({"cursors": {world["ex_a"].id: "garbage", "x" * 300: "1-0"}, "since": 0}))
        assert json.loads(ws.receive(timeout=5))["type"] == "hello"
        caught_up = json.loads(ws.receive(timeout=5))  # the overview's catch-up still comes
        assert caught_up["type"] == "snapshot" and caught_up["execution"]["id"] in (world["ex_a"].id, world["ex_b"].id)
    finally:
        ws.close()
    ws = Client.connect(live_server)
    try:
        ws.send(json.dumps({"cursors": ["not", "a", "mapping"], "since": "soon"}))
        assert json.loads(ws.receive(timeout=5))["type"] == "hello"
    finally:
        ws.close()


# 6. artifacts: links swapped in a race, FIFOs --------------------------------------------------------

SWAPPER = """
import os, sys
target, foreign, stop = sys.argv[1:4]
folder, name = os.path.split(target)
link, honest = os.path.join(folder, ".link"), os.path.join(folder, ".honest")
while not os.path.exists(stop):
    for path in (link, honest):
        try: os.unlink(path)
        except FileNotFoundError: pass
    os.symlink(foreign, link)
    os.replace(link, target)
    with open(honest, "w") as f: f.write("HONEST\\n")
    os.replace(honest, target)
"""


@pytest.fixture
def hostile(settings: Settings, store: Store, world: dict[str, Any]) -> dict[str, Any]:
    """Customer B's secret on disk beside customer A's attempt folder, which A's check controls."""
    secret = f"FOREIGN-SECRET-{uuid.uuid4().hex}"
    theirs = artifacts.execution_dir(settings.artifacts_dir, world["ex_b"].id) / "1" / "attempt-1"
    theirs.mkdir(parents=True)
    (theirs / "checks.json").write_text(secret + "\n")
    mine = artifacts.execution_dir(settings.artifacts_dir, world["ex_a"].id) / "1" / "attempt-1"
    mine.mkdir(parents=True)
    (mine / "checks.json").write_text("HONEST\n")
    return {"secret": secret, "foreign_file": theirs / "checks.json", "foreign_dir": theirs, "mine": mine,
            "url": f"/executions/{world['ex_a'].id}/artifacts/1"}


@pytest.mark.slow
def test_a_check_swapping_links_in_its_artifacts_folder_never_gets_foreign_bytes_served(
        settings: Settings, hostile: dict[str, Any], tmp_path: Path) -> None:
    client = create_app(replace(settings, dashboard_auth="open")).test_client()
    stop = tmp_path / "stop"
    swappers = [subprocess.Popen([sys.executable, "-c", SWAPPER, str(target), str(foreign), str(stop)])
                for target, foreign in ((hostile["mine"] / "checks.json", hostile["foreign_file"]),
                                        (hostile["mine"].parent / "attempt-2", hostile["foreign_dir"]))]
    (hostile["mine"].parent / "attempt-2").mkdir(exist_ok=True)
    served, honest = [], 0
    try:
        time.sleep(0.2)
        for n in range(3000):
            path = ("/attempt-1/checks.json", "/attempt-2/checks.json", "/attempt-2", "")[n % 4]
            answer = client.get(hostile["url"] + path)
            body = answer.get_data(as_text=True)
            honest += "HONEST" in body
            if hostile["secret"] in body or hostile["foreign_dir"].name in body and path == "/attempt-2":
                served.append((path, answer.status_code))
    finally:
        stop.touch()
        for swapper in swappers:
            swapper.wait(10)
    assert served == []
    assert honest > 100  # the honest file is still served when it is there


@pytest.fixture
def threaded_app(settings: Settings, world: dict[str, Any]) -> Iterator[str]:
    """The open dashboard on a real threaded server; its base URL."""
    with serving(settings) as port:
        yield f"http://127.0.0.1:{port}"


def release(fifo: Path) -> None:
    """Let readers stuck opening `fifo` go (the old code's threads), so the test ends either way."""
    for _ in range(20):
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        os.close(fd)


def test_a_fifo_planted_in_the_artifacts_folder_is_refused_at_once_and_healthz_stays_fast(
        settings: Settings, world: dict[str, Any], threaded_app: str) -> None:
    folder = artifacts.execution_dir(settings.artifacts_dir, world["ex_a"].id) / "1"
    fifo = folder / "agent.log"
    os.mkfifo(fifo)
    url = f"{threaded_app}/executions/{world['ex_a'].id}/artifacts/1/agent.log"
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _timed_get(url, 3.0), range(8)))
        assert all(status in (403, 404) for status, _ in answers), answers
        assert max(seconds for _, seconds in answers) < 2.0
        listing = httpx.get(f"{threaded_app}/executions/{world['ex_a'].id}/artifacts/1", timeout=3)
        assert listing.status_code == 200 and '/artifacts/1/agent.log"' not in listing.text
        assert '/artifacts/1/prompt.md"' in listing.text
        started = time.monotonic()
        assert httpx.get(f"{threaded_app}/healthz", timeout=3).status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        release(fifo)


def _timed_get(url: str, timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = httpx.get(url, timeout=timeout).status_code
    except httpx.TimeoutException:
        status = 0
    return status, time.monotonic() - started


def test_links_and_special_files_are_neither_listed_nor_served(settings: Settings, world: dict[str, Any]) -> None:
    folder = artifacts.execution_dir(settings.artifacts_dir, world["ex_a"].id) / "1"
    theirs = artifacts.execution_dir(settings.artifacts_dir, world["ex_b"].id) / "1"
    (folder / "key.pem").symlink_to(theirs / "prompt.md")
    (folder / "up").symlink_to(theirs)
    (folder / "zero").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe")
    client = create_app(replace(settings, dashboard_auth="open")).test_client()
    base = f"/executions/{world['ex_a'].id}/artifacts/1"
    for name in ("key.pem", "up", "up/prompt.md", "zero", "pipe"):
        answer = client.get(f"{base}/{name}")
        assert answer.status_code == 404 and "beta/svc" not in answer.get_data(as_text=True), name
    listing = client.get(base).get_data(as_text=True)
    assert "prompt.md" in listing
    for name in ("key.pem", "up", "zero", "pipe"):
        assert f">1/{name}<" not in listing, name
    api = client.get(f"/api/devteam/executions/{world['ex_a'].id}/artifacts").get_json()
    assert [a["path"] for a in api["artifacts"]] == ["1", "1/prompt.md"]
