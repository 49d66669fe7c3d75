"""Flags on a running execution (`exec:<id>:flag:<flag>`, naming who raised it): `stop` and `pause`,
raised by a person and read by the step between and during attempts, and `stop_point_reached`, raised
by the step itself. A flag lowers itself after a week, should nobody act on it."""

from __future__ import annotations

from clarity.flags import Flag
from clarity.models import Execution
from clarity.store.keyspace import Keyspace, Pipeline

FLAG_TTL = 7 * 24 * 3600


class Flags(Keyspace):
    """The flags raised on executions."""

    def _flag_key(self, execution_id: str, flag: Flag) -> str:
        return self._k("exec", execution_id, "flag", flag)

    def set_flag(self, execution_id: str, flag: Flag, by: str) -> None:
        """Ask a running execution to `stop` or `pause`; the step checks flags between and during attempts."""
        self.r.set(self._flag_key(execution_id, flag), by, ex=FLAG_TTL)

    def flag(self, execution_id: str, flag: Flag) -> str | None:
        """Who raised the flag, if it is up."""
        return self.r.get(self._flag_key(execution_id, flag))

    def clear_flag(self, execution_id: str, flag: Flag) -> None:
        """Lower a flag once acted upon."""
        self.r.delete(self._flag_key(execution_id, flag))

    def _forget_flags(self, pipe: Pipeline, execution: Execution) -> None:
        for flag in Flag:
            pipe.delete(self._flag_key(execution.id, flag))
