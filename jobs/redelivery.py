"""The delivery reconciler: ask GitHub to redeliver the webhook deliveries Clarity never got (DESIGN §13).

GitHub never sends a failed delivery again by itself: a `/clarity run` answered 503 while Redis was
away, or sent while the web process was down, is lost unless someone asks for it. A pass reads the app
webhook's delivery log (github_app.hook_deliveries) from its last checkpoint, finds every guid with no
2xx attempt, and asks GitHub to send the newest failed attempt of each again. `plan` decides, purely;
`reconcile` reads and acts.

- Never a guid that reached Clarity: one with a 2xx attempt in this pass or an earlier one (remembered
  3 days), or whose id Clarity claimed (the webhook endpoint's dedupe key).
- Never the same failed attempt twice: each one asked for is remembered (3 days, GitHub's limit). A
  redelivery that fails too is a new attempt; it is asked for again after a growing wait (SPACING), and
  a guid that failed that many times is given up (said in the logs).
- At most `redeliver_max` per pass, oldest first; what is left, and what waits, keeps the checkpoint
  back so the next pass reads it again.
- One pass at a time across every worker (a Redis lock); the periodic caller runs at most every
  `redeliver_every` seconds across all of them. A command redelivered after it did arrive is still run
  once: the endpoint dedupes the guid, intake the comment (Store.claim_comment).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from githubkit.exception import GitHubException, RequestFailed

from clarity.settings import Settings
from github_app import hook_deliveries
from github_app.client import describe_error
from github_app.hook_deliveries import Attempt
from jobs import context
from jobs.context import Engine
from jobs.recovery import RELEASE_LOCK

log = logging.getLogger(__name__)
DAY = 86400.0
WINDOW = 3 * DAY  # GitHub keeps deliveries, and redelivers them, this long
TOO_OLD = WINDOW - 600.0  # not asked for this close to the limit: GitHub's clock and ours may differ
FIRST_LOOKBACK = 3600.0  # no checkpoint yet (a new deployment, a flushed Redis): look back this far only
OVERLAP = 300.0  # read this much before the checkpoint again: attempts still under way when it was set
MAX_PAGES = 20  # of 100 attempts each, per pass
LOCK_TTL = 300.0
# Seconds to wait, after a guid's last failed attempt, before asking for its n-th redelivery (n from 0);
# a guid that failed this many redeliveries is given up.
SPACING = (0.0, 60.0, 300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a pass does: the attempts to send again (oldest first), where the next pass reads from."""

    redeliver: tuple[Attempt, ...]
    checkpoint: float
    given_up: tuple[str, ...] = ()  # guids whose every redelivery failed: not asked for again


@dataclass(frozen=True, slots=True)
class Report:
    """What one pass did."""

    read: int = 0  # attempts read from GitHub
    asked: tuple[str, ...] = ()  # guids GitHub was asked to redeliver
    refused: tuple[str, ...] = ()  # guids GitHub would not redeliver (too old, gone)
    failed: tuple[str, ...] = ()  # guids whose redelivery could not be asked for now (next pass)
    given_up: tuple[str, ...] = ()
    skipped: bool = False  # another process was reconciling
    truncated: bool = False  # more attempts since the checkpoint than a pass reads: the oldest were left

    def __bool__(self) -> bool:
        return bool(self.asked or self.refused or self.failed or self.given_up or self.truncated)


def plan(attempts: Iterable[Attempt], now: float, limit: int, delivered: frozenset[str] = frozenset(),
         redelivered: frozenset[int] = frozenset(), counts: Mapping[str, int] | None = None) -> Plan:
    """Decide, from the attempts read and what earlier passes did, which attempts to send again.

    `delivered`: guids known to have reached Clarity; `redelivered`: attempt ids already asked for;
    `counts`: redeliveries asked for per guid so far.
    """
    counts = counts or {}
    by_guid: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_guid.setdefault(attempt.guid, []).append(attempt)
    due: list[Attempt] = []
    waiting: list[Attempt] = []
    given_up: list[str] = []
    for guid, tries in by_guid.items():
        if guid in delivered or any(t.ok for t in tries):
            continue
        last = max(tries, key=lambda t: t.id)
        if last.id in redelivered or now - last.delivered_at > TOO_OLD:
            continue  # asked for already (its next attempt is judged when it shows), or GitHub would refuse
        sent = counts.get(guid, 0)
        if sent >= len(SPACING):
            given_up.append(guid)
        elif now - last.delivered_at >= SPACING[sent]:
            due.append(last)
        else:
            waiting.append(last)
    due.sort(key=lambda t: (t.delivered_at, t.id))
    held = [t.delivered_at for t in (*waiting, *due[limit:])]
    return Plan(tuple(due[:limit]), min(held, default=now), tuple(sorted(given_up)))


