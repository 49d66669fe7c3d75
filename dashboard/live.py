"""The live feed: `/live` (WebSocket) and `/live/poll` (JSON, every 5 s where sockets fail).

Protocol. The browser opens `/live` and sends one hello:
`{"cursors": {"<execution id>": "<last stream id seen>"}, "since": <server time>}` (both optional).
The server answers `{"type": "hello", "time": t}` and catches the page up: a `snapshot` (the record,
camelCase) of each visible execution updated since `since` (the overview), then for each cursor that
execution's snapshot and every stream entry after the cursor (XRANGE on `exec:<id>:log`: the execution
page's log and tasks). Then it forwards live events (`{"kind", "execution", "installation", "status",
"time", ..., "id"}`) as they come, skipping those the catch-up already sent. A socket that falls behind
gets `{"type": "resync"}` and is closed: the browser reconnects with its cursors, so nothing is missed.
`/live/poll` answers the same catch-up as JSON for pages that cannot keep a socket.
Every message is scoped by `Viewer.sees(installation)`; the viewer is read at connect and again every
RECHECK seconds, so a logout or a revoked session or token closes the socket (code 1008).
A handshake whose `Origin` is not CLARITY_PUBLIC_URL's is refused with 403 before the socket opens, so a
page of another site cannot ride a visitor's session cookie into the feed; the only other origin taken
is the request's own on a loopback address (an operator's browser on the machine itself, where no other
site's page can claim that origin). A handshake without `Origin` comes from no browser (browsers always
send one): it carries no ambient cookie to abuse and still needs a viewer (a signed-in session, an API
token, or the dashboard opened by the operator).
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from clarity import numbers
from clarity.engine_port import EnginePort
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import NotFound, Store
from dashboard import auth
from dashboard.appctx import PORT
from dashboard.appctx import store as _store
from dashboard.audit import is_stream_id
from dashboard.headers import origin
from dashboard.hub import Event, Hub, Subscriber, wait_subscribed
from dashboard.updates import ProgressUpdates

bp = Blueprint("live", __name__, static_folder="static", static_url_path="/assets")
sock = Sock()

HELLO_TIMEOUT = 10.0  # seconds a new socket has to say hello
IDLE_PING = 20.0  # seconds of silence before the server pings (keeps proxies from closing the socket)
RECHECK = 30.0  # seconds between checks that the socket's viewer is still signed in (logout, revocation)
MAX_CURSORS = 500  # executions one hello may ask about
SLACK = 2.0  # seconds of overlap in `since`: writers on other hosts may lag this one's clock a little
SNAPSHOTS = 200  # executions a catch-up looks at for changes (the overview shows as many)
RESYNC_CLOSE = 4000  # close code: you fell behind, reconnect with your cursors
FULL_CLOSE = 4001  # close code: no room for another socket here, poll /live/poll instead
CLOSE_WAIT = 2.0  # seconds a closing socket waits for the browser's answering close frame
BADGES = {str(s): s.badge for s in ExecutionStatus}

ViewerProvider = Callable[[], "auth.Viewer | None"]


def viewer() -> auth.Viewer | None:
    """The viewer of this request: `app.extensions["clarity.viewer_provider"]`, else auth.current_viewer.

    Tests install a provider that returns a Viewer built through the contract; the app never sets one.
    """
    provider: ViewerProvider = current_app.extensions.get("clarity.viewer_provider", auth.current_viewer)
    return provider()


def hub_of(app: Flask) -> Hub:
    """The process's hub (one per app, hence one Redis subscription per web process)."""
    hub: Hub = app.extensions["clarity.live_hub"]
    return hub


def init_app(app: Flask) -> None:
    """Register the feed on an app whose `clarity.store` is set; no connection is made until a socket opens."""
    store = _store(app)
    updates = ProgressUpdates(store, lambda execution: _finishes_in(app, execution))
    app.extensions["clarity.live_hub"] = Hub(store.r, store.events_channel, updates.shape)
    app.register_blueprint(bp)
    app.jinja_env.globals["badges"] = BADGES  # live.js shows the same badge beside the status word
    app.jinja_env.filters["numbers"] = numbers.of  # `ex|numbers`: the figures every surface shows (clarity.numbers)


