"""The REST API's request and response bodies, declared once: pydantic validates them and spectree writes
the OpenAPI document from them. Field names are the wire's (camelCase, as the PRD's data models)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from clarity import budget
from clarity.status import ExecutionStatus, TaskStatus

TaskId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,9}$")]
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
_NAME = r"[A-Za-z0-9_.-]{0,99}[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}"  # not only dots: never "." or ".."
# owner/name: a GitHub API path built from it must not climb out of /repos/ (`../app` is not a repository)
RepoName = Annotated[str, StringConstraints(max_length=201, pattern=rf"^{_NAME}/{_NAME}$")]
ExecutionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Priority = Annotated[int, Field(ge=1, le=10, description="1 to 10; 10 runs first, 5 by default")]
Login = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")]
# http(s)://host[:port][/prefix...]/owner/name[.git][/]: the repository is the last two path segments
_URL = re.compile(rf"^https?://[A-Za-z0-9.-]{{1,253}}(?::[0-9]{{1,5}})?(?:/[A-Za-z0-9_.~-]{{1,100}}){{0,5}}"
                  rf"/{_NAME}/{_NAME}/?$")
RepositoryUrl = Annotated[str, StringConstraints(max_length=2048, pattern=_URL.pattern)]


def repository_of(url: str) -> str | None:
    """`owner/name` of a repository's web URL (`.git` and a trailing slash dropped); None when it is not one."""
    if not _URL.match(url):
        return None
    owner, name = url.rstrip("/").split("/")[-2:]
    return f"{owner}/{name.removesuffix('.git')}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored


# -- errors -------------------------------------------------------------------------------------
class LinkOut(BaseModel):
    """A link a message named (the message itself is plain text)."""

    text: str
    url: str


class Problem(BaseModel):
    """Why a request was refused (401, 403, 404, 409): plain text, its links apart."""

    message: str
    links: list[LinkOut] = Field(default_factory=list, description="what the message refers to (left out when nothing)")


class FieldProblem(BaseModel):
    """One field that cannot be used, and why."""

    field: str
    reason: str


class ValidationProblem(BaseModel):
    """A 422: the fields that cannot be used."""

    message: str
    errors: list[FieldProblem]
    links: list[LinkOut] = Field(default_factory=list, description="what the message refers to (left out when nothing)")


# -- requests -----------------------------------------------------------------------------------
def _one_repository(schema: dict[str, Any]) -> None:
    """The document's view of InitializeBody: `repository`, `repositoryUrl` or `projectId` names the repository."""
    schema["required"] = [name for name in schema.get("required", []) if name != "repository"]
    if not schema["required"]:
        del schema["required"]
    schema["anyOf"] = [{"required": [name], "properties": {name: {"type": "string"}}}
                       for name in ("repository", "repositoryUrl", "projectId")]


class InitializeBody(_Body):
    """Start an execution, as `/clarity run` on an issue (a tracking issue is opened when none is named).

    Clarity's body names the repository as `repository`; the PRD's body as `repositoryUrl` (its web URL on
    the GitHub Clarity uses) with `customerId` (the account) and `projectId` (`owner/name`). Either works,
    and what is given must agree.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_repository)

    customerId: Login | None = Field(None, description="the PRD's customer: the repository's account (owner)")
    projectId: RepoName | None = Field(None, description="the PRD's project: the repository, owner/name")
    repositoryUrl: RepositoryUrl | None = Field(
        None, description="the PRD's repository: its web URL on the GitHub Clarity uses, https://…/owner/name")
    repository: RepoName = Field(description="owner/name (may be left out when repositoryUrl or projectId names it)")
    issueNumber: int | None = Field(None, ge=1, le=2**31 - 1)
    stopPoint: TaskId | None = None
    priority: Priority | None = None
    tool: ToolName | None = None
    budget: str | dict[str, str | int | float] | None = Field(
        None, description='limits over the repository\'s: words ("30m $5 attempts=40") or {"time": "30m", "cost": 5}')

    @field_validator("budget")
    @classmethod
    def _readable(cls, value: Any) -> Any:
        budget.from_api(value)  # BudgetError is a ValueError: pydantic reports its message on the field
        return value

    @model_validator(mode="before")
    @classmethod
    def _named_repository(cls, data: Any) -> Any:
        """The PRD's body names the repository by its URL (else its project id): that is `repository`."""
        if not isinstance(data, dict) or data.get("repository") is not None:
            return data
        url = data.get("repositoryUrl")
        found = repository_of(url) if isinstance(url, str) else None
        if found:
            return {**data, "repository": found}
        if isinstance(data.get("projectId"), str):
            return {**data, "repository": data["projectId"]}
        return data


