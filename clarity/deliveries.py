"""Accept a webhook delivery in one Redis round trip: claim its id and queue its intake job, atomically.

The webhook view used to claim the id (SET NX EX), then let RQ enqueue the job (two more
transactions), and release the claim if that failed: three round trips and a window in which a
crash left a claimed id without a job. Here one Lua script does the claim and, only if the id is
new, writes the RQ job hash, pushes its id on the queue and registers the queue, as RQ's own unique
enqueue script does. A failure leaves nothing behind, so GitHub's redelivery is processed; a reply
lost after the script ran leaves a queued job and a claimed id, so a redelivery is a duplicate.

The job is built by RQ (`Queue.create_job`, `Job.to_dict`), so a worker reads it like any other.
"""

from __future__ import annotations

from typing import Any

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


class DeliveryQueue:
    """Claims delivery ids (`<namespace>:delivery:<id>`, as clarity.store) and queues intake jobs."""

    def __init__(self, queue: Queue, namespace: str, job: str, ttl: int) -> None:
        self.queue = queue
        self.claim_prefix = f"{namespace}:delivery:"
        self.job = job
        self.ttl = ttl
        self._script = queue.connection.register_script(_ACCEPT)

    def accept(self, event: str, delivery: str, body: str) -> bool:
        """Queue `job(event, delivery, body)` unless `delivery` was seen within the ttl; False if it was.

        Raises redis.RedisError when Redis fails; then neither the claim nor the job exists.
        """
        job = self.queue.create_job(self.job, args=(event, delivery, body), description=f"{event} {delivery}")
        job.enqueued_at = now()
        data = job.data  # RQ's serialized call (a pickle)
        # RQ would zlib it at the default level: ~0.1 ms for a 15 KB payload, the largest CPU cost of
        # the ack. Stored as is instead: RQ loads data that is not a zlib stream unchanged (Job.restore),
        # and a pickle never is one (it starts with 0x80). Costs Redis memory only while the job is kept.
        job.data = b""
        mapping = job.to_dict()
        mapping["data"] = data
        fields: list[Any] = [self.ttl, job.id]
        for name, value in mapping.items():
            if value is not None:
                fields += (name, value)
        keys = [self.claim_prefix + delivery, job.key, self.queue.key, Queue.redis_queues_keys]
        return bool(self._script(keys=keys, args=fields))
