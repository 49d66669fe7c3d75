"""A slot job that takes its execution's next step itself while nobody else waits for a worker.

DESIGN §1 asks for one task per job, for three reasons that this keeps: a crash loses at most one
task attempt (each step records its task before the next starts), stop and pause take effect
between tasks (every step checks them as it starts), and customers share workers round-robin (a
job keeps its execution only when the ready set is empty, `ReadySet.keep`, so nobody ever waits
behind it). What it saves is the hand-off between two steps of one execution: the slot job queued
and taken, RQ's fork of a work horse, a new REST connection (TLS on github.com), and the fetch that
starts a step: the workspace is at the commit this job has just pushed, so the next step checks it
out without asking the remote. Someone else's push in between pauses the execution through the push
webhook (jobs.lifecycle), or makes our next push fail, which pauses it too (runner.workspace.PushRejected).

A job keeps going only while it has time left for a whole step before RQ's timeout (`JobTimeLeft`) and
its worker is not shutting down: a warm shutdown (SIGTERM) sends the horse SIGUSR1 (jobs.worker),
and the chain ends after the step in hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from clarity.settings import Settings
from runner.workspace import Workspace

MARGIN = 60.0  # seconds a job keeps spare after the worst case of the step it takes on
WIND_DOWN = signal.SIGUSR1  # worker → its work horse: end the chain after the step in hand
winding_down = threading.Event()


def on_wind_down(_signum: int, _frame: FrameType | None) -> None:
    """The signal handler, installed in the worker before it forks (so every horse has it)."""
    winding_down.set()


def install() -> None:
    """Catch WIND_DOWN in this process and the work horses it will fork."""
    signal.signal(WIND_DOWN, on_wind_down)


def step_worst_case(settings: Settings) -> float:
    """The longest a step may take: every attempt of a task at its timeout, and the step around them."""
    return float(settings.task_timeout * (settings.retries + 2))


class JobTimeLeft:
    """Whether a job may take one more step: time left before RQ's timeout, and no shutdown asked."""

    def __init__(self, timeout: float | None, step_seconds: float, margin: float = MARGIN) -> None:
        self.started = time.monotonic()
        self.timeout = timeout if timeout is not None and timeout > 0 else None  # RQ: -1 means none
        self.step_seconds, self.margin = step_seconds, margin
        self.parent = os.getppid()

    def allows(self) -> bool:
        """True while a whole further step fits in the job and its worker still wants it to run."""
        if winding_down.is_set() or os.getppid() != self.parent:  # shutting down, or the worker is gone
            return False
        if self.timeout is None:
            return True
        return self.timeout - (time.monotonic() - self.started) >= self.step_seconds + self.margin


@dataclass
class Warm:
    """What one step hands to the next in the same job."""

    http: contextlib.ExitStack  # the REST clients live until the job ends
    clients: dict[int, Any] = field(default_factory=dict)  # installation id → githubkit client
    workspace: Workspace | None = None
    pushed: tuple[str, str] | None = None  # (branch, sha): the commit the last step pushed, if it did
