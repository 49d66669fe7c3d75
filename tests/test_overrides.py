"""`/clarity override <id> done|skipped`: the grammar, the pure decisions, and the control against forge + Redis."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from clarity.models import TaskProgress
from clarity.status import ExecutionStatus as E
from clarity.status import TaskStatus as T
from clarity.tasklist import parse as parse_tasks
from github_app.commands import Command, Verb, help_text, parse
from github_app.reporting import Reporter
from jobs import context, control, overrides, scheduler, verbs
from jobs.comment_event import CommentEvent
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"
LIST = "- [ ] 1 One\n- [ ] 2 Two\n  - depends: 1\n- [ ] 3 Group\n  - [ ] 3.1 Inner\n"


# -- grammar ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "task_id", "outcome"), [
    ("/clarity override 2.3 done", "2.3", "done"),
    ("/clarity override 2.0 SKIPPED", "2", "skipped"),
    ("/Clarity Override 4 Done.", "4", "done"),
])
def test_override_is_parsed(body: str, task_id: str, outcome: str) -> None:
    [command] = parse(body)
    assert isinstance(command, Command)
    assert (command.verb, command.task_id, command.outcome) == (Verb.OVERRIDE, task_id, outcome)


@pytest.mark.parametrize(("body", "problem"), [
    ("/clarity override", "`/clarity override` needs a task id, like `/clarity override 2.3.1.4`."),
    ("/clarity override 2", ("`/clarity override` needs `done` or `skipped` after the task id, like "
                            "`/clarity override 2 done`.")),
    ("/clarity override 2 finished", "a task can be overridden as `done` or `skipped`, got `finished`."),
    ("/clarity override done 2", "`done` is not a task id; task ids are dotted numbers like `2.3.1.4`."),
    ("/clarity override 2 done now", ("`/clarity override` takes one task id and then `done` or `skipped`, then "
                                     "optionally `because <why>`, got `2 done now`.")),
    ("/clarity override 2 done because", ("`/clarity override because` needs a reason, like `/clarity override "
                                         "because the flaky upstream test is fixed by hand`.")),
])
def test_bad_override_gets_the_exact_problem(body: str, problem: str) -> None:
    [reply] = parse(body)
    assert getattr(reply, "problem", None) == problem


def test_help_lists_override_from_the_grammar() -> None:
    assert "| `/clarity override <id> <done/skipped> [because <why>]` |" in help_text()
    assert "Also `/clarity manual-override <id> <done/skipped> [because <why>]`" in help_text()


@pytest.mark.parametrize(("body", "reason"), [
    ("/clarity override 1.4 done because the upstream test is flaky, see #12.", "the upstream test is flaky, see #12"),
    ("/clarity manual-override 1.4 done reason: fixed by hand in abc123", "fixed by hand in abc123"),
    ("/clarity override 1.4 skipped reason because reasons", "because reasons"),  # free text: no option read in it
    ("/clarity override 1.4 done", None),
])
def test_an_override_may_say_why_in_the_rest_of_its_line(body: str, reason: str | None) -> None:
    [command] = parse(body)
    assert isinstance(command, Command)
    assert (command.verb, command.task_id, command.reason) == (Verb.OVERRIDE, "1.4", reason)


# -- pure decisions -----------------------------------------------------------------------------

def progress(status: T, override_by: str = "", task_id: str = "2") -> TaskProgress:
    return TaskProgress(task_id=task_id, status=status, override_by=override_by)


@pytest.mark.parametrize(("status", "outcome", "ticked", "leaf", "running", "by", "expected"), [
    (T.FAILED, "done", False, True, False, "", None),
    (T.SKIPPED, "done", False, True, False, "", None),
    (T.PENDING, "skipped", False, True, False, "", None),
    (T.FAILED, "maybe", False, True, False, "", "`maybe` is not an override: use `done` or `skipped`"),
    (T.FAILED, "done", False, False, False, "", "task 2 is a group: override the tasks under it one by one"),
    (T.PENDING, "done", True, True, False, "", "task 2 is already done"),
    (T.COMPLETED, "skipped", False, True, False, "", "task 2 is already done"),
    (T.IN_PROGRESS, "done", False, True, True, "",
     "task 2 is running now: `/clarity stop` it (or wait for it to fail) first"),
    (T.IN_PROGRESS, "done", False, True, False, "", None),  # left so by a lost worker: nobody runs it
    (T.SKIPPED, "skipped", False, True, False, "bob", "task 2 is already skipped (by @bob)"),
])
def test_refusal(status: T, outcome: str, ticked: bool, leaf: bool, running: bool, by: str,
                 expected: str | None) -> None:
    assert overrides.refusal(progress(status, by), outcome, ticked, leaf, running) == expected


@pytest.mark.parametrize(("status", "outcome", "writes"), [
    (T.FAILED, "done", [T.PENDING, T.COMPLETED]),
    (T.PENDING, "done", [T.COMPLETED]),
    (T.SKIPPED, "skipped", [T.PENDING, T.SKIPPED]),
    (T.FAILED, "skipped", [T.PENDING, T.SKIPPED]),
])
def test_overridden_goes_through_pending(status: T, outcome: str, writes: list[T]) -> None:
    steps = overrides.overridden(dataclasses.replace(progress(status), last_error="boom"), outcome, "ada")
    assert [s.status for s in steps] == writes
    assert steps[-1].override_by == "ada" and steps[-1].last_error == ""


def test_to_tick_names_tasks_marked_done_that_the_branch_shows_open() -> None:
    tasks = parse_tasks("- [ ] 1 One\n- [x] 2 Two\n- [ ] 3 Three\n- [ ] 4 Four\n")
    table = {"1": progress(T.COMPLETED, "ada", "1"), "2": progress(T.COMPLETED, "bob", "2"),
             "3": progress(T.COMPLETED, "", "3"), "4": progress(T.SKIPPED, "cy", "4")}
    assert [(p.task_id, p.override_by) for p in overrides.to_record(table, tasks)] == [("1", "ada"), ("4", "cy")]
    assert overrides.waived(table) == frozenset({"4"})
    recorded = {**table, "4": dataclasses.replace(table["4"], commit="abc")}  # its outcome is on the branch
    assert [p.task_id for p in overrides.to_record(recorded, tasks)] == ["1"]


def test_an_override_commit_says_who_when_why_and_never_mentions_a_token() -> None:
    by_person = TaskProgress("1", "One", T.COMPLETED, attempts=4, tool="aider", override_by="ada",
                             override_reason="fixed by hand, @bob knows", override_at=1_700_000_000)
    message = overrides.commit_message(by_person, "http://dash/executions/e1/artifacts/1").splitlines()
    assert message[0] == "clarity: 1 marked done by @ada"
    assert message[2] == ("Marked done by @ada at 2023-11-14 22:13:20Z, without the agent; "
                          "reason: `fixed by hand, @bob knows`.")  # the reason is inert: no mention of @bob
    assert "Attempts before: 4 (tool aider)" in message and "Artifacts: http://dash/executions/e1/artifacts/1" in message
    by_token = dataclasses.replace(by_person, status=T.SKIPPED, override_by="token:dev", override_reason="")
    message = overrides.commit_message(by_token).splitlines()
    assert message[0] == "clarity: 1 skipped by token `dev`" and "@" not in "\n".join(message)
    assert overrides.mark(by_token).startswith("✋ overridden: skipped by token `dev` at ")


# -- the control, against the forge and Redis ---------------------------------------------------

@pytest.fixture
def engine(forge: ForgeHandle, settings, tmp_path: Path) -> context.Engine:
    forge.seed(REPO, {"tasks_list.md": LIST})
    return forge.engine(settings)


@pytest.fixture
def reporter(forge: ForgeHandle, engine: context.Engine) -> Reporter:
    return forge.reporter(engine, REPO)


def event(author: str = "ada") -> CommentEvent:
    return CommentEvent(delivery="d", installation_id=1000, repo=REPO, account="acme", issue_number=1,
                        is_pull_request=False, locked=False, comment_id=1, body="", author=author,
                        author_is_bot=False)


def bot_comments(forge: ForgeHandle) -> list[str]:
    return [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]


def blocked(engine: context.Engine, reporter: Reporter, failed: str = "1") -> str:
    """An execution blocked on a failed task, its repository free, as a step leaves it."""
    verbs.run(engine, reporter, event(), Command(Verb.RUN, 1, ""))
    ex = engine.store.find(REPO, 1)[0]
    engine.store.set_task_status(ex.id, failed, T.IN_PROGRESS, title="One")
    engine.store.set_task_status(ex.id, failed, T.FAILED, last_error="boom", error_class="timeout")
    scheduler.release(engine, engine.store.transition(ex.id, E.BLOCKED, "engine", f"task {failed} failed"))
    return ex.id


def override(engine: context.Engine, reporter: Reporter, task_id: str, outcome: str, who: str = "ada") -> str:
    return verbs.override(engine, reporter, event(who),
                            Command(Verb.OVERRIDE, 1, "", task_id=task_id, outcome=outcome))


def test_override_done_records_who_audits_and_resumes(engine, reporter, forge) -> None:
    ex_id = blocked(engine, reporter)
    before = engine.store.get(ex_id).tasks_completed
    assert override(engine, reporter, "1", "done", "grace").startswith("resume")
    task = engine.store.task(ex_id, "1")
    assert (task.status, task.override_by, task.last_error) == (T.COMPLETED, "grace", "")
    ex = engine.store.get(ex_id)
    assert ex.status is E.INITIALIZING and ex.tasks_completed == before + 1  # back in line, as `resume`
    [audit] = [a for a in engine.store.audit() if a["kind"] == "task.override"]
    assert (audit["actor"], audit["task"], audit["outcome"], audit["execution"]) == ("grace", "1", "done", ex_id)
    assert any("marked done by @grace" in str(line) for line in engine.store.log_lines(ex_id))
    said = bot_comments(forge)
    assert "Task 1 of" in said[-2] and "marked **done** by @grace" in said[-2] and "without running the agent" \
        in said[-2]
    assert said[-1].startswith("Resuming")


def test_override_skipped_stays_skipped_through_the_resume(engine, reporter, forge) -> None:
    ex_id = blocked(engine, reporter)
    override(engine, reporter, "1", "skipped")
    task = engine.store.task(ex_id, "1")
    assert (task.status, task.override_by) == (T.SKIPPED, "ada")  # not reset to pending by the resume
    assert engine.store.get(ex_id).status is E.INITIALIZING
    # A retry that names it makes it eligible again and forgets the override.
    scheduler.release(engine, engine.store.transition(ex_id, E.BLOCKED, "engine", "again"))
    control.retry_execution(engine, reporter, engine.store.get(ex_id), "ada", "1")
    assert (engine.store.task(ex_id, "1").status, engine.store.task(ex_id, "1").override_by) == (T.PENDING, "")


@pytest.mark.parametrize(("task_id", "outcome", "said"), [
    ("9", "done", "9"),                       # the parser's message names the unknown id
    ("3", "done", "Task 3 is a group"),
    ("1", "maybe", "`maybe` is not an override"),
])
def test_override_refusals_change_nothing(engine, reporter, forge, task_id: str, outcome: str, said: str) -> None:
    ex_id = blocked(engine, reporter)
    assert override(engine, reporter, task_id, outcome).startswith("refused")
    assert said in bot_comments(forge)[-1] and "Nothing was changed." in bot_comments(forge)[-1]
    assert engine.store.get(ex_id).status is E.BLOCKED
    assert engine.store.task(ex_id, "1").status is T.FAILED


def test_override_without_an_execution_says_so(engine, reporter, forge) -> None:
    assert override(engine, reporter, "1", "done") == "nothing to override"
    assert "Nothing to override" in bot_comments(forge)[-1]


def test_override_of_the_running_task_is_refused(engine, reporter, forge) -> None:
    verbs.run(engine, reporter, event(), Command(Verb.RUN, 1, ""))
    ex = engine.store.find(REPO, 1)[0]
    engine.store.update(ex.id, current_task="1")
    engine.store.set_task_status(ex.id, "1", T.IN_PROGRESS)
    assert override(engine, reporter, "1", "done").startswith("refused")
    assert "running now" in bot_comments(forge)[-1]
