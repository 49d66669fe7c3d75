"""What the store tells about executions: their log lines, the audit stream and live events.

Each execution has a capped stream of log lines (`exec:<id>:log`), and `audit` is one capped stream of
who did what to which execution. Every change is published, redacted, on `<ns>:events`; an event that
is also a log line carries the log entry's id, so a dashboard that lost its socket asks for what came
after it.
"""

from __future__ import annotations

import json
import time
from typing import Any, NamedTuple

import redis

from clarity.models import Execution
from clarity.redaction import redact
from clarity.status import ExecutionStatus
from clarity.store.keyspace import DEFAULT_NAMESPACE, Keyspace, Pipeline

LOG_MAXLEN = 5000
AUDIT_MAXLEN = 20000

# One round trip for an event: the audit entry (if any), the execution's log entry, and the live
# message carrying the log entry's id (a dashboard that lost its socket asks for what came after it).
EMIT = """
if ARGV[3] ~= '' then redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'json', ARGV[3]) end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'json', ARGV[4])
redis.call('PUBLISH', ARGV[5], string.sub(ARGV[4], 1, -2) .. ', "id": "' .. id .. '"}')
return id
"""


class Brief(NamedTuple):
    """What an event says about its execution: enough to route it, read without the whole record."""

    id: str
    repo: str
    installation_id: int
    status: ExecutionStatus


class Events(Keyspace):
    """Log streams, the audit stream and the live channel."""

    def __init__(self, client: redis.Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        super().__init__(client, namespace)
        self.events_channel = f"{namespace}:events"
        self._emit_script = client.register_script(EMIT)

    def _log_key(self, execution_id: str) -> str:
        return self._k("exec", execution_id, "log")

    def _audit_key(self) -> str:
        return self._k("audit")

    def brief(self, execution_id: str) -> Brief:
        """The execution's routing fields; the executions family (clarity.store.executions) reads them."""
        raise NotImplementedError

    def log(self, execution_id: str, message: str, level: str = "info", task: str | None = None) -> None:
        """Append a redacted line to the execution's log stream and publish it live."""
        self._publish(self.brief(execution_id), "log", {"message": message, "level": level, "task": task or ""},
                      stream=True)

    def log_lines(self, execution_id: str, count: int = 200) -> list[dict[str, Any]]:
        """The newest `count` stream entries, oldest first."""
        entries = self.r.xrevrange(self._log_key(execution_id), count=count)
        return [_decode_entry(entry_id, data) for entry_id, data in reversed(entries)]

    def audit(self, count: int = 200) -> list[dict[str, Any]]:
        """The newest audit records, newest first."""
        return [_decode_entry(i, d) for i, d in self.r.xrevrange(self._audit_key(), count=count)]

    def audit_event(self, execution: Execution | Brief, kind: str, actor: str, data: dict[str, Any]) -> None:
        """Record who did what to an execution outside a status change (audit stream, log, live event)."""
        self._emit(execution, kind, actor, data)

    def _emit(self, execution: Execution | Brief, kind: str, actor: str, data: dict[str, Any]) -> None:
        audit = redact(json.dumps({"kind": kind, "actor": actor, "execution": execution.id, "repo": execution.repo,
                                   "installation": execution.installation_id, "time": time.time(), **data}))
        self._publish(execution, kind, {"actor": actor, **data}, stream=True, audit=audit)

    def _publish(self, execution: Execution | Brief, kind: str, data: dict[str, Any], stream: bool = False,
                 audit: str = "") -> None:
        event = {"kind": kind, "execution": execution.id, "repo": execution.repo,
                 "installation": execution.installation_id, "status": str(execution.status),
                 "time": time.time(), **data}
        payload = redact(json.dumps(event, default=str))
        if not stream:
            self.r.publish(self.events_channel, payload)
            return
        # The audit entry, the log entry and the live event (with the log entry's id, appended to the
        # redacted text rather than redacting the event twice) in one round trip (EMIT).
        self._emit_script(keys=[self._audit_key(), self._log_key(execution.id)],
                          args=[AUDIT_MAXLEN, LOG_MAXLEN, audit, payload, self.events_channel])

    def _audit_forgotten(self, execution: Execution) -> None:
        """The audit entry of an execution deleted (nothing is logged or published: it is gone)."""
        self.r.xadd(self._audit_key(), {"json": json.dumps({
            "kind": "execution.forgotten", "actor": "github", "execution": execution.id, "repo": execution.repo,
            "installation": execution.installation_id, "time": time.time()})}, maxlen=AUDIT_MAXLEN,
            approximate=True)

    def _forget_log(self, pipe: Pipeline, execution: Execution) -> None:
        pipe.delete(self._log_key(execution.id))


def jsonable(value: Any) -> Any:
    """A field's value as an event carries it (JSON's own types as they are, anything else as text)."""
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _decode_entry(entry_id: str, data: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(data.get("json", "{}"))
    record["id"] = entry_id
    return record
