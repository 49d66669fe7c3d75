"""Recovery: executions whose worker was lost go on, without losing or repeating work (DESIGN §1, §8).

A step holds its repository's lease and renews it every `lease_ttl / 4` seconds, so an active
execution that does not hold its lease is worked on by nobody, unless its next step is waiting in RQ
or running on a live worker. `reconcile` finds those orphans and puts them back on the road: the task
that was in progress goes back to `pending` (its uncommitted work went with the worker; the next sync
resets the workspace), its check run is closed, and a step is enqueued under a fresh lease. A task
pushed before the loss is ticked on the branch, so that step records it done instead of redoing it.
It also starts queued executions whose repository nobody holds (a worker lost inside `release`).
A lapsed lease may also mean Redis restarted under a live step: recovery takes only a free lease, and
takes it first, so a step that took its lease again keeps its execution untouched, and a step that
did not is shut out for good (clarity.leases) and abandons its work (jobs.heartbeat).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from githubkit.exception import GitHubException
from rq.executions import Execution as RQExecution
from rq.registry import StartedJobRegistry

from clarity import history
from clarity.actors import shown
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus, IllegalTransition, TaskStatus
from github_app.client import describe_error
from github_app.reporting import Reporter
from jobs import context, publish, scheduler
from jobs.context import Engine

log = logging.getLogger(__name__)
S = ExecutionStatus
ACTOR = "recovery"
REASON = "recovered after a worker was lost"
SCAN_LIMIT = 2000  # newest executions looked at per pass (the store keeps no index by status)
LOST_TASK = (TaskStatus.IN_PROGRESS, TaskStatus.VERIFYING, TaskStatus.ERROR_SOLVING)
RELEASE_LOCK = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                "return redis.call('del', KEYS[1]) else return 0 end")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one pass did, by execution id."""

    recovered: tuple[str, ...] = ()  # re-enqueued under a fresh lease
    requeued: tuple[str, ...] = ()   # back in their repository's line: another execution holds it now
    started: tuple[str, ...] = ()    # queued on a repository nobody held, now started
    relined: tuple[str, ...] = ()    # queued, and put back in their repository's line
    skipped: bool = False            # another process was reconciling
    blocked: tuple[str, ...] = ()    # their task lost its worker max_recoveries times: blocked for a human

    def __bool__(self) -> bool:
        return bool(self.recovered or self.requeued or self.started or self.relined or self.blocked)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a pass should do: the orphaned executions to recover, the queued ones to start."""

    orphans: tuple[Execution, ...] = ()
    starts: tuple[Execution, ...] = ()
    relines: tuple[Execution, ...] = ()  # queued but missing from their repository's line

    def ids(self) -> set[str]:
        """Every execution id the plan touches."""
        return {e.id for e in (*self.orphans, *self.starts, *self.relines)}

    def keep(self, ids: set[str]) -> Plan:
        """Only the parts about `ids` (those seen in both looks of a pass)."""
        return Plan(*(tuple(e for e in part if e.id in ids) for part in (self.orphans, self.starts, self.relines)))


def plan(executions: Iterable[Execution], holders: Mapping[str, str | None], live: set[str],
         lines: Mapping[str, list[str]]) -> Plan:
    """Decide, from one look at the world, which executions are orphaned and which can start.

    An active execution is orphaned when it does not hold its repository's lease (a live step renews
    it) and no step job of it is queued or running on a live worker. A queued execution can start
    when its repository's lease is free and no active execution of that repository is alive or about
    to be recovered; the first in the repository's line (then the oldest) goes first. The other
    queued executions must be in the line, or nobody would ever start them.
    """
    executions = list(executions)
    active = [e for e in executions if e.status.is_active]
    orphans = [e for e in active if holders.get(e.repo) != e.id and e.id not in live]
    taken = {e.repo for e in active}
    starts: list[Execution] = []
    relines: list[Execution] = []
    queued = sorted((e for e in executions if e.status is S.QUEUED), key=lambda e: e.created_at)
    for repo in dict.fromkeys(e.repo for e in queued):
        line = lines.get(repo, [])
        waiting = sorted((e for e in queued if e.repo == repo),
                         key=lambda e: line.index(e.id) if e.id in line else len(line))
        if repo not in taken and holders.get(repo) is None:
            starts.append(waiting.pop(0))
        relines.extend(e for e in waiting if e.id not in line)
    return Plan(tuple(orphans), tuple(starts), tuple(relines))


def reconcile(engine: Engine, confirm: float | None = None) -> RecoveryReport:
    """One pass: recover orphaned executions and start queued ones on free repositories.

    Idempotent, and safe from several processes at once: a short Redis lock lets one pass act at a
    time, and an execution is acted upon only if two looks `confirm` seconds apart agree (a step job
    is in neither RQ list for the instant a worker takes it off the queue).
    """
    ttl = engine.settings.lease_ttl
    confirm = min(5.0, ttl / 4) if confirm is None else confirm
    lock = f"{engine.settings.namespace}:recovery:lock"
    token = uuid.uuid4().hex
    if not engine.store.r.set(lock, token, nx=True, px=int(ttl * 1000)):
        return RecoveryReport(skipped=True)
    try:
        if top_up(engine):
            log.warning("recovery: queued slots for ready executions that had none")
        first = _look(engine)
        if not first.ids():
            return RecoveryReport()
        time.sleep(confirm)
        return _act(engine, _look(engine).keep(first.ids()))
    finally:
        engine.store.r.eval(RELEASE_LOCK, 1, lock, token)


def _look(engine: Engine) -> Plan:
    store = engine.store
    executions = [e for e in store.executions(limit=SCAN_LIMIT) if e.status.is_active or e.status is S.QUEUED]
    if not executions:
        return Plan()
    repos = {e.repo for e in executions}
    holders = {repo: store.lease_holder(repo) for repo in repos}
    lines = {e.repo: store.waiting(e.repo) for e in executions if e.status is S.QUEUED}
    return plan(executions, holders, live_steps(engine), lines)


def _act(engine: Engine, todo: Plan) -> RecoveryReport:
    outcomes: dict[str, list[str]] = {"recovered": [], "requeued": [], "blocked": []}
    started: list[str] = []
    for ex in todo.orphans:
        try:
            outcome = _recover(engine, ex.id)
        except IllegalTransition as exc:  # someone (a `/clarity stop`) changed it under our feet
            log.info("execution %s: not recovered: %s", ex.id, exc)
            continue
        if outcome is not None:
            outcomes[outcome].append(ex.id)
    for ex in todo.starts:
        current = engine.store.get(ex.id)
        if current.status is not S.QUEUED:
            continue
        engine.store.remove_waiting(ex.repo, ex.id)
        try:
            current = scheduler.submit(engine, current, ACTOR)
        except IllegalTransition as exc:  # started meanwhile by the lease holder's release
            log.info("execution %s: not started: %s", ex.id, exc)
            continue
        if current.status is S.INITIALIZING:
            engine.store.log(ex.id, "started by recovery: its repository was free")
            started.append(ex.id)
    relined: list[str] = []
    for ex in todo.relines:
        if engine.store.get(ex.id).status is S.QUEUED and ex.id not in engine.store.waiting(ex.repo):
            engine.store.enqueue_waiting(ex.repo, ex.id)
            relined.append(ex.id)
    return RecoveryReport(tuple(outcomes["recovered"]), tuple(outcomes["requeued"]), tuple(started),
                          tuple(relined), blocked=tuple(outcomes["blocked"]))


def _recover(engine: Engine, execution_id: str) -> str | None:
    """Put an orphan back on the road: "recovered" under the lease, "requeued" back in line, "blocked"
    when its task lost its worker too often; None if not ours to do."""
    store = engine.store
    ttl = engine.settings.lease_ttl
    # One recovery per execution per lease time, whatever runs at once (the pass lock may lapse).
    if not store.r.set(f"{engine.settings.namespace}:recovery:claim:{execution_id}", "1", nx=True,
                       px=int(ttl * 1000)):
        return None
    claimed = time.monotonic()
    ex = store.get(execution_id)
    if not ex.status.is_active:
        return None
    # The lease first, and only a free one: a step whose lease lapsed (Redis restarted, or it stalled)
    # and who took it again is alive and must find its execution as it left it. Once recovery holds
    # it, that step can never take it again: it sees the lease gone and abandons its work.
    took = store.take_free_lease(ex.repo, ex.id, ttl)
    if not took and store.lease_holder(ex.repo) == ex.id:
        return None
    lost = [p for p in store.tasks(ex.id).values() if p.status in LOST_TASK]
    # A task whose worker is lost again and again (killed for memory, a crash it causes) is not tried
    # once more: the execution blocks with the reason instead of looping through recoveries for ever.
    limit = engine.settings.max_recoveries
    too_often = [p for p in lost if store.count_recovery(ex.id, p.task_id) >= limit]
    for progress in lost:
        if progress in too_often:
            store.set_task_status(ex.id, progress.task_id, TaskStatus.FAILED, error_class="infra",
                                  last_error=LOST_TOO_OFTEN.format(n=limit))
        else:
            store.set_task_status(ex.id, progress.task_id, TaskStatus.PENDING)
    # Before the step is enqueued: once it runs, it may find the task done and report success itself.
    # The run last opened for each lost task: its id, or, if the worker was lost before GitHub's answer,
    # the commit it was being opened on (looked up by its external id). The row's id is older, if any.
    opened = store.checks(ex.id)
    runs = {p.task_id: opened.get(p.task_id, p.check_run_id) for p in lost}
    _close_checks(engine, ex, sorted(c for c in runs.values() if isinstance(c, int)),
                  [(task_id, sha) for task_id, sha in runs.items() if isinstance(sha, str)])
    if isinstance(summary := opened.get(publish.SUMMARY), str):  # a summary asked for, never recorded
        _close_orphan_summaries(engine, ex, summary)
    if too_often:
        return _block(engine, ex, too_often[0].task_id)
    if time.monotonic() - claimed > ttl / 2:
        if took:
            store.release_lease(ex.repo, ex.id)
        return None  # GitHub was slow and our claim is running out: the next pass finishes the job
    pending = f"; task {', '.join(p.task_id for p in lost)} back to pending" if lost else ""
    store.log(ex.id, f"{REASON}{pending}", "warning")
    log.warning("execution %s (%s): %s%s", ex.id, ex.repo, REASON, pending)
    if ex.status in (S.TASK_EXECUTING, S.ERROR_SOLVING):
        ex = store.transition(ex.id, S.AUTONOMOUS, ACTOR, REASON, current_task=None)
    elif ex.current_task:
        ex = store.update(ex.id, current_task=None)
    if took or store.acquire_lease(ex.repo, ex.id, ttl):
        scheduler.enqueue_step(engine, ex.id)
        return "recovered"
    scheduler.submit(engine, ex, ACTOR)  # another execution holds the repository: wait in line
    return "requeued"


LOST_TOO_OFTEN = ("the worker running this task was lost {n} times (killed for memory, or crashed by what the "
                  "task runs?); Clarity does not try it again on its own")


def _block(engine: Engine, ex: Execution, task_id: str) -> str:
    """Block an execution whose task keeps losing its worker, and tell its issue (best effort)."""
    reason = f"task {task_id}: {LOST_TOO_OFTEN.format(n=engine.settings.max_recoveries)}"
    ex = engine.store.transition(ex.id, S.BLOCKED, ACTOR, reason, current_task=None)
    engine.store.log(ex.id, reason, "error", task=task_id)
    log.error("execution %s (%s): %s", ex.id, ex.repo, reason)
    scheduler.release(engine, ex)
    try:
        Reporter(engine.github.client(ex.installation_id), ex.repo).comment(ex.issue_number, (
            f"{shown(ex.requester)} execution [`{ex.id}`]({engine.dashboard_url(ex.id)}) is blocked: {reason}. "
            f"Look at the task's artifacts, then `/clarity retry {task_id}` or "
            f"`/clarity override {task_id} skipped`."))
    except (GitHubException, httpx.HTTPError) as exc:
        log.warning("execution %s: could not comment: %s", ex.id, describe_error(exc))
    return "blocked"


def _close_checks(engine: Engine, ex: Execution, check_run_ids: list[int],
                  unanswered: Sequence[tuple[str, str]] = ()) -> None:
    """Complete the check runs the lost worker left in progress (best effort: GitHub may be away);
    `unanswered`: (task id, commit) of runs asked for whose answer the worker never heard."""
    if not check_run_ids and not unanswered:
        return
    try:
        reporter = Reporter(engine.github.client(ex.installation_id), ex.repo)
        found = [i for task_id, sha in unanswered for i in reporter.running_checks(sha, f"{ex.id}:{task_id}")]
        for check_run_id in [*check_run_ids, *found]:
            reporter.finish_check(check_run_id, "cancelled", "The worker running this task was lost",
                                  "Clarity picked the execution up again: the task runs again, unless the "
                                  f"branch `{ex.branch}` already shows it done.")
    except (GitHubException, httpx.HTTPError) as exc:
        log.warning("execution %s: could not close the lost task's check run: %s", ex.id, describe_error(exc))


def _close_orphan_summaries(engine: Engine, ex: Execution, sha: str) -> None:
    """End the summary check runs a lost worker opened on `sha` without recording them (best effort):
    the next step opens the execution's summary on the branch head again."""
    try:
        reporter = Reporter(engine.github.client(ex.installation_id), ex.repo)
        for check_run_id in reporter.running_checks(sha, f"{ex.id}:"):
            if check_run_id != ex.summary_check_id:
                reporter.finish_check(check_run_id, "neutral", "The worker updating this summary was lost",
                                      "Clarity picked the execution up again; its summary goes on in a new check run.")
    except (GitHubException, httpx.HTTPError) as exc:
        log.warning("execution %s: could not close a lost summary check run: %s", ex.id, describe_error(exc))