class StopPointBody(_Body):
    """The task the execution stops after."""

    stopPoint: TaskId


class OverrideBody(_Body):
    """A person settles a task, and may say why (recorded with the outcome: task_outcomes.md, the PR, the commit)."""

    taskId: TaskId
    action: Literal["done", "skipped"]
    reason: str | None = Field(None, min_length=1, max_length=200)


class ReplayBody(_Body):
    """Run a blocked or paused execution again from a task."""

    fromTask: TaskId | None = None
    tool: ToolName | None = None
    stopPoint: TaskId | None = None


class PrioritizeBody(_Body):
    """Give an execution another priority (managers)."""

    executionId: ExecutionId
    priority: Priority


class ListQuery(_Body):
    """Filters and the page of `GET /api/devteam/executions`."""

    installation: int | None = Field(None, ge=1, le=2**53)
    repo: RepoName | None = None
    status: ExecutionStatus | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,16}(\.[0-9]{1,20})?:[A-Za-z0-9_-]{1,64}$",
                               description="nextCursor of the previous page")


FinishedStatus = Literal["completed", "failed", "stopped"]  # the statuses of history (terminal)


class HistoryQuery(_Body):
    """Filters and the page of `GET /api/devteam/history/executions`."""

    installation: int | None = Field(None, ge=1, le=2**53)
    repo: RepoName | None = None
    status: FinishedStatus | None = None
    since: float | None = Field(None, ge=0, le=1e11, description="epoch seconds: finished at or after")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,16}(\.[0-9]{1,20})?:[A-Za-z0-9_-]{1,64}$",
                               description="nextCursor of the previous page")


class TrendsQuery(_Body):
    """The window of `GET /api/devteam/history/trends`."""

    days: int = Field(30, ge=1, le=365, description="UTC calendar days, ending today")


# -- responses ----------------------------------------------------------------------------------
class ExecutionOut(BaseModel):
    """An execution (the PRD's AutonomousExecution: customer = account, project = repo)."""

    model_config = ConfigDict(extra="allow")  # fields added to the record later pass through

    id: str
    installationId: int
    repo: str
    account: str
    issueNumber: int
    isPullRequest: bool
    branch: str
    baseBranch: str
    requester: str
    status: ExecutionStatus
    stopPoint: str | None
    only: str | None
    tool: str | None
    priority: int
    createdAt: float
    updatedAt: float
    startedAt: float
    finishedAt: float
    currentTask: str | None
    tasksCompleted: int
    tasksTotal: int
    errorCount: int
    retryCount: int
    attempts: int
    tasksLeft: int = Field(description="tasks in scope still to run (clarity.numbers)")
    tasksPassed: int = Field(description="tasks the engine ran to completed (clarity.numbers)")
    tasksFailed: int = Field(description="tasks the engine ran to failed (clarity.numbers)")
    prNumber: int | None
    prUrl: str | None
    triggerCommentId: int | None
    summaryCheckId: int | None
    summarySha: str
    reason: str
    budget: str
    timeUsed: float
    costUsd: float
    tokensUsed: int
    successRate: float


# The PRD's times: ISO 8601 in UTC with milliseconds, 2024-05-01T12:00:00.000Z
Iso = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")]


class ResourceUsageOut(BaseModel):
    """The PRD's resourceUsage: what an execution used, and its processes now while a step runs it."""

    timeUsedMs: int = Field(description="active time: the sum of its steps' durations")
    attempts: int
    costUsd: float = Field(description="what its agents reported spending")
    tokensUsed: int
    cpuPercent: float | None = Field(description="its step's processes now, % of one core (null: no step runs)")
    memoryBytes: int | None = Field(description="its step's processes' resident memory now (null: no step runs)")
    processes: int | None
    sampledAt: Iso | None


