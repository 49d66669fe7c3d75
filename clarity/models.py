"""Domain values: an execution and the progress of one task within it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from clarity import rates
from clarity.status import ExecutionStatus, TaskStatus


@dataclass(frozen=True, slots=True)
class Execution:
    """One `/clarity run`: a repository's tasks driven towards a stop point (the seed's AutonomousExecution)."""

    id: str
    installation_id: int
    repo: str                          # owner/name: the seed's "project"
    account: str                       # installation account login: the seed's "customer"
    issue_number: int
    is_pull_request: bool
    branch: str
    base_branch: str
    requester: str
    status: ExecutionStatus = ExecutionStatus.QUEUED
    stop_point: str | None = None
    only: str | None = None
    tool: str | None = None
    priority: int = 5
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    current_task: str | None = None
    # The numbers (clarity.numbers): written only by the store, with the task table they are counted from.
    tasks_completed: int = 0
    tasks_total: int = 0
    error_count: int = 0
    retry_count: int = 0
    attempts: int = 0
    tasks_left: int = 0
    tasks_passed: int = 0
    tasks_failed: int = 0
    pr_number: int | None = None
    pr_url: str | None = None
    trigger_comment_id: int | None = None
    summary_check_id: int | None = None
    summary_sha: str = ""
    reason: str = ""
    budget: str = ""  # this execution's own limits, canonical words of clarity.budget (over the repo's)
    time_used: float = 0.0  # active seconds: the sum of its steps' durations (the time budget counts these)
    cost_usd: float = 0.0  # what its agents reported spending (CLARITY_USAGE_FILE)
    tokens_used: int = 0  # what its agents reported using

    @property
    def success_rate(self) -> float:
        """Tasks that passed / tasks that finished, as the wire carries it (clarity.rates.wire_rate)."""
        return rates.wire_rate(self.tasks_passed, self.tasks_failed)

    def to_redis(self) -> dict[str, str]:
        """Flat string mapping for a Redis hash (None is stored as the empty string)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "" if value is None else str(int(value) if isinstance(value, bool) else value)
        return out

    @classmethod
    def from_redis(cls, raw: dict[str, str]) -> Execution:
        """Inverse of to_redis, tolerant of fields added later."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                continue
            kwargs[f.name] = _coerce(f.type, raw[f.name])
        return cls(**kwargs)

    def to_json(self) -> dict[str, Any]:
        """Wire shape (camelCase, as in the PRD's data models)."""
        data = {_camel(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}
        data["successRate"] = self.success_rate
        data["status"] = str(self.status)
        return data


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """The engine's record of one task within an execution (the seed's TaskProgression)."""

    task_id: str
    title: str = ""
    status: TaskStatus = TaskStatus.PENDING
    attempts: int = 0
    tool: str = ""
    duration: float = 0.0
    commit: str = ""
    check_run_id: int | None = None
    last_error: str = ""
    checks: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    error_class: str = ""  # jobs.failures.ErrorClass of the last failed attempt ("" if none)
    override_by: str = ""  # login of the person who marked the task done or skipped by hand
    override_reason: str = ""  # why they did, as they wrote it ("" when they gave no reason)
    override_at: float = 0.0  # when they did
    # Every agent attempt on the task in this execution, and those that failed: unlike `attempts` (the
    # attempt number of its latest run), a person's retry does not reset them (clarity.numbers sums them).
    attempts_made: int = 0
    attempts_failed: int = 0
    depends: tuple[str, ...] = ()  # its `depends:` ids in tasks_list.md, as the step read them
    criteria: tuple[str, ...] = ()  # its `check:` lines (acceptance criteria), as the step read them

    def to_json(self) -> str:
        """Serialise for the per-execution task table."""
        data = dataclasses.asdict(self)
        data["status"] = str(self.status)
        data["checks"] = list(self.checks)
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: str) -> TaskProgress:
        """Inverse of to_json."""
        data = json.loads(raw)
        data["status"] = TaskStatus(data["status"])
        data["checks"] = tuple(data.get("checks") or ())
        for listed in ("depends", "criteria"):
            data[listed] = tuple(data.get(listed) or ())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _coerce(annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    if raw == "" and "None" in kind:
        return None
    if "ExecutionStatus" in kind:
        return ExecutionStatus(raw)
    if kind.startswith("bool"):
        return raw in ("1", "True", "true")
    if kind.startswith("int"):
        return int(raw) if raw else 0
    if kind.startswith("float"):
        return float(raw) if raw else 0.0
    return raw
