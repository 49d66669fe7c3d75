"""The check run each task's step opened on GitHub (`exec:<id>:checks`: task id → run id, or `@<sha>`).

Written the moment a step opens a check run, apart from the task row, so recovery can close the run of
a step lost before the row named it.
"""

from __future__ import annotations

from clarity.models import Execution
from clarity.store.keyspace import Keyspace, Pipeline


class Checks(Keyspace):
    """The check runs opened for an execution's tasks."""

    def _checks_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "checks")

    def record_check(self, execution_id: str, task_id: str, check_run_id: int | None = None, sha: str = "") -> None:
        """Note the check run a step opens for a task (one HSET, from any thread): first the commit it
        is being opened on (`sha`, before GitHub is asked), then its id, the moment GitHub answers.
        Recovery closes it from either if the step is lost before the task's row names it."""
        self.r.hset(self._checks_key(execution_id), task_id,
                    str(check_run_id) if check_run_id is not None else f"@{sha}")

    def checks(self, execution_id: str) -> dict[str, int | str]:
        """Task id → the check run last opened for it (an id), or the commit it was being opened on (a sha)."""
        raw = self.r.hgetall(self._checks_key(execution_id))
        return {task: value[1:] if value.startswith("@") else int(value) for task, value in raw.items()}

    def _forget_checks(self, pipe: Pipeline, execution: Execution) -> None:
        pipe.delete(self._checks_key(execution.id))
