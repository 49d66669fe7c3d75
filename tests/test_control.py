"""Engine controls against the forge and a real Redis, without a worker: what each command changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from clarity.flags import Flag
from clarity.status import ExecutionStatus as E
from github_app.commands import Command, Verb
from github_app.reporting import Reporter
from jobs import context, scheduler, verbs
from jobs.comment_event import CommentEvent
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"


@pytest.fixture
def engine(forge: ForgeHandle, settings, tmp_path: Path) -> context.Engine:
    forge.create_repo(REPO, {"tasks_list.md": "- [ ] 1 One\n"})
    return forge.engine(settings)


@pytest.fixture
def reporter(forge: ForgeHandle, engine: context.Engine) -> Reporter:
    installation = engine.github.installation_id_for(REPO)
    return Reporter(engine.github.client(installation), REPO)


def event(issue: int = 1, author: str = "acme") -> CommentEvent:
    return CommentEvent(delivery="d", installation_id=1000, repo=REPO, account="acme", issue_number=issue,
                        is_pull_request=False, locked=False, comment_id=1, body="", author=author,
                        author_is_bot=False)


def bot_comments(forge: ForgeHandle) -> list[str]:
    return [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]


def test_run_starts_then_a_second_issue_waits_in_line(engine, reporter, forge) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "two", "user": "acme"})
    assert verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, "", until="1")).startswith("started")
    first = engine.store.find(REPO, 1)[0]
    assert first.status is E.INITIALIZING and first.branch == "clarity/issue-1" and first.base_branch == "main"
    assert scheduler.slots_queued(engine) == 1 and engine.queue_for(5).count == 1
    assert [r.execution_id for r in scheduler.ready_order(engine)] == [first.id]
    assert verbs.run(engine, reporter, event(2), Command(Verb.RUN, 1, "")).startswith("queued")
    second = engine.store.find(REPO, 2)[0]
    assert second.status is E.QUEUED and scheduler.position(engine, second) == 1
    assert "Position 1 in line" in bot_comments(forge)[-1]
    scheduler.release(engine, engine.store.transition(first.id, E.STOPPED, "test"))
    assert engine.store.get(second.id).status is E.INITIALIZING  # the line moved on


def test_run_on_an_issue_with_a_live_execution_is_refused_with_its_link(engine, reporter, forge) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, ""))
    assert verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, "")).startswith("refused")
    assert "already working here" in bot_comments(forge)[-1]


def test_stop_of_an_execution_nobody_works_on_is_immediate(engine, reporter, forge) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, ""))
    ex = engine.store.find(REPO, 1)[0]
    engine.store.release_lease(REPO, ex.id)  # as if its worker died and the lease expired
    verbs.stop(engine, reporter, event(1), Command(Verb.STOP, 1, ""))
    assert engine.store.get(ex.id).status is E.STOPPED


def test_stop_of_a_running_execution_raises_the_flag_for_the_step(engine, reporter, forge) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, ""))
    ex = engine.store.find(REPO, 1)[0]
    verbs.stop(engine, reporter, event(1, author="ada"), Command(Verb.STOP, 1, ""))
    assert engine.store.get(ex.id).status is E.INITIALIZING
    assert engine.store.flag(ex.id, Flag.STOP) == "ada"


@pytest.mark.parametrize(("verb", "reply"), [
    (Verb.STOP, "Nothing to stop"), (Verb.PAUSE, "Nothing to pause"), (Verb.RESUME, "Nothing to resume"),
    (Verb.RETRY, "Nothing to retry"), (Verb.STOP_POINT, "No execution here to change"),
])
def test_commands_without_an_execution_say_so(engine, reporter, forge, verb: Verb, reply: str) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    act = {Verb.STOP: verbs.stop, Verb.PAUSE: verbs.pause, Verb.RESUME: verbs.resume,
           Verb.RETRY: verbs.retry, Verb.STOP_POINT: verbs.set_stop_point}[verb]
    act(engine, reporter, event(1), Command(verb, 1, "", task_id="1"))
    assert bot_comments(forge)[-1].startswith(reply)


def test_status_without_execution_explains_how_to_start(engine) -> None:
    assert verbs.status_text(engine, REPO, 9).startswith("No execution on this issue yet.")


def test_run_until_an_unknown_task_is_answered_at_once(engine, reporter, forge) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    outcome = verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, "", until="9.9"))
    assert outcome == "refused: unknown task"
    assert bot_comments(forge)[-1].startswith("task 9.9 is not in tasks_list.md. Nothing was started")
    assert engine.store.executions(repo=REPO) == []
    assert verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, "", until="1")).startswith("started")


def test_stop_point_to_an_unknown_task_is_refused_and_kept(engine, reporter, forge) -> None:
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, "", until="1"))
    ex = engine.store.find(REPO, 1)[0]
    outcome = verbs.set_stop_point(engine, reporter, event(1), Command(Verb.STOP_POINT, 1, "", task_id="7"))
    assert outcome == "refused: unknown task"
    assert "task 7 is not in tasks_list.md" in bot_comments(forge)[-1]
    assert engine.store.get(ex.id).stop_point == "1"


def test_status_gives_priority_place_in_line_and_estimates_from_measured_durations(engine, reporter, forge) -> None:
    for issue in (1, 2):
        forge.admin("POST", f"/repos/{REPO}/issues", {"title": f"issue {issue}", "user": "acme"})
    for seconds in (30.0, 90.0, 600.0):  # the median (90 s) resists the slow one
        engine.store.record_duration(REPO, seconds)
    verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, ""))
    first = engine.store.find(REPO, 1)[0]
    engine.store.update(first.id, tasks_total=4, tasks_completed=1, tasks_left=3)
    verbs.run(engine, reporter, event(2), Command(Verb.RUN, 1, "", priority=8))
    second = engine.store.find(REPO, 2)[0]
    engine.store.update(second.id, tasks_total=2, tasks_left=2)

    estimate = scheduler.estimate(engine, engine.store.get(second.id))
    assert estimate.task_seconds == 90.0
    assert (estimate.starts_in, estimate.finishes_in) == (3 * 90.0, 5 * 90.0)  # behind 3 tasks left, then 2
    text = verbs.status_text(engine, REPO, 2)
    assert "Priority 8; position 1 in this repository's line; next step in about 5 min" in text
    assert "done in about 8 min (tasks take about 2 min)" in text
    running = verbs.status_text(engine, REPO, 1)
    assert "Priority 5; next step now" in running  # ready for a worker, the first in line


def test_reprioritised_execution_is_taken_first_and_the_audit_says_who(engine, reporter, forge) -> None:
    forge.create_repo("acme/gadgets", {"tasks_list.md": "- [ ] 1 One\n"})
    for repo in (REPO, "acme/gadgets"):
        forge.admin("POST", f"/repos/{repo}/issues", {"title": "one", "user": "acme"})
    gadgets = Reporter(engine.github.client(engine.github.installation_id_for("acme/gadgets")), "acme/gadgets")
    verbs.run(engine, reporter, event(1), Command(Verb.RUN, 1, ""))
    other = dataclasses.replace(event(1), repo="acme/gadgets")
    verbs.run(engine, gadgets, other, Command(Verb.RUN, 1, ""))
    low, high = engine.store.find(REPO, 1)[0], engine.store.find("acme/gadgets", 1)[0]
    assert [r.execution_id for r in scheduler.ready_order(engine)] == [low.id, high.id]

    assert verbs.prioritise(engine, gadgets, other, Command(Verb.PRIORITY, 1, "", priority=9)).startswith("priority")
    assert [r.execution_id for r in scheduler.ready_order(engine)] == [high.id, low.id]
    assert engine.queue_for(9).count == 1  # a slot on the faster queue, so a worker comes for it first
    assert engine.store.ready.take("job-1") == high.id
    record = next(a for a in engine.store.audit() if a["kind"] == "execution.reprioritised")
    assert (record["actor"], record["from"], record["to"]) == ("acme", 5, 9)
