"""The dashboard's Queue, Resources and Audit pages, each scoped to the installations its viewer sees.

The queue and the resources come from the engine through `clarity.engine_port` (the port the REST API
uses, on `app.extensions["clarity.engine_port"]`), and a manager's re-prioritise goes through the same
port, hence through `jobs.control.prioritise_execution`, the code behind `/clarity priority` and
`POST /api/devteam/resources/prioritize`. The per-execution CPU and memory are the samples running steps
write (clarity.resources); the audit records come from the store's audit stream (dashboard.audit).
static/pages.js keeps the Queue (every 2 s) and Resources (every second) pages current without a reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Blueprint, Flask, abort, current_app, redirect, render_template, request
from flask.typing import ResponseReturnValue

from clarity import eta, resources
from clarity.engine_port import EnginePort, EngineRefusal, QueueEntry, WorkerInfo
from clarity.models import Execution
from clarity.store import NotFound, Store
from dashboard import audit
from dashboard.appctx import port as _port
from dashboard.appctx import store as _store
from dashboard.auth import Viewer, visible_executions
from dashboard.live import viewer

bp = Blueprint("pages", __name__)

MANAGER = "manager"  # DESIGN §5: managers re-prioritise the queue
HOST_METER = "clarity.host_meter"
QUEUE_REFRESH_MS = 2000
RESOURCES_REFRESH_MS = 1000
PRIORITIES = range(1, 11)  # 10 runs first


def init_app(app: Flask) -> None:
    """Register the pages; the host's CPU meter is one per web process (viewers share its readings)."""
    app.extensions[HOST_METER] = resources.HostMeter()
    app.register_blueprint(bp)


def _who() -> Viewer:
    who = viewer()
    if who is None:  # the guard redirects first where sign-in is configured; a bare app lands here
        abort(401, description="sign in to see this page")
    return who


# -- the queue ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueRow:
    """One waiting execution the viewer sees, with what the page shows beside the engine's entry."""

    entry: QueueEntry
    execution: Execution
    may_prioritise: bool

    @property
    def starts(self) -> str:
        """The estimated start in words."""
        if self.entry.starts_in is None:
            return "unknown"
        if self.entry.starts_in <= 0:
            return "next free worker" if self.entry.waiting_for == "worker" else "when the repository is free"
        return f"in {eta.eta_text(self.entry.starts_in)}"


def queue_rows(port: EnginePort, store: Store, who: Viewer) -> tuple[list[QueueRow], list[QueueRow]]:
    """(waiting for a worker, in the order workers take them; waiting for their repository, by repository)."""
    rows: list[QueueRow] = []
    for entry in port.queue():
        if not who.sees(entry.installation_id):
            continue
        try:
            execution = store.get(entry.execution_id)
        except NotFound:  # finished and forgotten since the engine listed it
            continue
        rows.append(QueueRow(entry, execution, who.may(entry.installation_id, MANAGER)))
    workers = [r for r in rows if r.entry.waiting_for == "worker"]
    lines = sorted((r for r in rows if r.entry.waiting_for != "worker"),
                   key=lambda r: (r.entry.repository, r.entry.position))
    return workers, lines


def _queue_page(notice: str = "", error: str = "", status: int = 200) -> ResponseReturnValue:
    who = _who()
    workers, lines = queue_rows(_port(), _store(), who)
    return render_template("queue.html", workers=workers, lines=lines, notice=notice, error=error,
                           refresh=QUEUE_REFRESH_MS, priorities=PRIORITIES), status


@bp.get("/queue")
def queue() -> ResponseReturnValue:
    """Executions waiting for a worker or for their repository: position, priority, estimated start."""
    return _queue_page(notice=_prioritised_notice(request.args.get("prioritised", "")))


def _prioritised_notice(execution_id: str) -> str:
    """What the page says after a re-prioritise (only about an execution the viewer sees)."""
    if not execution_id:
        return ""
    try:
        execution = _store().get(execution_id)
    except NotFound:
        return ""
    if not _who().sees(execution.installation_id):
        return ""
    return f"{execution.id} ({execution.repo}) now has priority {execution.priority}."


