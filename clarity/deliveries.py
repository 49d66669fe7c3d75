"""Accept a webhook delivery in one Redis round trip: claim its id and queue its intake job, atomically.

One Lua script claims the id and, only if it is new, writes the RQ job hash, pushes its id on the queue
and registers the queue, as RQ's own unique enqueue script does. A failure leaves nothing behind, so
GitHub's redelivery is processed; a reply lost after the script ran leaves a queued job and a claimed id,
so a redelivery is a duplicate. No window leaves a claimed id without a job.

The job hash is RQ's own: at start-up RQ builds one intake job (`Queue.create_job`, `Job.to_dict`) and
every field that is the same for every delivery (origin, timeout, status, the empty callback and worker
fields...) is kept as RQ wrote it. Per delivery only the four fields that differ are made here, the way
RQ makes them: the id (`uuid4`), `created_at` and `enqueued_at` (RQ's UTC timestamp text), `data` (RQ's
serializer over `(func, None, args, {})`) and `description`. This writes RQ's format itself, so the rq
version is bounded in pyproject.toml and tests/test_webhook_ack.py compares the hash with RQ's.

The round trip skips redis-py's client layer (pool checkout, retry wrapper, hooks): DeliveryQueue keeps
its own idle connections (as many as requests were ever in flight at once), of the client's class and
settings. Errors are redis-py's (`ConnectionError`, `ResponseError`...), so callers still catch
`redis.RedisError`. Why and how much it saves: docs/PERFORMANCE.md, "The RQ job hash without a Job object".
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import uuid4

from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError, NoScriptError, TimeoutError
from rq import Queue
from rq.utils import now

# KEYS: delivery claim, job hash, queue list, RQ's set of queues.
# ARGV: claim ttl, job id, then the job hash as field, value, field, value...
_ACCEPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return 0
end
local saved = redis.pcall('HSET', KEYS[2], unpack(ARGV, 3))
if type(saved) == 'table' and saved.err then
    redis.call('DEL', KEYS[1])
    return saved
end
local pushed = redis.pcall('RPUSH', KEYS[3], ARGV[2])
if type(pushed) == 'table' and pushed.err then
    redis.call('DEL', KEYS[1], KEYS[2])
    return pushed
end
redis.call('SADD', KEYS[4], KEYS[3])
return 1
"""

PER_DELIVERY = ("created_at", "enqueued_at", "data", "description")
"""The fields of the job hash made for each delivery; RQ's template gives every other one."""


class DeliveryQueue:
    """Claims delivery ids (`<namespace>:delivery:<id>`, SET NX EX) and queues intake jobs."""

    def __init__(self, queue: Queue, namespace: str, job: str, ttl: int) -> None:
        self.queue = queue
        self.claim_prefix = f"{namespace}:delivery:"
        self.job = job
        self.ttl = ttl
        self._sha = hashlib.sha1(_ACCEPT.encode()).hexdigest()
        self._pool = queue.connection.connection_pool
        self._idle: list[AbstractConnection] = []  # list.pop/append are atomic: no lock needed
        self._pid = os.getpid()
        self._dumps = queue.serializer.dumps
        self._job_prefix = queue.job_class.redis_job_namespace_prefix
        self._queue_keys = (queue.key, Queue.redis_queues_keys)
        self._fixed = fixed_fields(queue, job)

    def accept(self, event: str, delivery: str, body: str) -> bool:
        """Queue `job(event, delivery, body)` unless `delivery` was seen within the ttl; False if it was.

        Raises redis.RedisError when Redis fails; then neither the claim nor the job exists.
        """
        job_id = str(uuid4())
        stamp = timestamp()
        # RQ would zlib the data at the default level: ~0.1 ms for a 15 KB payload. Stored as is
        # instead: RQ loads data that is not a zlib stream unchanged (Job.restore), and a pickle never
        # is one (it starts with 0x80). Costs Redis memory only while the job is kept.
        data = self._dumps((self.job, None, (event, delivery, body), {}))
        return bool(self._evalsha(self.claim_prefix + delivery, self._job_prefix + job_id, *self._queue_keys,
                                  self.ttl, job_id, "created_at", stamp, "enqueued_at", stamp, "data", data,
                                  "description", f"{event} {delivery}", *self._fixed))

    def _evalsha(self, *keys_and_args: Any) -> Any:
        """Run the script (4 keys, then its arguments) in one round trip on an idle connection of ours."""
        connection = self._checkout()
        try:
            packed = connection.pack_command("EVALSHA", self._sha, 4, *keys_and_args)
            fresh = connection._sock is None  # redis-py connects it on send
            try:
                return _round_trip(connection, packed)
            except NoScriptError:  # Redis restarted, or its scripts were flushed: load it and run it again
                connection.send_command("SCRIPT", "LOAD", _ACCEPT)
                connection.read_response()
                return _round_trip(connection, packed)
            except (ConnectionError, TimeoutError):
                if fresh:
                    raise
                # A connection Redis dropped while idle (restart, its idle timeout): once more, connecting
                # again. Safe either way: if the first call ran, the id is claimed and its job queued, and
                # this one says 0.
                return _round_trip(connection, packed)
        finally:
            self._idle.append(connection)  # a connection that failed is disconnected: it connects on next use

    def _checkout(self) -> AbstractConnection:
        if self._pid != os.getpid():  # a forked child never shares its parent's sockets
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()
        except IndexError:
            return self._pool.connection_class(**self._pool.connection_kwargs)


def _round_trip(connection: AbstractConnection, packed: list[bytes]) -> Any:
    connection.send_packed_command(packed, check_health=False)
    return connection.read_response()


def fixed_fields(queue: Queue, job: str) -> tuple[Any, ...]:
    """The job hash fields RQ writes alike for every `job` on `queue`, flat (name, value, name, value...).

    Raises RuntimeError when RQ's hash no longer has a field this module makes per delivery, so a
    change of RQ's format stops the app at start-up rather than queueing jobs a worker misreads.
    """
    sample = queue.create_job(job, args=(), description="")
    sample.enqueued_at = now()
    mapping = sample.to_dict()
    missing = [name for name in PER_DELIVERY if mapping.get(name) is None]
    if missing:
        raise RuntimeError(f"RQ's job hash has no {', '.join(missing)}: clarity.deliveries needs updating for "
                           f"this RQ version")
    fields: list[Any] = []
    for name, value in mapping.items():
        if name not in PER_DELIVERY and value is not None:
            fields += (name, value.value if isinstance(value, Enum) else value)
    return tuple(fields)


def timestamp() -> str:
    """Now in RQ's text form, as `rq.utils.utcformat(now())` writes it (`2026-01-31T12:00:00.123456Z`), without strftime."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