class ArtifactsLinkOut(BaseModel):
    """Where an execution's artifacts are listed (per task and attempt)."""

    url: str = Field(description="this API's listing: GET …/executions/{id}/artifacts")
    page: str = Field(description="the dashboard's folder page")


class AutonomousExecutionOut(ExecutionOut):
    """An execution with the PRD's AutonomousExecution fields beside Clarity's record.

    Clarity's own times stay epoch seconds (`createdAt`, `startedAt`, ...); the PRD's fields use its
    units: ISO 8601 times, milliseconds, a percentage.
    """

    customerId: str = Field(description="the customer: the installation's account")
    projectId: str = Field(description="the project: the repository, owner/name")
    repositoryUrl: str
    lastProgressAt: Iso | None = Field(description="when the record last changed (a task or status moved)")
    progress: float = Field(description="percent of the tasks in scope done (0 to 100)")
    resourceUsage: ResourceUsageOut
    artifacts: ArtifactsLinkOut


class ExecutionPage(BaseModel):
    """One page of executions, newest first."""

    executions: list[AutonomousExecutionOut]
    nextCursor: str | None


class TaskOut(BaseModel):
    """One task's progress (the PRD's TaskProgression)."""

    id: str
    title: str
    status: TaskStatus
    attempts: int
    tool: str
    duration: float
    errorClass: str
    lastError: str
    commit: str
    overrideBy: str
    taskId: str = Field(description="the PRD's name of `id`")
    durationMs: int = Field(description="`duration` (seconds) in milliseconds")
    retryCount: int = Field(description="attempts after the first")
    dependencies: list[str] = Field(description="its `depends:` ids (as read when the engine took the task)")
    acceptanceCriteria: list[str] = Field(description="its `check:` lines (as read when the engine took the task)")


class LogEntryOut(BaseModel):
    """One line of a task's log (a log line or a status move), plain text."""

    id: str = Field(description="its id in the execution's event stream (a cursor of /live)")
    timestamp: Iso | None
    kind: Literal["log", "task.status"]
    level: str
    message: str


class ErrorResolutionOut(BaseModel):
    """One failed attempt of a task and what came of it."""

    attempt: int
    error: str = Field(description="what the attempt's checks or agent said (redacted)")
    occurredAt: Iso | None
    resolution: str = Field(description="\"retried: attempt N\", \"resolved: …\", \"failed: …\", \"skipped\" or \"pending\"")
    resolvedAt: Iso | None


class TaskProgressionOut(TaskOut):
    """One task's progress with its history: the PRD's TaskProgression."""

    startedAt: Iso | None
    completedAt: Iso | None
    executionLog: list[LogEntryOut] = Field(description="its newest log lines and status moves, oldest first")
    errorResolutionLog: list[ErrorResolutionOut]


class ProgressOut(BaseModel):
    """Where an execution is: its tasks, and when it should go on and end."""

    executionId: str
    status: ExecutionStatus
    stopPoint: str | None
    currentTask: str | None
    tasksCompleted: int
    tasksTotal: int
    tasks: list[TaskProgressionOut]
    estimatedStartSeconds: float | None
    estimatedFinishSeconds: float | None
    estimatedStartMs: int | None = Field(description="estimatedStartSeconds in milliseconds")
    estimatedFinishMs: int | None = Field(description="estimatedFinishSeconds in milliseconds")
    progress: float = Field(description="percent of the tasks in scope done (0 to 100)")
    lastProgressAt: Iso | None
    estimatedCompletion: Iso | None = Field(description="estimatedFinishSeconds from now (null: unknown or settled)")


class ArtifactOut(BaseModel):
    """A file or folder an attempt left, and where to read it."""

    path: str
    isDir: bool
    size: int
    url: str


class ArtifactsOut(BaseModel):
    """Everything in an execution's artifacts folder (empty before its first attempt)."""

    executionId: str
    artifacts: list[ArtifactOut]


class WorkerOut(BaseModel):
    """A steps worker."""

    name: str
    state: str
    currentJob: str | None


class HostOut(BaseModel):
    """The web host, from /proc."""

    cpuCount: int
    loadAverage: list[float]
    memoryTotalBytes: int
    memoryAvailableBytes: int


