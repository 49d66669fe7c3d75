"""The REST API (DESIGN §14): `/api/devteam/...` JSON beside the dashboard, same roles and scoping.

Who calls: a script with `Authorization: Bearer clr_…` (clarity.apitokens) or a signed-in browser
session (state-changing calls then carry the session's CSRF token); dashboard.auth's guard answers 401
before any of this runs. Scoping: an execution of an installation the caller does not see is a 404,
exactly like an id that does not exist, and lists never hold one. Roles: team_member to initialize,
stop, resume, move the stop point, override and replay; manager to re-prioritise.

Acting goes through `clarity.engine_port.EnginePort` on `app.extensions["clarity.engine_port"]`
(jobs.api_engine, wired by app.create_app), i.e. the same engine functions as the comment commands.
Bodies are declared once in dashboard.api_models; spectree validates them (422 with each field and
why) and writes the OpenAPI document served at `/api/openapi.json`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from json import dumps
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from spectree import Response as Declared
from spectree import SecurityScheme, SpecTree
from spectree.models import SecureType, SecuritySchemeData

from clarity import artifacts, history, numbers, resources, stopping
from clarity import budget as budgets
from clarity.engine_port import EnginePort, EngineRefusal, Start, Unprocessable
from clarity.models import Execution, TaskProgress
from clarity.redaction import redact
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import NotFound, Store
from dashboard import api_models as m
from dashboard import prd
from dashboard.appctx import PORT
from dashboard.appctx import port as _port
from dashboard.appctx import store as _store
from dashboard.auth import Viewer, visible_executions
from dashboard.live import viewer
from dashboard.pages import HOST_METER

bp = Blueprint("api", __name__, url_prefix="/api")
TEAM_MEMBER, MANAGER = "team_member", "manager"
RECENT = 20  # settled executions the dashboard endpoint lists
TASK_HISTORY_ENTRIES = 2000  # newest entries of an execution's stream its progress reads for the tasks' logs
SCAN_CHUNK, SCAN_CHUNKS = 100, 20  # a list request reads at most this many records per index


def _problem_body(req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any) -> None:
    """spectree's 422 body, rewritten as {message, errors: [{field, reason}]}."""
    if error is None or resp is None:
        return
    problems = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "__root__") or "body",
                 "reason": str(e.get("msg", "invalid"))} for e in adapter.validation_errors(error)]
    first = problems[0] if problems else {"field": "body", "reason": "invalid"}
    resp.set_data(dumps({"message": f"{first['field']}: {first['reason']}", "errors": problems}))
    resp.mimetype = "application/json"


def _schema_name(model: Any) -> str:
    return str(model.__name__)


def _nested_name(parent: str, child: str) -> str:
    return child


spec = SpecTree("flask", naming_strategy=_schema_name, nested_naming_strategy=_nested_name, mode="strict", title="Clarity REST API", version="1",
                description="Executions of tasks_list.md, as the comment commands drive them (DESIGN §14).",
                validation_error_model=m.ValidationProblem, before=_problem_body, annotations=True,
                security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))],
                security={"bearer": []})
Reply = BaseModel | tuple[BaseModel, int]  # spectree serialises the declared model


def _declared(ok: int, model: type, *errors: int) -> Declared:
    """The responses of an endpoint: `ok` with `model`, and its refusals with a Problem body."""
    return Declared(**{f"HTTP_{ok}": model}, HTTP_401=m.Problem,
                    **{f"HTTP_{code}": m.Problem for code in errors})