# -- what RQ knows ------------------------------------------------------------------------------
def live_steps(engine: Engine) -> set[str]:
    """Execution ids waiting for a worker (the ready set) or being stepped by a slot on a live worker."""
    live = {entry.execution_id for entry in engine.store.ready.entries()}
    running: list[str] = []
    for queue in engine.steps_queues:
        registry = StartedJobRegistry(queue=queue)
        registry.cleanup()  # RQ's own abandoned-job handling: runs whose heartbeat expired go to failed
        running += [job_id for job_id, run_id in registry.get_job_and_execution_ids(cleanup=False)
                    if _worker_alive(queue.connection, job_id, run_id)]
    # A slot records its pick in the same transaction that takes it out of the ready set: no gap.
    return live | set(engine.store.ready.slots(running).values())


def top_up(engine: Engine) -> int:
    """Queue slots for ready executions that have none (lost with a flushed queue); returns how many.

    A spare slot costs one job that finds nobody, a missing one leaves an execution waiting for
    ever, so the count errs on the side of spares.
    """
    waiting = scheduler.ready_order(engine)
    missing = len(waiting) - scheduler.slots_queued(engine)
    for entry in waiting[:max(missing, 0)]:
        scheduler.enqueue_slot(engine, entry.priority)
    return max(missing, 0)


