"""What the REST API asks of the engine: a Protocol in the kernel, implemented by `jobs.api_engine`.

The dashboard may import only `clarity` (DESIGN §2), yet the API must act through the same code as
the comment commands. So the API blueprint talks to this port, `app.create_app` (the composition root)
puts the engine's implementation on `app.extensions["clarity.engine_port"]`, and the implementation
delegates to `jobs.control` and `jobs.scheduler`. Operations take ids and plain values; they return
the execution as it now is, or raise an `EngineRefusal` whose message is written for the caller.
Who may call what is the API's business (roles and installation scoping); the port trusts its caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from clarity.models import Execution
from clarity.tasklist import TaskList


class EngineRefusal(Exception):
    """The engine would not do it; the message says why (and what to do instead)."""

    status = 409  # the HTTP status the API answers with

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Conflict(EngineRefusal):
    """The execution's state does not allow it now (resume a completed execution, run beside a live one)."""


class Unprocessable(EngineRefusal):
    """A value the engine cannot use: a task id the list does not have, a budget it cannot read."""

    status = 422

    def __init__(self, message: str, field_name: str = "") -> None:
        super().__init__(message)
        self.field_name = field_name


class Missing(EngineRefusal):
    """A repository Clarity is not installed on, or an issue that does not exist."""

    status = 404


class Unavailable(EngineRefusal):
    """GitHub (or the engine's Redis) did not answer; trying again later may work."""

    status = 503


@dataclass(frozen=True, slots=True)
class Start:
    """What `initialize` starts: as `/clarity run` on an issue, or on a new tracking issue when none is named."""

    repository: str
    actor: str
    issue_number: int | None = None
    stop_point: str | None = None
    priority: int | None = None
    tool: str | None = None
    budget: str = ""  # canonical words of clarity.budget ("" = the repository's limits)


@dataclass(frozen=True, slots=True)
class TaskListing:
    """A repository's task list as one branch holds it (the dashboard's stop-point pickers read it)."""

    repository: str
    ref: str  # the branch it was read from
    filename: str  # `tasks_file` of the repository's config, tasks_list.md by default
    tasks: TaskList


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """An execution waiting: for its repository (`queued`) or for a worker (ready)."""

    execution_id: str
    installation_id: int
    repository: str
    status: str
    priority: int
    position: int  # 1-based: in the ready order for a worker, or in its repository's line
    waiting_for: Literal["worker", "repository"]
    starts_in: float | None  # seconds, None when unknown


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One RQ worker process taking steps."""

    name: str
    state: str
    current: str | None  # the job it is running, if any


@dataclass(frozen=True, slots=True)
class Resources:
    """The engine's capacity and load, and the host the web process runs on (from /proc)."""

    workers: tuple[WorkerInfo, ...]
    slots_in_use: int
    ready: int  # executions waiting for a worker
    queue_depths: dict[int, int] = field(default_factory=dict)  # priority → slot jobs queued
    cpu_count: int = 0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    memory_total_bytes: int = 0
    memory_available_bytes: int = 0


class EnginePort(Protocol):
    """The engine's operations the REST API uses (ids and plain values in, executions out)."""

    def installation_of(self, repository: str) -> int | None:
        """The installation covering `owner/name`, or None when Clarity is not installed there."""
        ...

    def initialize(self, start: Start) -> Execution:
        """Start (or queue) an execution, as `/clarity run` would."""
        ...

    def stop(self, execution_id: str, actor: str) -> Execution:
        """Stop the execution as clarity.stopping.MEANS says."""
        ...

    def resume(self, execution_id: str, actor: str) -> Execution:
        """Continue a paused or blocked execution."""
        ...

    def set_stop_point(self, execution_id: str, task_id: str, actor: str) -> Execution:
        """Move the stop point of a live or paused execution."""
        ...

    def override(self, execution_id: str, task_id: str, outcome: str, actor: str, reason: str = "") -> Execution:
        """A person settles a task (`done` or `skipped`, saying why in `reason`); a paused/blocked execution then
        resumes."""
        ...

    def replay(self, execution_id: str, actor: str, from_task: str | None = None, tool: str | None = None,
               stop_point: str | None = None) -> Execution:
        """Run a blocked or paused execution again from a task, optionally with another tool or stop point."""
        ...

    def prioritise(self, execution_id: str, priority: int, actor: str) -> Execution:
        """Give an execution another priority (1 to 10, 10 runs first)."""
        ...

    def task_list(self, repository: str, installation_id: int, ref: str | None = None) -> TaskListing:
        """The parsed task list on `ref` (the default branch when None): Missing when there is none on that
        branch, Unprocessable when the list or the repository's config cannot be read (the parser's message)."""
        ...

    def estimate(self, execution: Execution) -> tuple[float | None, float | None]:
        """Seconds until its next step starts and until it finishes (None: unknown)."""
        ...

    def queue(self) -> list[QueueEntry]:
        """Everyone waiting, for a worker first (in the order workers take them), then for a repository."""
        ...

    def resources(self) -> Resources:
        """Workers, slots and queue depths, and the host's CPU and memory."""
        ...