class ApiError(Exception):
    """A refusal the API answers with {message} and a status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _problem(message: str, **more: Any) -> dict[str, Any]:
    """A refusal's body: the message as plain text (the engine writes its refusals for GitHub comments,
    Markdown links and all), the links it named apart."""
    text, links = prd.plain_text(message)
    return {"message": text, **more, **({"links": links} if links else {})}


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> ResponseReturnValue:
    return jsonify(_problem(exc.message)), exc.status


@bp.errorhandler(EngineRefusal)
def _engine_refusal(exc: EngineRefusal) -> ResponseReturnValue:
    if isinstance(exc, Unprocessable):
        field = exc.field_name or "body"
        text, _ = prd.plain_text(exc.message)
        return jsonify(_problem(exc.message, errors=[{"field": field, "reason": text}])), 422
    return jsonify(_problem(exc.message)), exc.status


def init_app(app: Flask, port: EnginePort) -> None:
    """Register the API with the engine it acts through."""
    app.extensions[PORT] = port
    app.register_blueprint(bp)


# -- who, what, which ---------------------------------------------------------------------------
def _who() -> Viewer:
    who = viewer()
    if who is None:  # the guard answers first where sign-in is configured; a bare blueprint lands here
        raise ApiError(401, "sign in first, or send Authorization: Bearer <API token>")
    return who


def _visible(execution_id: str) -> tuple[Viewer, Execution]:
    """The execution, if the caller sees its installation; 404 alike for others' (never reveal they exist)."""
    who = _who()
    try:
        execution = _store().get(execution_id)
    except NotFound:
        _missing(execution_id)
    if not who.sees(execution.installation_id):
        _missing(execution_id)
    return who, execution


def _missing(execution_id: str) -> NoReturn:
    raise ApiError(404, f"no execution {execution_id}")


def _allowed(who: Viewer, installation_id: int, role: str, what: str, account: str) -> None:
    if not who.may(installation_id, role):
        held = who.role_in(installation_id) or "none"
        raise ApiError(403, f"{what} needs the {role} role in {account}; yours is {held}")


def _acting(execution_id: str, role: str, what: str) -> tuple[Viewer, Execution]:
    who, execution = _visible(execution_id)
    _allowed(who, execution.installation_id, role, what, execution.account)
    return who, execution


def _out(execution: Execution, sample: resources.Usage | None = None) -> m.AutonomousExecutionOut:
    """The record with the PRD's fields (`sample`: its step's processes now, if one runs it)."""
    settings: Settings = current_app.extensions["clarity.settings"]
    return m.AutonomousExecutionOut.model_validate(
        {**execution.to_json(), **prd.execution_fields(execution, settings.web_url, settings.public_url, sample)})


def _outs(executions: list[Execution]) -> list[m.AutonomousExecutionOut]:
    """Several executions, with the live samples of the active ones read in one round trip."""
    store = _store()
    samples = resources.recorded(store.r, store.namespace, [ex.id for ex in executions if ex.status.is_active])
    return [_out(ex, samples.get(ex.id)) for ex in executions]


def _out_now(execution: Execution) -> m.AutonomousExecutionOut:
    """One execution as it is now, with its live sample if a step runs it."""
    return _outs([execution])[0]


