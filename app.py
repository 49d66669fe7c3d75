"""Composition root: `create_app()` wires settings, the store and the blueprints; `app` is for gunicorn."""

from __future__ import annotations

import redis
from flask import Flask
from rq import Queue

from clarity.redaction import install_logging, redact
from clarity.settings import Settings
from clarity.store import Store
from dashboard.views import bp as dashboard_bp
from github_app.webhooks import MAX_BODY, WebhookConfig
from github_app.webhooks import bp as webhooks_bp


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app: webhooks and dashboard share one store; nothing connects until used."""
    settings = settings or Settings.from_env()
    install_logging(settings.log_level)
    for value in settings.secret_values():
        redact.add(value)
    app = Flask(__name__, template_folder="dashboard/templates")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    store = Store.from_url(settings.redis_url, settings.namespace)
    intake = Queue(settings.intake_queue, connection=redis.Redis.from_url(settings.redis_url))
    app.extensions["clarity.settings"] = settings
    app.extensions["clarity.store"] = store
    app.extensions["clarity.webhooks"] = WebhookConfig(settings.webhook_secret, store, intake,
                                                       settings.delivery_ttl)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(dashboard_bp)

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