class ResourcesOut(BaseModel):
    """Capacity and load."""

    workers: list[WorkerOut]
    slotsInUse: int
    readyExecutions: int
    queueDepths: dict[str, int] = Field(description="slot jobs queued per priority (\"10\" … \"1\")")
    host: HostOut
    totalSlots: int = Field(description="steps workers up: each runs one step at a time (the scheduler's capacity)")
    availableSlots: int = Field(description="totalSlots less slotsInUse")
    cpuUsage: float = Field(description="this host's CPUs busy lately, percent of all (the Resources page's reading)")
    memoryUsage: float = Field(description="this host's memory in use, percent of MemTotal")
    activeContainers: int = Field(description="sandboxes running now: steps with a live sample of their processes")


class QueueEntryOut(BaseModel):
    """An execution waiting for a worker or for its repository."""

    executionId: str
    repository: str
    status: ExecutionStatus
    priority: int
    position: int
    waitingFor: Literal["worker", "repository"]
    estimatedStartSeconds: float | None
    estimatedStartMs: int | None = Field(description="estimatedStartSeconds in milliseconds")


class QueueOut(BaseModel):
    """Who waits, in the order they will be served."""

    entries: list[QueueEntryOut]


class MetricsOut(BaseModel):
    """Totals over the executions the caller sees."""

    executions: int
    byStatus: dict[str, int]
    tasksCompleted: int
    attempts: int
    successRate: float
    errorCount: int
    retryCount: int


class DashboardOut(BaseModel):
    """What the dashboard's overview shows, as data."""

    active: list[AutonomousExecutionOut]
    queued: list[AutonomousExecutionOut]
    recent: list[AutonomousExecutionOut]
    systemResources: ResourcesOut
    metrics: MetricsOut
    lastUpdated: Iso = Field(description="when this state was read")


class HistoryExecutionOut(AutonomousExecutionOut):
    """A finished execution (completed, failed or stopped) with the outcome of each of its tasks."""

    tasks: list[TaskOut]


class HistoryPage(BaseModel):
    """One page of finished executions, newest first (by creation, as every list)."""

    executions: list[HistoryExecutionOut]
    nextCursor: str | None


class ToolTrendOut(BaseModel):
    """How the tasks a tool ran last ended."""

    tool: str
    tasksCompleted: int
    tasksFailed: int
    successRate: float
    meanTaskSeconds: float


class DayOut(BaseModel):
    """Tasks the engine completed on one UTC day (in executions that finished that day)."""

    date: str = Field(description="YYYY-MM-DD (UTC)")
    tasksCompleted: int


class CustomerTrendOut(BaseModel):
    """One customer (installation) over the window: tasks that ran to an outcome, not settled by hand."""

    installationId: int
    account: str
    executions: int = Field(description="executions that finished in the window")
    tasksCompleted: int
    tasksFailed: int
    successRate: float = Field(description="completed / (completed + failed)")
    meanTaskSeconds: float
    perDay: list[DayOut] = Field(description="every day of the window, oldest first")
    tools: list[ToolTrendOut]
    errorClasses: dict[str, int] = Field(description="tasks per error class of their last failed attempt")


class TrendsOut(BaseModel):
    """Trends per customer the caller sees, from the executions that finished in the window."""

    days: int
    since: float = Field(description="epoch seconds: the window's first instant (UTC midnight)")
    customers: list[CustomerTrendOut]


# -- a repository's task list (the dashboard's stop-point pickers) -------------------------------
BranchName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,254}$")]


class RepositoryTasksQuery(_Body):
    """Which branch to read the task list from."""

    ref: BranchName | None = Field(None, description="a branch; the repository's default branch when left out")


class ListedTaskOut(BaseModel):
    """A task or group of tasks_list.md: a possible stop point."""

    id: str
    title: str
    done: bool = Field(description="ticked (a parent or group: all of its tasks are)")
    parent: str | None
    level: int = Field(description="1 for a top-level id, 2 for 1.2, 3 for 1.2.3, ...")
    isLeaf: bool = Field(description="an executable task, not a parent or a heading group")
    isGroup: bool = Field(description="a heading (### 2.3 ...): it names its tasks but is not one")


class RepositoryTasksOut(BaseModel):
    """The tasks of a repository's tasks_list.md on one branch, in document order."""

    repository: str
    ref: str
    file: str = Field(description="the file read: `tasks_file` of .github/clarity.yml, tasks_list.md by default")
    tasks: list[ListedTaskOut]