# -- executions ---------------------------------------------------------------------------------
@bp.post("/devteam/executions/initialize")
@spec.validate(json=m.InitializeBody, resp=_declared(201, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["executions"])
def initialize(json: m.InitializeBody) -> Reply:
    """Start an execution: `/clarity run` on `issueNumber`, or on a new tracking issue when it is left out.

    The PRD's body `{customerId, projectId, repositoryUrl, stopPoint}` works too: the repository is the
    one `repositoryUrl` names on the GitHub Clarity uses (or `projectId`), and `customerId` is its account.
    """
    _agreeing(json)
    who = _who()
    installation = _port().installation_of(json.repository)
    if installation is None or not who.sees(installation):  # not installed, or not the caller's: the same 404
        raise ApiError(404, f"no repository {json.repository} that Clarity works on for you")
    _allowed(who, installation, TEAM_MEMBER, "initialize", json.repository.split("/", 1)[0])
    execution = _port().initialize(Start(
        json.repository, who.login, json.issueNumber, json.stopPoint, json.priority, json.tool,
        budgets.from_api(json.budget).spec()))
    return _out_now(execution), 201


def _agreeing(json: m.InitializeBody) -> None:
    """The PRD's names of the repository agree with each other and with this deployment's GitHub."""
    settings: Settings = current_app.extensions["clarity.settings"]
    owner = json.repository.split("/", 1)[0]
    if json.repositoryUrl is not None:
        web, url = urlsplit(settings.web_url), urlsplit(json.repositoryUrl)
        if (url.hostname, url.port) != (web.hostname, web.port) or \
                not url.path.lower().startswith(web.path.rstrip("/").lower() + "/"):
            raise Unprocessable(f"repositoryUrl {json.repositoryUrl} is not on {settings.web_url}, the GitHub "
                                "Clarity works with", "repositoryUrl")
        if m.repository_of(json.repositoryUrl) != json.repository:
            raise Unprocessable(f"repositoryUrl names {m.repository_of(json.repositoryUrl)}, repository names "
                                f"{json.repository}: give one of them, or the same repository", "repositoryUrl")
    if json.projectId is not None and json.projectId.lower() != json.repository.lower():
        raise Unprocessable(f"projectId {json.projectId} is not {json.repository}: Clarity's project is the "
                            "repository, owner/name", "projectId")
    if json.customerId is not None and json.customerId.lower() != owner.lower():
        raise Unprocessable(f"customerId {json.customerId} is not {owner}: Clarity's customer is the account "
                            "that owns the repository", "customerId")


@bp.get("/devteam/executions")
@spec.validate(query=m.ListQuery, resp=_declared(200, m.ExecutionPage), tags=["executions"])
def list_executions(query: m.ListQuery) -> Reply:
    """Executions the caller sees, newest first; filter by installation, repo and status; page with cursor."""
    found, cursor = _page(_who(), query, lambda ex: query.status is None or ex.status is query.status)
    return m.ExecutionPage(executions=_outs(found), nextCursor=cursor)


def _page(who: Viewer, query: m.ListQuery | m.HistoryQuery,
          matches: Callable[[Execution], bool]) -> tuple[list[Execution], str | None]:
    """One page of the caller's executions that match, and the cursor of the next page (None: the last)."""
    before = None
    if query.cursor:
        created, _, execution_id = query.cursor.partition(":")
        before = (float(created), execution_id)
    found, more = _select(_store(), who, query, before, matches)
    last = found[-1] if found and more else None
    return found, f"{last.created_at!r}:{last.id}" if last else None


def _select(store: Store, who: Viewer, query: m.ListQuery | m.HistoryQuery, before: tuple[float, str] | None,
            matches: Callable[[Execution], bool]) -> tuple[list[Execution], bool]:
    """One page of the caller's executions matching the filters, and whether there may be more."""
    if query.installation is not None and not who.sees(query.installation):
        return [], False
    if query.repo or query.installation is not None or who.everything:
        indexes: list[tuple[str | None, int | None]] = [(query.repo, query.installation)]
    else:
        indexes = [(None, inst) for inst in sorted(who.roles)]

    def wanted(ex: Execution) -> bool:
        return (who.sees(ex.installation_id) and matches(ex)
                and (query.installation is None or ex.installation_id == query.installation))

    found: list[Execution] = []
    boundary: tuple[float, str] | None = None  # an index scanned only down to here: nothing older is sure
    for repo, inst in indexes:
        hits, stopped = _scan(store, repo, inst, before, wanted, query.limit + 1)
        found += hits
        if stopped is not None and (boundary is None or stopped > boundary):
            boundary = stopped
    found.sort(key=lambda ex: (ex.created_at, ex.id), reverse=True)
    if boundary is not None:
        found = [ex for ex in found if (ex.created_at, ex.id) >= boundary]
    more = len(found) > query.limit or boundary is not None
    return found[:query.limit], more


def _scan(store: Store, repo: str | None, inst: int | None, before: tuple[float, str] | None,
          wanted: Callable[[Execution], bool], need: int) -> tuple[list[Execution], tuple[float, str] | None]:
    """Matches older than `before` in one index, up to `need`; and where the scan stopped short, if it did."""
    found: list[Execution] = []
    position = before
    for _ in range(SCAN_CHUNKS):
        chunk = store.executions_before(position, SCAN_CHUNK, repo=repo, installation_id=inst)
        for ex in chunk:
            position = (ex.created_at, ex.id)
            if wanted(ex):
                found.append(ex)
                if len(found) >= need:
                    return found, None
        if len(chunk) < SCAN_CHUNK:
            return found, None
    return found, position


@bp.get("/devteam/executions/dashboard")
@spec.validate(resp=_declared(200, m.DashboardOut), tags=["executions"])
def dashboard() -> Reply:
    """Active, queued and recent executions the caller sees, the engine's resources, and totals.

    The PRD's DashboardState: `lastUpdated` (ISO); in `systemResources` `totalSlots`, `availableSlots`,
    `cpuUsage` and `memoryUsage` (percent of this host) and `activeContainers` (sandboxes running now).
    """
    who = _who()
    seen = visible_executions(_store(), who, limit=500)
    active = [ex for ex in seen if ex.status.is_active]
    queued = [ex for ex in seen if ex.status is ExecutionStatus.QUEUED]
    recent = [ex for ex in seen if not ex.status.is_active and ex.status is not ExecutionStatus.QUEUED][:RECENT]
    by_status: dict[str, int] = {}
    for ex in seen:
        by_status[str(ex.status)] = by_status.get(str(ex.status), 0) + 1
    totals = numbers.total_of(seen)  # the success rate over all their tasks, as each execution's is defined
    metrics = m.MetricsOut(executions=len(seen), byStatus=by_status, tasksCompleted=totals.done,
                           attempts=totals.attempts, successRate=numbers.wire_rate(totals.passed, totals.failed),
                           errorCount=totals.errors, retryCount=totals.retries)
    return m.DashboardOut(active=_outs(active), queued=_outs(queued), recent=_outs(recent),
                          systemResources=_resources(), metrics=metrics, lastUpdated=prd.iso_at(time.time()))


def _described(summary: str, description: str) -> Callable[[Callable[..., Reply]], Callable[..., Reply]]:
    """Give a view its OpenAPI summary and a description defined once elsewhere (the help and replies quote it)."""
    def give(view: Callable[..., Reply]) -> Callable[..., Reply]:
        view.__doc__ = f"{summary}\n\n{description}"
        return view
    return give


@bp.post("/devteam/executions/<execution_id>/stop")
@spec.validate(resp=_declared(200, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["executions"])
@_described("Stop an execution, as `/clarity stop`.", stopping.MEANS)
def stop(execution_id: str) -> Reply:
    """Stop an execution (its OpenAPI description is clarity.stopping.MEANS)."""
    who, execution = _acting(execution_id, TEAM_MEMBER, "stop")
    return _out_now(_port().stop(execution.id, who.login))


@bp.post("/devteam/executions/<execution_id>/resume")
@spec.validate(resp=_declared(200, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["executions"])
def resume(execution_id: str) -> Reply:
    """Continue a paused or blocked execution where it stopped."""
    who, execution = _acting(execution_id, TEAM_MEMBER, "resume")
    return _out_now(_port().resume(execution.id, who.login))


@bp.post("/devteam/executions/<execution_id>/set-stop-point")
@spec.validate(json=m.StopPointBody, resp=_declared(200, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["executions"])
def set_stop_point(execution_id: str, json: m.StopPointBody) -> Reply:
    """Move the stop point of a live or paused execution (a paused one then waits for resume)."""
    who, execution = _acting(execution_id, TEAM_MEMBER, "set-stop-point")
    return _out_now(_port().set_stop_point(execution.id, json.stopPoint, who.login))


@bp.post("/devteam/executions/<execution_id>/manual-override")
@spec.validate(json=m.OverrideBody, resp=_declared(200, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["executions"])
def manual_override(execution_id: str, json: m.OverrideBody) -> Reply:
    """Mark a task done (ticked without the agent) or skipped, optionally saying why (`reason`); the override is
    recorded as the task's outcome (task_outcomes.md, the PR, its commit); a paused or blocked execution resumes."""
    who, execution = _acting(execution_id, TEAM_MEMBER, "manual-override")
    return _out_now(_port().override(execution.id, json.taskId, json.action, who.login, json.reason or ""))


@bp.post("/devteam/executions/<execution_id>/replay")
@spec.validate(json=m.ReplayBody, resp=_declared(200, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["executions"])
def replay(execution_id: str, json: m.ReplayBody) -> Reply:
    """Run a blocked or paused execution again from `fromTask`: it and the later tasks that failed or were skipped
    run again (every failed task without it); 409 with the reason when that is none (a done task is never re-run)."""
    who, execution = _acting(execution_id, TEAM_MEMBER, "replay")
    return _out_now(_port().replay(execution.id, who.login, json.fromTask, json.tool, json.stopPoint))


@bp.get("/devteam/executions/<execution_id>/progress")
@spec.validate(resp=_declared(200, m.ProgressOut, 404), tags=["executions"])
def progress(execution_id: str) -> Reply:
    """Every task with its status, attempts, tool, duration and error class; and the estimates.

    The PRD's TaskProgression beside them: `dependencies`, `acceptanceCriteria`, `durationMs`, `startedAt`,
    `completedAt`, `executionLog` (its newest log lines and status moves) and `errorResolutionLog` (each
    failed attempt and what came of it); and `progress` (percent), `estimatedCompletion` (ISO).
    """
    _, execution = _visible(execution_id)
    starts, finishes = _port().estimate(execution)
    store = _store()
    histories = prd.task_histories(store.log_lines(execution.id, TASK_HISTORY_ENTRIES))
    tasks = [_progression_out(task, histories.get(task.task_id, prd.TaskHistory()))
             for task in store.tasks(execution.id).values()]
    settled = execution.status.is_settled or finishes is None
    return m.ProgressOut(executionId=execution.id, status=execution.status, stopPoint=execution.stop_point,
                         currentTask=execution.current_task, tasksCompleted=execution.tasks_completed,
                         tasksTotal=execution.tasks_total, tasks=tasks, estimatedStartSeconds=starts,
                         estimatedFinishSeconds=finishes, estimatedStartMs=prd.ms(starts),
                         estimatedFinishMs=prd.ms(finishes), progress=prd.percent_done(execution),
                         lastProgressAt=prd.iso(execution.updated_at or execution.created_at),
                         estimatedCompletion=None if settled else prd.iso_at(time.time() + (finishes or 0.0)))


@bp.get("/devteam/executions/<execution_id>/artifacts")
@spec.validate(resp=_declared(200, m.ArtifactsOut, 404), tags=["executions"])
def list_artifacts(execution_id: str) -> Reply:
    """The execution's artifacts (per task and attempt), each with the URL that serves it."""
    _, execution = _visible(execution_id)
    settings: Settings = current_app.extensions["clarity.settings"]
    found = artifacts.lookup(settings.artifacts_dir, execution.id)
    entries = found if isinstance(found, list) else []
    base = f"{settings.public_url}/executions/{execution.id}/artifacts"
    return m.ArtifactsOut(executionId=execution.id, artifacts=[
        m.ArtifactOut(path=e.path, isDir=e.is_dir, size=e.size, url=f"{base}/{e.path}") for e in entries])


def _task_fields(task: TaskProgress) -> dict[str, Any]:
    return {"id": task.task_id, "title": task.title, "status": task.status, "attempts": task.attempts,
            "tool": task.tool, "duration": task.duration, "errorClass": task.error_class,
            "lastError": redact(task.last_error), "commit": task.commit, "overrideBy": task.override_by,
            "taskId": task.task_id, "durationMs": prd.ms(task.duration), "retryCount": numbers.row(task, True).retries,
            "dependencies": list(task.depends), "acceptanceCriteria": list(task.criteria)}


def _task_out(task: TaskProgress) -> m.TaskOut:
    return m.TaskOut(**_task_fields(task))


def _progression_out(task: TaskProgress, history: prd.TaskHistory) -> m.TaskProgressionOut:
    """A task with its history from the execution's event stream (the PRD's TaskProgression)."""
    return m.TaskProgressionOut(
        **_task_fields(task), startedAt=prd.iso(history.started_at), completedAt=prd.iso(history.completed_at),
        executionLog=[m.LogEntryOut.model_validate(e) for e in history.log],
        errorResolutionLog=[m.ErrorResolutionOut.model_validate(e) for e in history.errors])


# -- history ------------------------------------------------------------------------------------
def _record_out(record: history.Record) -> m.HistoryExecutionOut:
    return m.HistoryExecutionOut.model_validate(
        {**_out(record.execution).model_dump(), "tasks": [_task_out(t) for t in record.tasks]})


@bp.get("/devteam/history/executions")
@spec.validate(query=m.HistoryQuery, resp=_declared(200, m.HistoryPage), tags=["history"])
def history_executions(query: m.HistoryQuery) -> Reply:
    """Finished executions (completed, failed, stopped) the caller sees, newest first, with their tasks.

    Filter by installation, repo, status and `since` (finished at or after, epoch seconds); page with cursor.
    """
    def matches(ex: Execution) -> bool:
        return (history.is_finished(ex) and (query.status is None or ex.status == query.status)
                and (query.since is None or history.finished_time(ex) >= query.since))

    found, cursor = _page(_who(), query, matches)
    tables = _store().tasks_of([ex.id for ex in found])  # one round trip for the page
    return m.HistoryPage(executions=[_record_out(history.Record(ex, tuple(tables[ex.id].values())))
                                     for ex in found], nextCursor=cursor)


@bp.get("/devteam/history/executions/<execution_id>")
@spec.validate(resp=_declared(200, m.HistoryExecutionOut, 404), tags=["history"])
def history_execution(execution_id: str) -> Reply:
    """One finished execution with the outcome of each task (404 while it has not finished)."""
    _, execution = _visible(execution_id)
    if not history.is_finished(execution):
        raise ApiError(404, f"execution {execution_id} has not finished (status {execution.status}): "
                            f"see /api/devteam/executions/{execution_id}/progress")
    [record] = history.read_records(_store(), [execution])
    return _record_out(record)


@bp.get("/devteam/history/trends")
@spec.validate(query=m.TrendsQuery, resp=_declared(200, m.TrendsOut), tags=["history"])
def history_trends(query: m.TrendsQuery) -> Reply:
    """Per customer the caller sees, over the last `days` UTC days: tasks per day, success rate, task time."""
    who, now = _who(), time.time()
    since = history.window_start(now, query.days)
    found = history.read_finished(_store(), None if who.everything else list(who.roles), since=since)
    return m.TrendsOut(days=query.days, since=since, customers=[_trend_out(t) for t in history.trends(
        [r for r in found if who.sees(r.execution.installation_id)], query.days, now)])


def _trend_out(trend: history.Trend) -> m.CustomerTrendOut:
    return m.CustomerTrendOut(
        installationId=trend.installation_id, account=trend.account, executions=trend.executions,
        tasksCompleted=trend.tasks.completed, tasksFailed=trend.tasks.failed,
        successRate=trend.tasks.success_rate, meanTaskSeconds=trend.tasks.mean_seconds,
        perDay=[m.DayOut(date=day, tasksCompleted=n) for day, n in trend.per_day],
        tools=[m.ToolTrendOut(tool=name, tasksCompleted=t.completed, tasksFailed=t.failed,
                              successRate=t.success_rate, meanTaskSeconds=t.mean_seconds)
               for name, t in trend.tools.items()],
        errorClasses=trend.error_classes)


# -- resources ----------------------------------------------------------------------------------
def _resources() -> m.ResourcesOut:
    found = _port().resources()
    store = _store()
    stepping = store.ready.slots([w.current for w in found.workers if w.current])  # job id → execution id
    running = resources.recorded(store.r, store.namespace, sorted(set(stepping.values())))
    meter = current_app.extensions.setdefault(HOST_METER, resources.HostMeter())  # the Resources page's
    total, available = found.memory_total_bytes, found.memory_available_bytes
    return m.ResourcesOut(
        workers=[m.WorkerOut(name=w.name, state=w.state, currentJob=w.current) for w in found.workers],
        slotsInUse=found.slots_in_use, readyExecutions=found.ready,
        queueDepths={str(p): n for p, n in found.queue_depths.items()},
        host=m.HostOut(cpuCount=found.cpu_count, loadAverage=list(found.load_average),
                       memoryTotalBytes=total, memoryAvailableBytes=available),
        totalSlots=len(found.workers), availableSlots=max(len(found.workers) - found.slots_in_use, 0),
        cpuUsage=meter.cpu_percent(), memoryUsage=round(100.0 * (total - available) / total, 1) if total else 0.0,
        activeContainers=len(running))


@bp.get("/devteam/resources/status")
@spec.validate(resp=_declared(200, m.ResourcesOut), tags=["resources"])
def resources_status() -> Reply:
    """Steps workers, slots in use, queue depths per priority, and this host's CPU and memory."""
    _who()
    return _resources()


@bp.get("/devteam/resources/queue")
@spec.validate(resp=_declared(200, m.QueueOut), tags=["resources"])
def resources_queue() -> Reply:
    """The caller's waiting executions: position, priority and estimated start (positions count everyone)."""
    who = _who()
    return m.QueueOut(entries=[
        m.QueueEntryOut(executionId=e.execution_id, repository=e.repository, status=ExecutionStatus(e.status),
                        priority=e.priority, position=e.position, waitingFor=e.waiting_for,
                        estimatedStartSeconds=e.starts_in, estimatedStartMs=prd.ms(e.starts_in))
        for e in _port().queue() if who.sees(e.installation_id)])


@bp.post("/devteam/resources/prioritize")
@spec.validate(json=m.PrioritizeBody, resp=_declared(200, m.AutonomousExecutionOut, 403, 404, 409, 503), tags=["resources"])
def prioritize(json: m.PrioritizeBody) -> Reply:
    """Give an execution another priority; a waiting one moves in line at once (managers)."""
    who, execution = _acting(json.executionId, MANAGER, "prioritize")
    return _out_now(_port().prioritise(execution.id, json.priority, who.login))


# -- a repository's task list (the dashboard's stop-point pickers) -------------------------------
REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")


@bp.get("/devteam/repos/<owner>/<repo>/tasks")
@spec.validate(query=m.RepositoryTasksQuery, resp=_declared(200, m.RepositoryTasksOut, 404, 503),
               tags=["repositories"])
def repository_tasks(owner: str, repo: str, query: m.RepositoryTasksQuery) -> Reply:
    """The tasks and groups of a repository's tasks_list.md on its default branch (or `ref`): its stop points.

    Read from GitHub through the app, as the engine reads it. A repository Clarity is not installed on,
    or one of an installation the caller does not see, is the same 404.
    """
    who = _who()
    repository = f"{owner}/{repo}"
    if not REPOSITORY.match(repository) or ".." in repository or repo == ".":
        raise Unprocessable(f"`{repository}` is not a repository name (owner/name)", "repository")
    if query.ref and ".." in query.ref:
        raise Unprocessable(f"`{query.ref}` is not a branch name", "ref")
    installation = _port().installation_of(repository)
    if installation is None or not who.sees(installation):
        raise ApiError(404, f"no repository {repository} that Clarity works on for you")
    listing = _port().task_list(repository, installation, query.ref)
    return m.RepositoryTasksOut(repository=listing.repository, ref=listing.ref, file=listing.filename, tasks=[
        m.ListedTaskOut(id=t.id, title=t.title, done=listing.tasks.is_done(t.id), parent=t.parent,
                        level=t.id.count(".") + 1, isLeaf=t.is_leaf, isGroup=t.is_group)
        for t in listing.tasks.tasks])


# -- the document -------------------------------------------------------------------------------
@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this API, generated from the declarations above."""
    return jsonify(spec.spec)
