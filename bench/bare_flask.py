"""The baseline for bench/webhook_bench.py: a Flask app with one endpoint that answers 202 and does nothing.

Served by the same gunicorn command as Clarity's web process, so the difference between the two is
what `POST /webhooks` does: verify, dedupe, enqueue, log.
"""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    """A Flask app whose `POST /webhooks` accepts anything."""
    app = Flask(__name__)

    @app.post("/webhooks")
    def receive() -> tuple[str, int]:
        return "", 202

    return app