def _worker_alive(conn: redis.Redis, job_id: str, run_id: str) -> bool:
    """Whether the RQ worker running this job is alive.

    RQ's heartbeats only say so after a minute or more; a worker on this host is checked by its pid
    at once (SIGKILL leaves its registry entries behind), one elsewhere is trusted until RQ expires it.
    """
    try:
        name = RQExecution.fetch(run_id, job_id, conn).worker_name
    except ValueError:
        return False  # the run's record expired with its heartbeat
    worker = {_text(k): _text(v) for k, v in conn.hgetall(f"rq:worker:{name}").items()}
    if not worker or "death" in worker:
        return False
    if worker.get("hostname") != socket.gethostname() or not worker.get("pid", "").isdigit():
        return True
    return _pid_alive(int(worker["pid"]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process has that pid now: not ours, but we cannot tell
    with contextlib.suppress(OSError, IndexError):
        # A killed process nobody has reaped yet is a zombie: dead all the same.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- when it runs -------------------------------------------------------------------------------
def run_periodically(settings: Settings, stop: threading.Event) -> threading.Thread:
    """A daemon thread that reconciles every `lease_ttl / 2` seconds until `stop` is set.

    Started in a steps worker's parent process (RQ forks work horses from the main thread only, so
    the thread never runs inside a job). It has its own engine: no connection is shared with RQ.
    """
    def loop() -> None:
        engine = context.build(settings)
        while not stop.wait(settings.lease_ttl / 2):
            reconcile_logged(engine)
            history.prune_when_due(engine.store, settings.history_retention_days)  # hourly; never raises

    thread = threading.Thread(target=loop, name="clarity-recovery", daemon=True)
    thread.start()
    return thread


def reconcile_logged(engine: Engine) -> RecoveryReport:
    """`reconcile`, saying what it did; a failing pass is logged and the next one tries again."""
    try:
        report = reconcile(engine)
    except Exception:
        # A bug or an outage must not stop the worker (or the next pass): log it with its traceback.
        log.exception("recovery pass failed")
        return RecoveryReport()
    if report:
        log.warning("recovery: recovered %s; back in line %s; started %s; put in line %s; blocked %s",
                    list(report.recovered), list(report.requeued), list(report.started), list(report.relined),
                    list(report.blocked))
    return report