def reconcile(engine: Engine, now: float | None = None) -> Report:
    """One pass: read the deliveries since the checkpoint and ask for the redeliveries `plan` decides.

    Raises GitHub's errors when the log cannot be read (the checkpoint stays), redis.RedisError on Redis.
    """
    keys = _Keys(engine.settings.namespace)
    r = engine.store.r
    token = uuid.uuid4().hex
    if not r.set(keys.lock, token, nx=True, px=int(LOCK_TTL * 1000)):
        return Report(skipped=True)
    try:
        return _pass(engine, keys, time.time() if now is None else now)
    finally:
        r.eval(RELEASE_LOCK, 1, keys.lock, token)


def _pass(engine: Engine, keys: _Keys, now: float) -> Report:
    r = engine.store.r
    mark = r.get(keys.checkpoint)
    oldest = max(float(mark) - OVERLAP if mark else now - FIRST_LOOKBACK, now - WINDOW)
    attempts, truncated = hook_deliveries.newest_first(engine.github.app, oldest, MAX_PAGES)
    if truncated:
        log.warning("delivery reconciler: more than %d deliveries since %s; the oldest of them were not looked at",
                    len(attempts), time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(oldest)))
    memory = _memory(engine, keys, attempts, now)
    todo = plan(attempts, now, engine.settings.redeliver_max, memory.delivered, memory.redelivered,
                memory.counts)
    asked: list[str] = []
    refused: list[str] = []
    failed: list[Attempt] = []
    for attempt in todo.redeliver:
        if not r.set(keys.attempt(attempt.id), "1", nx=True, ex=int(WINDOW)):
            continue  # another pass asked for it (its lock lapsed)
        outcome = _ask(engine, attempt)
        if outcome == "asked":
            pipe = r.pipeline()
            pipe.incr(keys.guid(attempt.guid))
            pipe.expire(keys.guid(attempt.guid), int(WINDOW))
            pipe.execute()
            asked.append(attempt.guid)
        elif outcome == "refused":
            refused.append(attempt.guid)
        else:
            r.delete(keys.attempt(attempt.id))  # not asked for: the next pass tries again
            failed.append(attempt)
    r.set(keys.checkpoint, repr(min([todo.checkpoint, *(a.delivered_at for a in failed)])))
    for guid in todo.given_up:
        log.error("delivery %s: GitHub could not deliver it after %d redeliveries; not asked for again",
                  guid, len(SPACING))
    return Report(len(attempts), tuple(asked), tuple(refused), tuple(a.guid for a in failed), todo.given_up,
                  truncated=truncated)


@dataclass(frozen=True, slots=True)
class Memory:
    """What earlier passes and the webhook endpoint know of the failing guids (plan's arguments)."""

    delivered: frozenset[str] = frozenset()
    redelivered: frozenset[int] = frozenset()
    counts: Mapping[str, int] = field(default_factory=dict)


def _memory(engine: Engine, keys: _Keys, attempts: list[Attempt], now: float) -> Memory:
    """Memory of the failing guids, in one round trip that also remembers the guids delivered now."""
    r = engine.store.r
    ok = {a.guid for a in attempts if a.ok}
    failing = sorted({a.guid for a in attempts if not a.ok} - ok)
    tries = sorted({a.id for a in attempts if a.guid in failing})
    pipe = r.pipeline()
    if ok:
        pipe.zadd(keys.delivered, dict.fromkeys(ok, now))
    pipe.zremrangebyscore(keys.delivered, "-inf", now - WINDOW)
    for guid in failing:
        pipe.zscore(keys.delivered, guid)
        pipe.exists(keys.claim(guid))
        pipe.get(keys.guid(guid))
    for attempt_id in tries:
        pipe.exists(keys.attempt(attempt_id))
    answers = pipe.execute()[2 if ok else 1:]
    known, seen = answers[:3 * len(failing)], answers[3 * len(failing):]
    triples = [(guid, *known[3 * i:3 * i + 3]) for i, guid in enumerate(failing)]
    return Memory(frozenset(guid for guid, score, claimed, _ in triples if score is not None or claimed),
                  frozenset(i for i, hit in zip(tries, seen, strict=True) if hit),
                  {guid: int(count) for guid, _, _, count in triples if count})


