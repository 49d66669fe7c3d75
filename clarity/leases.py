"""The repository lease's value and its Redis scripts (the Store runs them; see Store.acquire_lease).

One execution per repository holds `<ns>:repo:<repo>:lease` (SET PX). Its value names the execution
and, while one step of it works, that step: `<execution id>` between steps (the scheduler or recovery
took it for the execution), `<execution id>/<token>` while the step with that token holds it. A step
takes its execution's lease over at its start and hands it back at its end; it can never take the
lease of another step, even one of its own execution. `<ns>:exec:<id>:step` names the token of the
step working on the execution, so a step whose lease lapsed (Redis restarted, the step stalled) takes
it again only if nobody recovered the execution meanwhile: recovery deletes that key when it takes
the lease.
"""

from __future__ import annotations

SEP = "/"  # execution ids are hex: the separator never occurs in one


def value(execution_id: str, token: str = "") -> str:
    """What the lease holds for an execution between steps (no token) or for one step of it."""
    return f"{execution_id}{SEP}{token}" if token else execution_id


def holder(raw: str | None) -> str | None:
    """The execution id in a lease value."""
    return raw.split(SEP, 1)[0] if raw else None


def step(raw: str | None) -> str | None:
    """The step token in a lease value ("" between steps), None when nobody holds the lease."""
    return raw.partition(SEP)[2] if raw else None


# KEYS: lease, step. ARGV: execution id, token ("": for the execution itself), ttl in ms.
# Free, or the execution's between steps, or this very step's: taken (the step named). A step's, and
# no token given: renewed as it is (the execution holds it). Another step's or execution's: 0.
ACQUIRE = """
local v = redis.call('get', KEYS[1])
local mine = ARGV[1]
if ARGV[2] ~= '' then mine = ARGV[1] .. '/' .. ARGV[2] end
if not v or v == ARGV[1] or v == mine then
  redis.call('set', KEYS[1], mine, 'px', ARGV[3])
  if ARGV[2] ~= '' then redis.call('set', KEYS[2], ARGV[2]) end
  return 1
end
if ARGV[2] == '' and string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '/' then
  return redis.call('pexpire', KEYS[1], ARGV[3])
end
return 0
"""

# KEYS: lease, step. ARGV: the step's value, its token, ttl in ms. A heartbeat: renewed while held,
# taken again when it lapsed and the execution is still this step's, lost otherwise.
KEEP = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[3])
  return 'renewed'
end
if not v and redis.call('get', KEYS[2]) == ARGV[2] then
  redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[3])
  return 'retaken'
end
return 'lost'
"""

# KEYS: lease, step. ARGV: execution id, ttl in ms. Recovery: only a free lease, and the step that
# held it before can never take it again.
TAKE_FREE = """
if redis.call('set', KEYS[1], ARGV[1], 'nx', 'px', ARGV[2]) then
  redis.call('del', KEYS[2])
  return 1
end
return 0
"""

# KEYS: lease, step. ARGV: the step's value, its token, execution id. The step ends well: the lease
# goes back to the execution with the expiry it has.
HAND_BACK = """
if redis.call('get', KEYS[2]) == ARGV[2] then redis.call('del', KEYS[2]) end
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[3], 'keepttl')
return 1
"""

# KEYS: lease. ARGV: execution id, token ("": any step of the execution, or the execution itself).
RELEASE = """
local v = redis.call('get', KEYS[1])
if not v then return 0 end
if ARGV[2] ~= '' then
  if v == ARGV[1] .. '/' .. ARGV[2] then return redis.call('del', KEYS[1]) end
  return 0
end
if v == ARGV[1] or string.sub(v, 1, string.len(ARGV[1]) + 1) == ARGV[1] .. '/' then
  return redis.call('del', KEYS[1])
end
return 0
"""
