"""Titles of the groups and parents in an execution's task tree, read from its task list and kept a while.

The engine's task table holds the tasks it runs (leaves, with their titles); the rows the tree adds for
their parents (`1 Setup`, `### 2.3 Database health`) have their titles only in tasks_list.md. The page
reads the list through the engine port (as the API's task listing does: the execution's branch, else its
base branch) and keeps each execution's titles in the app (`app.extensions["clarity.titles"]`) for
TITLES_TTL seconds, so a page the live feed re-renders every few hundred milliseconds costs GitHub nothing;
a list that cannot be read leaves the titles empty for FAILED_TTL seconds. Titles of tasks hardly change
during an execution.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from flask import current_app

from clarity.engine_port import EnginePort, EngineRefusal, Missing
from clarity.models import Execution
from dashboard.appctx import PORT

log = logging.getLogger(__name__)

TITLES_TTL = 300.0
FAILED_TTL = 30.0
KEPT = 512  # executions whose titles an app keeps
CACHE = "clarity.titles"  # app.extensions key of the app's TitleCache


class TitleCache:
    """Titles by execution, each kept until its time is up (one per app: tests' apps never share one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[float, dict[str, str]]] = {}

    def get(self, execution: Execution) -> dict[str, str]:
        """The execution's titles, read through the engine port when not kept or kept too long."""
        now = time.monotonic()
        with self._lock:
            found = self._kept.get(execution.id)
        if found and found[0] > now:
            return found[1]
        titles, ttl = _read(execution)
        with self._lock:
            if len(self._kept) >= KEPT and execution.id not in self._kept:
                self._kept.pop(next(iter(self._kept)))
            self._kept[execution.id] = (now + ttl, titles)
        return titles


def for_groups(execution: Execution, wanted: Iterable[str]) -> dict[str, str]:
    """Title by id for the `wanted` ids (rows the engine's table does not hold); {} when none is wanted."""
    wanted = set(wanted)
    if not wanted:
        return {}
    cache: TitleCache = current_app.extensions.setdefault(CACHE, TitleCache())
    return {i: t for i, t in cache.get(execution).items() if i in wanted}


def _read(execution: Execution) -> tuple[dict[str, str], float]:
    port: EnginePort | None = current_app.extensions.get(PORT)
    if port is None:
        return {}, FAILED_TTL
    for ref in dict.fromkeys((execution.branch, execution.base_branch)):
        try:
            listing = port.task_list(execution.repo, execution.installation_id, ref)
        except Missing:
            continue  # before its first push the branch does not exist: the base branch's list
        except EngineRefusal as exc:
            log.info("task titles of %s unavailable: %s", execution.repo, exc, extra={"execution": execution.id})
            return {}, FAILED_TTL
        except Exception:  # titles decorate the page: a failure to read them must not fail it
            log.warning("task titles of %s could not be read", execution.repo, exc_info=True,
                        extra={"execution": execution.id})
            return {}, FAILED_TTL
        return {task.id: task.title for task in listing.tasks.tasks}, TITLES_TTL
    return {}, FAILED_TTL