def _ask(engine: Engine, attempt: Attempt) -> str:
    """"asked", "refused" (GitHub will not: too old, or gone) or "failed" (try again next pass)."""
    try:
        hook_deliveries.redeliver(engine.github.app, attempt.id)
    except RequestFailed as exc:
        if exc.response.status_code in (404, 422):
            log.warning("delivery %s (%s): GitHub refused to redeliver it: %s", attempt.guid, attempt.event,
                        describe_error(exc))
            return "refused"
        log.warning("delivery %s: redelivery not asked for: %s", attempt.guid, describe_error(exc))
        return "failed"
    except (GitHubException, httpx.HTTPError) as exc:
        log.warning("delivery %s: redelivery not asked for: %s", attempt.guid, describe_error(exc))
        return "failed"
    log.warning("delivery %s (%s%s) never reached Clarity (last answer: %s): GitHub redelivers it",
                attempt.guid, attempt.event, f".{attempt.action}" if attempt.action else "",
                attempt.status_code or "none")
    return "asked"


def reconcile_when_due(engine: Engine) -> Report | None:
    """`reconcile`, at most once per `redeliver_every` seconds across every worker; never raises.

    For the periodic caller (the steps worker's reconciler thread, jobs.recovery.run_periodically).
    """
    every = engine.settings.redeliver_every
    if every <= 0:
        return None
    try:
        if not engine.store.r.set(_Keys(engine.settings.namespace).due, "1", nx=True, px=int(every * 1000)):
            return None
        report = reconcile(engine)
    except Exception:  # an outage or a bug: the next pass tries again, the caller goes on
        log.exception("delivery reconciler pass failed")
        return None
    if report:
        log.warning("delivery reconciler: read %d; redelivery asked for %s; refused %s; to try again %s; "
                    "given up %s", report.read, list(report.asked), list(report.refused), list(report.failed),
                    list(report.given_up))
    return report


def run_periodically(settings: Settings, stop: threading.Event) -> threading.Thread | None:
    """A daemon thread passing every `redeliver_every` seconds until `stop` is set.

    Started beside recovery's thread in a steps worker's parent process, with an engine of its own;
    None when the reconciler is off (CLARITY_REDELIVER_EVERY=0). The first pass waits a period too, so
    the worker's start (RQ installs its signal handlers last) is not slowed by GitHub calls beside it.
    """
    if settings.redeliver_every <= 0:
        return None

    def loop() -> None:
        engine = context.build(settings)
        while not stop.wait(settings.redeliver_every):
            reconcile_when_due(engine)

    thread = threading.Thread(target=loop, name="clarity-redelivery", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True, slots=True)
class _Keys:
    """The reconciler's Redis keys in a namespace."""

    namespace: str

    @property
    def lock(self) -> str:
        return f"{self.namespace}:redeliver:lock"

    @property
    def due(self) -> str:
        return f"{self.namespace}:redeliver:due"

    @property
    def checkpoint(self) -> str:
        return f"{self.namespace}:redeliver:checkpoint"

    @property
    def delivered(self) -> str:
        return f"{self.namespace}:redeliver:delivered"

    def attempt(self, attempt_id: int) -> str:
        return f"{self.namespace}:redeliver:attempt:{attempt_id}"

    def guid(self, guid: str) -> str:
        return f"{self.namespace}:redeliver:guid:{guid}"

    def claim(self, guid: str) -> str:
        return f"{self.namespace}:delivery:{guid}"  # the webhook endpoint's dedupe key (clarity.deliveries)
