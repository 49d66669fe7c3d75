"""Every webhook route of the engine, composed once at import (bedevere's `Router(backport.router, ...)`).

Each behaviour registers its own handlers on its own router; this module only composes them, so
jobs.intake dispatches through one router built once. github_app.routes.HANDLED lists the same
(event, action) pairs for the webhook endpoint, which may not import jobs: `Router.register` refuses a
pair missing there, and tests/test_webhook_volume.py holds `router.routes()` equal to it.
"""

from __future__ import annotations

from jobs import buttons, comments, lifecycle
from jobs.router import Router, compose

router: Router = compose(comments.router, buttons.router, lifecycle.router)
