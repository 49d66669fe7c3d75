"""Intake job: one verified webhook delivery → its handler, through the routes jobs.routes composes.

`handle_delivery` is the RQ job the webhook endpoint queues by dotted name (github_app.webhooks.INTAKE_JOB).
It reads the body, binds the log context, and dispatches; what the handlers do lives with them
(jobs.comments for commands, jobs.buttons for check runs, jobs.lifecycle for the rest).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from githubkit.exception import RequestError

from clarity import logcontext
from github_app.client import describe_error
from github_app.payloads import PayloadError
from jobs.context import Engine
from jobs.context import engine as default_engine
from jobs.routes import router

log = logging.getLogger(__name__)


def handle_delivery(event: str, delivery: str, body: str) -> str:
    """RQ job entry point: process one verified delivery; returns what was done (kept by RQ)."""
    return process(default_engine(), event, delivery, body)


def process(eng: Engine, event: str, delivery: str, body: str) -> str:
    """Route one verified delivery to its handler; a payload of the wrong shape is logged and ignored."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # a signed body is still only text
        log.warning("delivery %s: body is not JSON (%s)", delivery, str(exc)[:200])
        return "ignored: body is not JSON"
    if not isinstance(payload, dict):
        log.warning("delivery %s: the %s payload is not a JSON object", delivery, event)
        return "ignored: payload is not a JSON object"
    with logcontext.bind(delivery_id=delivery, installation=_shown(payload, "installation", "id"),
                         repo=_shown(payload, "repository", "full_name")):
        try:
            return router.dispatch(eng, event, delivery, payload)
        except PayloadError as exc:
            log.warning("delivery %s: %s", delivery, exc)
            return f"ignored: {exc}"
        except RequestError as exc:  # an installation or repository GitHub does not know (any more), an outage
            log.error("delivery %s: GitHub refused a call: %s", delivery, describe_error(exc))
            return f"error: {describe_error(exc)}"


def _shown(payload: dict[str, Any], key: str, field: str) -> str | None:
    """A field for the log context, if it is a short text or number (it is not validated yet)."""
    holder = payload.get(key)
    value = holder.get(field) if isinstance(holder, dict) else None
    return str(value)[:100] if isinstance(value, str | int) and not isinstance(value, bool) else None
