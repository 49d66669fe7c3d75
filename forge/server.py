"""Composes the forge: REST under ``/api/v3``, git smart HTTP, HTML pages and the ``/_forge`` admin API."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from forge import admin, api_versions, git_http, graphql, manifests, oauth, pages
from forge.app_identity import AppRegistry, initial_identity
from forge.auth import AuthFailure, TokenStore, authenticate
from forge.calls import CallLog, RateMeter
from forge.code_shapes import CodeShapes
from forge.config import API_PREFIX, ForgeConfig
from forge.context import EXTENSION_KEY, ForgeContext, forge_context
from forge.faults import FaultList, respond
from forge.hooks import WebhookSender
from forge.records import now
from forge.rest import BLUEPRINTS
from forge.rest.errors import ApiError
from forge.shapes import Shapes
from forge.state import ForgeState

__all__ = ["ForgeConfig", "RunningForge", "create_forge_app", "serve_in_thread"]
log = logging.getLogger(__name__)


GRAPHQL_PATH = "/api/graphql"
_SECRET = re.compile(r"\b(gh[spu]_[A-Za-z0-9]{36})\b|\beyJ[\w-]+\.[\w-]+\.[\w-]+")


def _is_api(path: str) -> bool:
    return path in (API_PREFIX, GRAPHQL_PATH) or path.startswith(API_PREFIX + "/")


def _api_path(path: str) -> str:
    """The path as recorded: relative to the REST prefix (``/graphql`` for GraphQL)."""
    return "/graphql" if path == GRAPHQL_PATH else path[len(API_PREFIX) :]


def scrub(value: Any) -> Any:
    """Replace tokens and JWTs anywhere in a JSON value (the calls log must never hold credentials)."""
    if isinstance(value, str):
        return _SECRET.sub("[REDACTED]", value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def _is_git(path: str) -> bool:
    return ".git/" in path and not _is_api(path)


def _authenticate() -> Response | None:
    """Resolve the caller of an API request; bad credentials end the request with GitHub's 401."""
    ctx = forge_context()
    g.started = time.monotonic()
    if not _is_api(request.path):
        return None
    if request.path != GRAPHQL_PATH:
        refused = ctx.api_versions.check(request.headers.get(api_versions.HEADER))
        if refused is not None:
            g.principal_kind = "none"
            return ApiError(400, refused).response()
    app = ctx.app
    try:
        g.principal = authenticate(
            request.headers.get("Authorization"), ctx.tokens, app.public_key, app.id, app.bot_login
        )
    except AuthFailure as exc:
        g.principal_kind = "invalid"
        return ApiError(401, exc.message).response()
    fault = ctx.faults.take(request.method, _api_path(request.path))
    if fault is not None:
        who = g.principal
        subject = f"installation ID {who.installation_id}" if who.installation_id else f"user {who.login}"
        answer = respond(fault, subject)
        resp = jsonify(answer.body)
        resp.status_code = answer.status
        resp.headers.update(answer.headers)
        g.fault = True
        return resp
    return None


def _finish(resp: Response) -> Response:
    """Rate-limit headers on API answers, and one call record per API or git request."""
    path = request.path
    if not (_is_api(path) or _is_git(path)):
        return resp
    ctx = forge_context()
    if _is_api(path) and resp.status_code < 300:
        resp = _failed_after_write(ctx, resp)
    who = getattr(g, "principal", None)
    kind = who.kind if who is not None else getattr(g, "principal_kind", "none")
    record: dict[str, Any] = {
        "surface": "rest" if _is_api(path) else "git",
        "method": request.method,
        "path": _api_path(path) if _is_api(path) else path,
        "query": request.args.to_dict(),
        "status": resp.status_code,
        "auth": kind,
        "api_version": request.headers.get(api_versions.HEADER),
        "actor": who.login if who is not None else None,
        "timestamp": now().isoformat().replace("+00:00", "Z"),
        "duration_ms": int((time.monotonic() - g.get("started", time.monotonic())) * 1000),
    }
    if _is_api(path):
        record["request"] = scrub(request.get_json(silent=True, force=True) if request.get_data() else None)
        record["response"] = scrub(resp.get_json(silent=True) if not resp.is_streamed else None)
        if not g.get("fault"):
            key = f"{kind}:{who.installation_id or who.login}" if who is not None else "none"
            resp.headers.update(rate_headers(ctx.rate.hit(key)))
        resp.headers.setdefault("X-GitHub-Media-Type", "github.v3; format=json")
        resp.headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:16].upper()
        resp.headers["X-GitHub-Api-Version-Selected"] = request.headers.get(
            "X-GitHub-Api-Version", "2022-11-28"
        )
    ctx.calls.record(record)
    return resp


def _failed_after_write(ctx: ForgeContext, done: Response) -> Response:
    """The call was performed; a pending `server_error_after_write` fault answers a 5xx all the same."""
    fault = ctx.faults.take(request.method, _api_path(request.path), after_write=True)
    if fault is None:
        return done
    answer = respond(fault, "")
    resp = jsonify(answer.body)
    resp.status_code = answer.status
    g.fault = True
    return resp


