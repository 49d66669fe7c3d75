"""What every part of one step works with (jobs.step, jobs.taskrun, jobs.endings), in one place.

The step builds its `StepContext` once its execution is loaded and its repository leased: the
reporter needs the execution's installation, and every ending reports through it. Two fields follow
the branch as the step moves it; everything else is fixed for the step's life.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from clarity.models import Execution
from clarity.store import Store
from github_app.reporting import Reporter
from jobs import budgets, chaining
from jobs.checkout import Checkout
from jobs.context import Engine


@dataclass(slots=True)
class After:
    """What waits for the step's end, so no two steps of one repository ever overlap (jobs.step.Step.run)."""

    again: bool = False  # the execution has more to do: make it ready again
    release: Execution | None = None  # the execution ended: free its repository for the next
    later: float | None = None  # GitHub asked us to slow down: the next step in this many seconds


@dataclass(slots=True)
class StepContext:
    """One step's engine, execution, clock and reporter, and what it has seen of the branch."""

    eng: Engine
    execution_id: str
    who: Mapping[str, str]  # the RQ job and worker running this step, for the audit stream
    clock: budgets.Clock  # the step's active time, charged to the execution's time budget
    reporter: Reporter  # the installation's GitHub: every report of the step goes through it
    cancel: threading.Event  # set by the heartbeat on a stop or a lost lease: the attempt is killed
    warm: chaining.Warm | None  # what the previous step of this job left: REST clients, workspace, last push
    after: After = field(default_factory=After)
    head_sha: str = ""  # the branch head as this step last saw it: the summary check lives there
    checkout: Checkout | None = None  # the branch's config and PR template, once read: endings use them

    @property
    def store(self) -> Store:
        """The engine's store."""
        return self.eng.store

    def dashboard_url(self) -> str:
        """Where people watch the execution."""
        return self.eng.dashboard_url(self.execution_id)
