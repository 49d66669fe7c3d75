"""Words match deeds (issue 15): what Clarity says a command does is what it does.

Stop has one definition (clarity.stopping) that the help, the OpenAPI document and the replies quote, and
the deed matches it: a check in progress is cancelled too. A replay or retry that would run nothing again is
refused with the reason. Replies suggest the command that moves the execution on from where it is.
`/clarity status` is a read: a reader may ask, and its text says each fact once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

import devstack
from clarity import stopping
from clarity.engine_port import Conflict
from clarity.status import ExecutionStatus as E
from clarity.status import TaskStatus as T
from github_app.commands import Command, Verb, help_text
from github_app.reporting import Reporter
from jobs import context, control, scheduler, verbs
from jobs.api_engine import ApiEngine
from jobs.comment_event import CommentEvent
from tests.conftest_forge import ForgeHandle
from tests.e2e import REPO, make_repo, store_of, tasks_md, wait_comment, wait_settled

# -- one definition of stop ---------------------------------------------------------------------


def test_the_help_and_the_openapi_document_quote_the_one_definition_of_stop(client: FlaskClient) -> None:
    assert f"| `/clarity stop` | {stopping.MEANS} |" in help_text()
    assert "after the task in progress" not in stopping.MEANS
    paths = client.get("/api/openapi.json").get_json()["paths"]
    [stop] = [ops["post"] for path, ops in paths.items() if path.endswith("/executions/{execution_id}/stop")]
    assert stop["description"] == stopping.MEANS and "safe point" not in str(stop)


def test_a_stop_cancels_the_check_in_progress_as_its_definition_says(stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, "# Tasks\n\n- [ ] 1 Quick agent, slow check\n  - check: sleep 60\n")
    stack.comment(REPO, 1, "/clarity run", user="ada")
    store = store_of(stack)
    devstack.wait_for(lambda: any(str(t.status) == "verifying" for e in store.executions(repo=REPO)
                                  for t in store.tasks(e.id).values()), 30, what="the check to start")
    started = time.monotonic()
    stack.comment(REPO, 1, "/clarity stop", user="ada")
    ex = wait_settled(stack, timeout=30)
    assert ex.status is E.STOPPED and ex.reason == "stopped by @ada"
    assert time.monotonic() - started < 15  # the 60 s check was killed, not waited for
    reply = wait_comment(stack, "Stopping")["body"]
    assert stopping.RUNNING in reply and stopping.sentence(stopping.AFTER) in reply


# -- replies suggest the next command; status is a read ----------------------------------------

def test_a_paused_execution_says_resume_and_a_reader_may_ask_its_status(stack: devstack.Stack, tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "First", False), ("2", "Second", False)),
              collaborators={"ada": "write", "rita": "read"})
    stack.comment(REPO, 1, "/clarity run until 1", user="ada")
    ex = wait_settled(stack)
    assert ex.status is E.PAUSED, ex.reason
    closing = wait_comment(stack, "paused ⏸️")["body"]
    assert "Continue with `/clarity resume`" in closing and "Continue with `/clarity run`" not in closing

    asked = stack.comment(REPO, 1, "/clarity status", user="rita")
    status = wait_comment(stack, "**Execution")["body"]
    head = status.splitlines()[0]
    assert "stop point 1 reached" in head.lower() and "until 1" not in head  # the scope is said once
    assert "Continue with `/clarity resume`" in status
    reactions = stack.admin("GET", "/state")["reactions"]
    assert [r["content"] for r in reactions if r["comment_id"] == asked["comment"]["id"]] == ["eyes"]
    stack.comment(REPO, 1, "/clarity run", user="rita")  # a reader still steers nothing
    assert "@rita only people with write access" in wait_comment(stack, "only people with write access")["body"]
    assert store_of(stack).get(ex.id).status is E.PAUSED


# -- replay and retry re-run what they say, or refuse with the reason ---------------------------

LIST = "- [ ] 1 One\n- [ ] 2 Two\n- [ ] 3 Three\n"


@pytest.fixture
def engine(forge: ForgeHandle, settings, tmp_path: Path) -> context.Engine:
    forge.seed(REPO, {"tasks_list.md": LIST})
    return forge.engine(settings)


@pytest.fixture
def reporter(forge: ForgeHandle, engine: context.Engine) -> Reporter:
    return forge.reporter(engine, REPO)


def bot_comments(forge: ForgeHandle) -> list[str]:
    return [c["body"] for c in forge.admin("GET", "/state")[1]["comments"] if c["author"] == "clarity[bot]"]


def settled(engine: context.Engine, reporter: Reporter, status: E, **tasks: T) -> str:
    """An execution settled in `status` with this task table (`_2=T.FAILED` is task 2), as a step leaves it."""
    event = CommentEvent(delivery="d", installation_id=1000, repo=REPO, account="acme", issue_number=1,
                         is_pull_request=False, locked=False, comment_id=1, body="", author="ada",
                         author_is_bot=False)
    verbs.run(engine, reporter, event, Command(Verb.RUN, 1, ""))
    ex = engine.store.find(REPO, 1)[0]
    for key, task_status in tasks.items():
        task_id = key.lstrip("_")
        way = {T.COMPLETED: (T.IN_PROGRESS, T.VERIFYING), T.FAILED: (T.IN_PROGRESS,), T.SKIPPED: ()}[task_status]
        for step in (*way, task_status):
            engine.store.set_task_status(ex.id, task_id, step, title=f"Task {task_id}", attempts=len(way) and 4,
                                         commit="c0ffee1234567" if step is T.COMPLETED else "")
    engine.store.transition(ex.id, E.AUTONOMOUS, "engine", "initialized")
    scheduler.release(engine, engine.store.transition(ex.id, status, "engine", "stop point 3 reached"))
    return ex.id


def test_a_replay_from_a_done_task_is_refused_with_the_reason_and_changes_nothing(engine, reporter, forge) -> None:
    ex_id = settled(engine, reporter, E.PAUSED, _1=T.COMPLETED, _2=T.COMPLETED, _3=T.COMPLETED)
    before = len(bot_comments(forge))
    with pytest.raises(Conflict) as refused:
        ApiEngine(engine).replay(ex_id, "token:ci", "2", tool="command")
    assert "task 2 is done (commit c0ffee1234) and no task after it failed or was skipped" in str(refused.value)
    assert "never done ones" in str(refused.value) and "Nothing was replayed" in str(refused.value)
    ex = engine.store.get(ex_id)
    assert ex.status is E.PAUSED and ex.tool is None  # nothing re-queued, nothing changed
    assert len(bot_comments(forge)) == before  # the API's refusal is its answer, not a comment
    assert control.retry_execution(engine, reporter, ex, "ada", "2").startswith("refused")
    assert bot_comments(forge)[-1].startswith("Task 2 is done (commit c0ffee1234): a retry runs failed and skipped")
    assert engine.store.get(ex_id).status is E.PAUSED


def test_a_replay_names_the_tasks_it_runs_again_and_only_those(engine, reporter, forge) -> None:
    ex_id = settled(engine, reporter, E.BLOCKED, _1=T.FAILED, _2=T.FAILED, _3=T.SKIPPED)
    replayed = ApiEngine(engine).replay(ex_id, "token:ci", "2")
    assert replayed.status is E.INITIALIZING
    assert bot_comments(forge)[-1].startswith(f"Replaying tasks 2, 3 in [`{ex_id}`]")
    assert "(token `ci`)" in bot_comments(forge)[-1] and "@token" not in bot_comments(forge)[-1]
    table = engine.store.tasks(ex_id)
    assert {t: p.status for t, p in table.items()} == {"1": T.FAILED, "2": T.PENDING, "3": T.PENDING}
    assert table["2"].attempts == 4  # counted on: its next attempt is the 5th, in a folder of its own