@bp.post("/queue/<execution_id>/priority")
def prioritise(execution_id: str) -> ResponseReturnValue:
    """A manager gives a waiting execution another priority, through the engine (as `/clarity priority`)."""
    who = _who()
    try:
        execution = _store().get(execution_id)
    except NotFound:
        abort(404, description=f"no execution {execution_id}")
    if not who.sees(execution.installation_id):  # the same answer as for no execution at all
        abort(404, description=f"no execution {execution_id}")
    if not who.may(execution.installation_id, MANAGER):
        held = who.role_in(execution.installation_id) or "none"
        abort(403, description=f"re-prioritising needs the {MANAGER} role in {execution.account}; yours is {held}")
    raw = request.form.get("priority", "").strip()
    if not raw.isdigit() or int(raw) not in PRIORITIES:
        return _queue_page(error=f"The priority of {execution.id} must be a whole number from 1 to 10, "
                                 f"not {raw[:20]!r}.", status=400)
    try:
        _port().prioritise(execution.id, int(raw), who.login)
    except EngineRefusal as exc:
        return _queue_page(error=exc.message, status=exc.status)
    return redirect(f"/queue?prioritised={execution.id}", code=303)


# -- resources ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A steps worker; what it runs is named only when the viewer sees that execution."""

    info: WorkerInfo
    execution: Execution | None


@dataclass(frozen=True, slots=True)
class RunningRow:
    """An execution a worker is stepping now, with its processes' latest sample."""

    execution: Execution
    usage: resources.Usage

    @property
    def memory_mib(self) -> str:
        """Resident memory in MiB, one decimal."""
        return f"{self.usage.memory_bytes / 2**20:.1f}"


def _running(store: Store, who: Viewer, picked: dict[str, Execution]) -> list[RunningRow]:
    """Active executions the viewer sees that have a live sample (a step is running them)."""
    candidates = {e.id: e for e in visible_executions(store, who) if e.status.is_active}
    candidates.update(picked)
    found = resources.recorded(store.r, store.namespace, sorted(candidates))
    return [RunningRow(candidates[i], found[i]) for i in sorted(found, key=lambda i: candidates[i].repo)]


@bp.get("/resources")
def resources_page() -> ResponseReturnValue:
    """Workers, slots in use, each running execution's CPU and memory, and the web host's."""
    who, store = _who(), _store()
    found = _port().resources()
    picks = store.ready.slots([w.current for w in found.workers if w.current])
    seen: dict[str, Execution] = {}
    for execution_id in set(picks.values()):
        try:
            execution = store.get(execution_id)
        except NotFound:
            continue
        if who.sees(execution.installation_id):
            seen[execution.id] = execution
    workers = [WorkerRow(w, seen.get(picks.get(w.current or "", ""))) for w in found.workers]
    meter: resources.HostMeter = current_app.extensions[HOST_METER]
    used = found.memory_total_bytes - found.memory_available_bytes
    return render_template("resources.html", res=found, workers=workers, running=_running(store, who, seen),
                           host_cpu=meter.cpu_percent(), memory_used=used, now=datetime.now(UTC),
                           refresh=RESOURCES_REFRESH_MS)


# -- audit -------------------------------------------------------------------------------------------
@bp.get("/audit")
def audit_page() -> ResponseReturnValue:
    """Who did what, when: the audit records of the viewer's installations, filtered by the query string."""
    who, store = _who(), _store()
    query, problems = audit.parse_query(request.args)
    found = audit.page(store.r, f"{store.namespace}:audit", who, query)
    names = {int(i["id"]): str(i["account"]) for i in store.installations()}
    ids = {i for i in names if who.sees(i)} | set(who.roles)
    installations = sorted(((i, names.get(i, f"installation {i}")) for i in ids), key=lambda p: p[1].lower())
    return render_template("audit.html", query=query, problems=problems, page=found, kinds=audit.KINDS,
                           installations=installations), 400 if problems else 200