def rate_headers(meter: tuple[int, int, int]) -> dict[str, str]:
    """GitHub's primary rate-limit headers from (limit, used, reset epoch)."""
    limit, used, reset = meter
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(max(limit - used, 0)),
        "x-ratelimit-used": str(used),
        "x-ratelimit-reset": str(reset),
        "x-ratelimit-resource": "core",
    }


def _api_error(exc: ApiError) -> Response:
    return exc.response()


def _http_error(exc: HTTPException) -> Response:
    """Unknown routes and wrong methods: GitHub answers 404 either way."""
    code = 404 if exc.code in (404, 405) else (exc.code or 500)
    if _is_api(request.path):
        return ApiError(code, "Not Found" if code == 404 else (exc.description or "Error")).response()
    if request.path.startswith("/_forge"):
        resp = jsonify({"message": exc.description or "Not Found"})
        resp.status_code = code
        return resp
    return Response(
        f"{code} {exc.name if code != 404 else 'Not Found'}\n", status=code, mimetype="text/plain"
    )


def _unexpected(exc: Exception) -> Response:
    log.exception("forge failed on %s %s", request.method, request.path)
    if _is_api(request.path):
        return ApiError(500, "Server Error").response()
    return Response("500 Internal Server Error\n", status=500, mimetype="text/plain")


def build_context(config: ForgeConfig) -> ForgeContext:
    """The forge's services for one config."""
    state = ForgeState()
    apps = AppRegistry(initial_identity(config))
    shapes = Shapes(config, state, apps)
    state.ensure_user(shapes.app_owner_login, "Organization")
    state.ensure_user(shapes.bot_login, "Bot")
    return ForgeContext(
        config=config,
        state=state,
        shapes=shapes,
        code=CodeShapes(shapes),
        tokens=TokenStore(),
        apps=apps,
        calls=CallLog(),
        rate=RateMeter(),
        hooks=WebhookSender(config.webhook_url, config.webhook_secret, config.app_id, config.webhook_timeout),
        faults=FaultList(),
        api_versions=api_versions.ApiVersions(config.api_versions),
    )


def create_forge_app(config: ForgeConfig) -> Flask:
    """The forge as a Flask app (no side effects besides creating `config.data_dir`)."""
    config.repos_dir.mkdir(parents=True, exist_ok=True)
    app = Flask("forge", template_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = build_context(config)
    for blueprint in (*BLUEPRINTS, manifests.api):
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    app.register_blueprint(graphql.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(git_http.blueprint)
    app.register_blueprint(manifests.pages)
    app.register_blueprint(oauth.blueprint)
    app.register_blueprint(pages.blueprint)
    app.before_request(_authenticate)
    app.after_request(_finish)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler with TCP_NODELAY: keep-alive clients otherwise wait ~40 ms per call (Nagle)."""

    def setup(self) -> None:
        """Disable Nagle on the accepted connection."""
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _QuietHandler(RequestHandler):
    """No per-request access log lines (tests and demos read the calls log instead)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the access log."""


class _LateApp:
    """A WSGI app whose target is set after the socket is bound (the port decides the public URL)."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        assert self.app is not None, "forge app not ready"
        return self.app(environ, start_response)


@dataclass(frozen=True, slots=True)
class RunningForge:
    """A forge serving in a background thread."""

    config: ForgeConfig
    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        """The public base URL, e.g. ``http://127.0.0.1:41234``."""
        return self.config.public_url.rstrip("/")

    @property
    def api_url(self) -> str:
        """The REST base URL (``url + "/api/v3"``)."""
        return self.config.api_url

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.server_port)

    @property
    def context(self) -> ForgeContext:
        """Direct access to state, calls and deliveries (for in-process tests)."""
        return self.app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_in_thread(
    config: ForgeConfig, host: str = "127.0.0.1", port: int = 0, access_log: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> RunningForge:
    """Serve the forge in a daemon thread; with port 0 the public URL becomes the bound address.

    With `ssl_context` it speaks HTTPS (REST and git), as GitHub and GHES do: with a certificate of a
    private CA it is a GHES appliance behind a company's own CA.
    """
    holder = _LateApp()
    handler = RequestHandler if access_log else _QuietHandler
    server = make_server(host, port, holder, threaded=True, request_handler=handler, ssl_context=ssl_context)
    if port == 0 or not config.public_url:
        scheme = "https" if ssl_context is not None else "http"
        config = replace(config, public_url=f"{scheme}://{host}:{server.server_port}")
    holder.app = create_forge_app(config)
    # a short poll interval makes stop() quick (shutdown waits for the serve loop to notice)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"forge:{server.server_port}",
        daemon=True,
    )
    thread.start()
    return RunningForge(config, holder.app, server, thread)
