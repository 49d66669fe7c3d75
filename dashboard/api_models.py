"""The REST API's request and response bodies, declared once: pydantic validates them and spectree writes
the OpenAPI document from them. Field names are the wire's (camelCase, as the PRD's data models)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from clarity import budget
from clarity.status import ExecutionStatus, TaskStatus

TaskId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6}){0,9}$")]
ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
_NAME = r"[A-Za-z0-9_.-]{0,99}[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}"  # not only dots: never "." or ".."
# owner/name: a GitHub API path built from it must not climb out of /repos/ (`../app` is not a repository)
RepoName = Annotated[str, StringConstraints(max_length=201, pattern=rf"^{_NAME}/{_NAME}$")]
ExecutionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Priority = Annotated[int, Field(ge=1, le=10, description="1 to 10; 10 runs first, 5 by default")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored


# -- errors -------------------------------------------------------------------------------------
class Problem(BaseModel):
    """Why a request was refused (401, 403, 404, 409)."""

    message: str


class FieldProblem(BaseModel):
    """One field that cannot be used, and why."""

    field: str
    reason: str


class ValidationProblem(BaseModel):
    """A 422: the fields that cannot be used."""

    message: str
    errors: list[FieldProblem]


# -- requests -----------------------------------------------------------------------------------
class InitializeBody(_Body):
    """Start an execution, as `/clarity run` on an issue (a tracking issue is opened when none is named)."""

    repository: RepoName
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


class StopPointBody(_Body):
    """The task the execution stops after."""

    stopPoint: TaskId


class OverrideBody(_Body):
    """A person settles a task."""

    taskId: TaskId
    action: Literal["done", "skipped"]


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


class ExecutionPage(BaseModel):
    """One page of executions, newest first."""

    executions: list[ExecutionOut]
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


class ProgressOut(BaseModel):
    """Where an execution is: its tasks, and when it should go on and end."""

    executionId: str
    status: ExecutionStatus
    stopPoint: str | None
    currentTask: str | None
    tasksCompleted: int
    tasksTotal: int
    tasks: list[TaskOut]
    estimatedStartSeconds: float | None
    estimatedFinishSeconds: float | None


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


class QueueEntryOut(BaseModel):
    """An execution waiting for a worker or for its repository."""

    executionId: str
    repository: str
    status: ExecutionStatus
    priority: int
    position: int
    waitingFor: Literal["worker", "repository"]
    estimatedStartSeconds: float | None


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

    active: list[ExecutionOut]
    queued: list[ExecutionOut]
    recent: list[ExecutionOut]
    systemResources: ResourcesOut
    metrics: MetricsOut


class HistoryExecutionOut(ExecutionOut):
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
