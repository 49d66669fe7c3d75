"""Composition root: `create_app()` wires settings, the store and the blueprints; `app` is for gunicorn."""

from __future__ import annotations

import redis
from flask import Flask
from rq import Queue

from clarity.apitokens import ApiTokens
from clarity.app_credentials import load_settings
from clarity.deliveries import DeliveryQueue
from clarity.metrics import ExecutionCollector, QueueCollector
from clarity.redaction import install_logging, redact
from clarity.sessions import Sessions
from clarity.settings import Settings
from clarity.store import Store
from dashboard import api, appctx, auth, controls, headers, insights, live, pages, signin
from dashboard.ops import OpsConfig
from dashboard.ops import bp as ops_bp
from dashboard.views import bp as dashboard_bp
from github_app.identity import OwnPushes
from github_app.oauth import OAuthSignIn
from github_app.webhooks import INTAKE_JOB, MAX_BODY, WebhookConfig, WebhookEndpoint
from jobs import context as engine_context
from jobs.api_engine import ApiEngine


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app: webhooks and dashboard share one store; nothing connects until used."""
    settings = settings or load_settings()
    install_logging(settings.log_level, settings.log_format)
    for value in settings.secret_values():
        redact.add(value)
    app = Flask(__name__, template_folder="dashboard/templates")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    store = Store.from_url(settings.redis_url, settings.namespace)
    rq_connection = redis.Redis.from_url(settings.redis_url)  # RQ wants replies undecoded
    intake = DeliveryQueue(Queue(settings.intake_queue, connection=rq_connection), settings.namespace, INTAKE_JOB,
                           settings.delivery_ttl)
    app.extensions["clarity.settings"] = settings
    app.extensions[appctx.STORE] = store
    engine = engine_context.build(settings)
    app.extensions["clarity.webhooks"] = WebhookConfig(settings.webhook_secret, intake,
                                                       OwnPushes(engine.identity, engine.pushed))
    # POST /webhooks is answered in front of Flask: none of its per-request work is needed there.
    app.wsgi_app = WebhookEndpoint(app.extensions["clarity.webhooks"], app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["clarity.ops"] = OpsConfig(settings, rq_connection, (
        QueueCollector(rq_connection, settings.namespace, (settings.intake_queue,)), ExecutionCollector(store)))
    auth.configure(app, settings, ApiTokens(store.r, settings.namespace),  # sign-in, tokens, CSRF: first
                   Sessions(store.r, settings.namespace))
    signin.init_app(app, OAuthSignIn(settings))  # /login, /auth/callback, /logout; GitHub's side: github_app
    headers.init_app(app, settings)  # CSP, no framing, no sniffing, HSTS over https: on every answer
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(ops_bp)
    app.register_blueprint(insights.bp)  # /insights: the Metrics page (history charts)
    live.init_app(app)  # /live (WebSocket) and /live/poll: one Redis subscription per process, lazily
    controls.init_app(app, Queue(settings.intake_queue, connection=rq_connection))
    api.init_app(app, ApiEngine(engine))  # /api/devteam: the engine via its port
    pages.init_app(app)  # /queue, /resources, /audit: the same port, the steps' samples, the audit stream

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def __getattr__(name: str) -> Flask:
    # `gunicorn app:app` builds the app on first access, so importing this module has no side effects.
    if name == "app":
        built = create_app()
        globals()["app"] = built
        return built
    raise AttributeError(name)
