"""`clarity worker`: an RQ worker on Clarity's queues, intake first so acknowledgements stay fast."""

from __future__ import annotations

import logging

from rq import Worker

from jobs.context import engine

log = logging.getLogger(__name__)


def work(burst: bool = False, name: str | None = None) -> bool:
    """Build the engine (settings errors surface here, before any job) and process jobs."""
    eng = engine()
    queues = [eng.intake_queue, eng.steps_queue]
    worker = Worker(queues, connection=eng.intake_queue.connection, name=name)
    log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in queues))
    return worker.work(burst=burst, logging_level=eng.settings.log_level)