def _finishes_in(app: Flask, execution: Execution) -> float | None:
    """Seconds until an execution should finish, as the API's progress says (the engine port's estimate)."""
    port: EnginePort | None = app.extensions.get(PORT)
    return port.estimate(execution)[1] if port is not None else None


# -- the messages -----------------------------------------------------------------------------------
def snapshot(execution: Execution) -> str:
    """The message that (re)states an execution's record."""
    return json.dumps({"type": "snapshot", "execution": execution.to_json(), "numbers": numbers.of(execution).to_json(),
                       "badge": execution.status.badge}, default=str)


def entry_message(entry_id: str, data: dict[str, str]) -> str:
    """A stream entry as the live event it was published as (the same JSON plus its id)."""
    payload = data.get("json", "{}")
    return f'{payload[:-1]}, "id": {json.dumps(entry_id)}}}' if payload.endswith("}") else payload


def stream_key(store: Store, execution_id: str) -> str:
    """Where an execution's events are kept."""
    return f"{store.namespace}:exec:{execution_id}:log"


def newer(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b` ("" comes before everything)."""
    return _id_key(a) > _id_key(b)


def is_cursor(text: str) -> bool:
    """Whether `text` is "" (from the start) or a stream id Redis takes."""
    return not text or is_stream_id(text)


@bp.before_request
def _same_origin_socket() -> ResponseReturnValue | None:
    """Refuse a socket handshake sent by a page of another origin than CLARITY_PUBLIC_URL's."""
    if request.endpoint != "live.live" or "Origin" not in request.headers:
        return None
    settings: Settings = current_app.extensions["clarity.settings"]
    wanted, sent = origin(settings.public_url), origin(request.headers["Origin"])
    own = origin(request.host_url, "https" if request.is_secure else "http")
    if sent and (sent == wanted or (sent == own and urlsplit(own).hostname in auth.LOOPBACK_HOSTS)):
        return None
    return jsonify({"message": f"this socket is for pages of {wanted}: Origin {request.headers['Origin']!r} "
                               "is refused (set CLARITY_PUBLIC_URL to the address the dashboard is opened at)"}), 403


def _id_key(entry_id: str) -> tuple[int, int]:
    if not entry_id:
        return (-1, -1)
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq or 0))


def catch_up(store: Store, who: auth.Viewer, cursors: dict[str, str], since: float | None,
             seen: dict[str, str], shape: Callable[[str], str] | None = None) -> list[str]:
    """What a page missed: snapshots of executions updated since `since`, then for each cursor the
    execution's snapshot and its stream entries after the cursor (the log, task and status events).

    Records in `seen` the newest stream id sent per execution, so the live queue skips repeats.
    """
    messages: list[str] = []
    sent: set[str] = set()
    if since is not None:
        for execution in store.executions(limit=SNAPSHOTS):
            if execution.updated_at >= since - SLACK and who.sees(execution.installation_id):
                messages.append(snapshot(execution))
                sent.add(execution.id)
    for execution_id, cursor in list(cursors.items())[:MAX_CURSORS]:
        if not is_cursor(cursor):
            continue  # not a position in any stream: nothing to catch up from
        try:
            execution = store.get(execution_id)
        except NotFound:
            continue
        if not who.sees(execution.installation_id):
            continue
        if execution_id not in sent:
            messages.append(snapshot(execution))
        start = f"({cursor}" if cursor else "-"
        for entry_id, data in store.r.xrange(stream_key(store, execution_id), start, "+"):
            seen[execution_id] = entry_id
            message = entry_message(entry_id, data)
            messages.append(shape(message) if shape else message)  # as the hub shaped it live
    return messages


def _hello(raw: str | bytes | None) -> tuple[dict[str, str], float | None]:
    """Cursors and `since` from the browser's hello (anything malformed counts as an empty hello)."""
    try:
        data = json.loads(raw or "{}")
        cursors = {str(k): str(v or "") for k, v in dict(data.get("cursors") or {}).items()}
        since = data.get("since")
        return cursors, float(since) if since is not None else None
    except (ValueError, TypeError, AttributeError):
        return {}, None


# -- the socket -------------------------------------------------------------------------------------
@sock.route("/live", bp=bp)
def live(ws: Any) -> None:
    """One browser tab's feed (see the module docstring for the protocol)."""
    who = viewer()
    if who is None:
        close(ws, 1008, "sign in to watch")
        return
    store, hub = _store(), hub_of(current_app._get_current_object())  # type: ignore[attr-defined]
    settings: Settings = current_app.extensions["clarity.settings"]
    if hub.count() >= settings.live_max_sockets:
        # Under gunicorn's gthread workers a socket holds a thread for as long as it is open: past the cap
        # the page polls instead, so sockets never starve webhooks and page loads of threads.
        ws.send('{"type": "poll"}')
        close(ws, FULL_CLOSE, "this web process has no room for another socket: poll")
        return
    cursors, since = _hello(ws.receive(timeout=HELLO_TIMEOUT))
    subscriber = hub.subscribe(who)  # before the catch-up: whatever happens meanwhile is queued
    try:
        # The first socket starts the hub: read the catch-up only once Redis delivers to it, or an
        # event published in between would be in neither.
        wait_subscribed(hub)
        ws.send(json.dumps({"type": "hello", "time": time.time()}))
        seen: dict[str, str] = {}
        for message in catch_up(store, who, cursors, since, seen, hub.shape):
            ws.send(message)
        _forward(ws, subscriber, seen)
    finally:
        hub.unsubscribe(subscriber)


def close(ws: Any, code: int, message: str) -> None:
    """Close a socket with the closing handshake: wait (briefly) for the browser's answering close frame.

    Returning at once would let the server drop the TCP connection while the browser still reads the
    last messages, and a reset there can lose them (the `poll` or `resync` it needs to act on).
    """
    ws.close(reason=code, message=message)
    thread = getattr(ws, "thread", None)
    if thread is not None:
        thread.join(CLOSE_WAIT)


def _still_signed_in() -> bool:
    """Whether the socket's viewer is still let in: a logout, a revoked session or a revoked token ends the feed."""
    auth.forget_viewer()
    return viewer() is not None


def _forward(ws: Any, subscriber: Subscriber, seen: dict[str, str]) -> None:
    """Send queued events until the socket closes, falls behind or its viewer is signed out."""
    idle_since = checked = time.monotonic()
    while ws.connected:
        if subscriber.lagging.is_set():
            ws.send(json.dumps({"type": "resync"}))
            close(ws, RESYNC_CLOSE, "fell behind: reconnect with your cursors")
            return
        if time.monotonic() - checked > RECHECK:
            if not _still_signed_in():
                close(ws, 1008, "signed out: sign in again")
                return
            checked = time.monotonic()
        try:
            event: Event = subscriber.inbox.get(timeout=1.0)
        except queue.Empty:  # nothing new: ping now and then
            if time.monotonic() - idle_since > IDLE_PING:
                ws.send('{"type": "ping"}')
                idle_since = time.monotonic()
            continue
        last = seen.get(event.execution)
        if last is not None and event.entry_id and not newer(event.entry_id, last):
            continue  # the catch-up sent it already
        try:
            ws.send(event.raw)
        except ConnectionClosed:
            return
        idle_since = time.monotonic()


# -- polling, where WebSockets are not to be had ------------------------------------------------------
@bp.get("/live/poll")
def poll() -> ResponseReturnValue:
    """The socket's catch-up as JSON, for pages without WebSockets: `?since=<server time>` (snapshots of
    executions changed since), `&execution=<id>&after=<stream id>` (its events after the cursor)."""
    who = viewer()
    if who is None:
        return jsonify({"message": "sign in to watch"}), 401
    now = time.time()
    try:
        since = float(request.args["since"]) if "since" in request.args else None
    except ValueError:
        return jsonify({"message": "since must be a number (seconds since the epoch, as `time` answered)"}), 400
    execution_id = request.args.get("execution")
    after = request.args.get("after", "")
    if not is_cursor(after):
        return jsonify({"message": "after must be a stream id like 1700000000000-0 (the `id` of the last event "
                                   f"seen) or empty, got {after[:80]!r}"}), 400
    cursors = {execution_id: after} if execution_id else {}
    messages = catch_up(_store(), who, cursors, since, {}, hub_of(current_app._get_current_object()).shape)  # type: ignore[attr-defined]
    return current_app.response_class(f'{{"time": {now!r}, "messages": [{", ".join(messages)}]}}',
                                      mimetype="application/json")
