"""Why an attempt failed, in one word: the class the next prompt, the records and the escalation name.

Pure: the sandbox's Result fields and the check verdicts in, an ErrorClass out. The classes are
- `check_failed`: the agent exited 0 but an acceptance check or gate did not pass;
- `agent_crashed`: the agent exited non-zero (or died of a signal) without being killed by a limit;
- `timeout`: the wall clock ran out (the task's `timeout:`, the repo's or CLARITY_TASK_TIMEOUT);
- `budget`: the wall clock ran out because the execution's time budget did (it was shorter than the
  task's timeout); the execution pauses instead of retrying;
- `limit`: killed for memory, CPU time, processes, file size or disk use (LocalSandbox and DockerSandbox
  words);
- `model_error`: the agent's model API failed it (an HTTP error, no answer in time, an answer the
  tool could not read), as the tool itself reported (runner.agentreport): whether it then exited,
  was killed by the wall clock or left the checks failing, the model is why;
- `infra`: the machinery failed, not the work: a missing or unexecutable tool (exit 127/126),
  sandbox or isolation errors, git errors. A tool the sandbox cannot start (not shown inside it, or
  bwrap's or setpriv's exec of it failed: a missing interpreter, say) and a task the worker cannot
  isolate are IsolationErrors, raised rather than returned: never retried, the execution blocks with
  the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from runner.checks import CheckResult
from runner.sandbox import IsolationError
from runner.workspace import GitError, PushRefused

EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
LIMIT_KILLS = frozenset({"memory", "cpu", "pids", "file_size", "disk"})


class ErrorClass(StrEnum):
    """The kind of a failed attempt."""

    CHECK_FAILED = "check_failed"
    AGENT_CRASHED = "agent_crashed"
    TIMEOUT = "timeout"
    BUDGET = "budget"
    LIMIT = "limit"
    MODEL_ERROR = "model_error"
    INFRA = "infra"


EXPLANATIONS: dict[ErrorClass, str] = {
    ErrorClass.CHECK_FAILED: "the agent finished but an acceptance check failed",
    ErrorClass.AGENT_CRASHED: "the agent exited with an error",
    ErrorClass.TIMEOUT: "the attempt ran out of time and was killed",
    ErrorClass.BUDGET: "the execution's time budget ran out during the attempt, which was killed",
    ErrorClass.LIMIT: "the attempt was killed for exceeding a resource limit (memory, CPU, processes, file size or "
                      "disk)",
    ErrorClass.MODEL_ERROR: "the agent's model API failed (an error, no answer in time, or an answer the tool "
                            "could not read)",
    ErrorClass.INFRA: "the machinery failed (missing tool, sandbox or git error), not the work itself",
}
# What a failing model explains better than the run's own ending: a budget, a limit or a stop stay what they are.
MODEL_EXPLAINS = frozenset({ErrorClass.TIMEOUT, ErrorClass.AGENT_CRASHED, ErrorClass.CHECK_FAILED})


def classify_run(exit_code: int, timed_out: bool, killed_by: str | None,
                 budget_clock: bool = False) -> ErrorClass | None:
    """The class of one sandboxed run (agent or check); None when it succeeded or was cancelled by a stop.

    `budget_clock`: the run's wall clock was the time left in the execution's budget, not the task's timeout.
    """
    if killed_by == "cancelled":
        return None
    if timed_out or killed_by == "timeout":
        return ErrorClass.BUDGET if budget_clock else ErrorClass.TIMEOUT
    if killed_by in LIMIT_KILLS:
        return ErrorClass.LIMIT
    if killed_by is None and exit_code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE):
        return ErrorClass.INFRA
    if killed_by is not None or exit_code != 0:
        return ErrorClass.AGENT_CRASHED
    return None


def with_model(error_class: ErrorClass, model_failed: bool) -> ErrorClass:
    """`model_error` when the tool said its model failed it and the attempt ended in a way that explains
    (timed out, crashed, left the checks failing); otherwise the class as it was."""
    return ErrorClass.MODEL_ERROR if model_failed and error_class in MODEL_EXPLAINS else error_class


def classify_checks(results: Sequence[CheckResult]) -> ErrorClass | None:
    """The class of an attempt whose agent succeeded: None if every check passed.

    A check whose command could not be found or run is the machinery's fault (`infra`); any other
    failing check is `check_failed`.
    """
    failed = [r for r in results if not r.passed]
    if not failed:
        return None
    if all(r.exit_code in (EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE) for r in failed):
        return ErrorClass.INFRA
    return ErrorClass.CHECK_FAILED


def classify_exception(exc: BaseException) -> ErrorClass | None:
    """`infra` for the engine's own failures around an attempt (isolation, git, the file system), else None."""
    if isinstance(exc, PushRefused):  # GitHub's rule, not the engine's failure: the message says what to change
        return None
    if isinstance(exc, IsolationError | GitError | OSError):
        return ErrorClass.INFRA
    return None


def explain(error_class: str) -> str:
    """One sentence for people: what the class means ("" for no class)."""
    try:
        return EXPLANATIONS[ErrorClass(error_class)]
    except ValueError:
        return ""
