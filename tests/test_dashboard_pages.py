"""What the dashboard's pages say, server-side: the execution page's log, durations, notice and time left,
the overview's time left, the artifacts by attempt, the audit's fields, and one stylesheet for every page.

The real app (`create_app`) over Flask's test client on a real Redis, records written through the store;
the pure pieces (dashboard.logtext, dashboard.execview, dashboard.artifactlist) as tables. GitHub is
unreachable here but for the group titles, which come from the task list: the whole stack and its forge.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

import devstack
from app import create_app
from clarity import artifacts
from clarity.artifacts import Entry
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard import artifactlist, audit, board, execview, logtext
from dashboard.auth import Viewer
from tests.e2e import REPO, make_repo, tasks_md, wait_settled

S, T = ExecutionStatus, TaskStatus
ACME = 7
TEMPLATES = Path(__file__).resolve().parents[1] / "dashboard" / "templates"
RAW_KINDS = re.compile(r"(?<![\w\"=-])(execution\.status|task\.status|step\.started|step\.finished|execution\.created)(?![\w\"])")


@pytest.fixture
def client(settings: Settings, store: Store) -> FlaskClient:
    app = create_app(settings)
    app.extensions["clarity.viewer_provider"] = lambda: Viewer("ada", {ACME: "team_member"})
    return app.test_client()


def running(store: Store, status: S = S.TASK_EXECUTING) -> Execution:
    """An execution whose task 1.2 runs its second attempt after 1.1 completed."""
    ex = store.create(Execution(id="", installation_id=ACME, repo="acme/widgets", account="acme", issue_number=3,
                                is_pull_request=False, branch="clarity/issue-3", base_branch="main", requester="ada",
                                stop_point="1.2"), "ada")
    store.transition(ex.id, S.INITIALIZING, "engine", "started")
    store.transition(ex.id, S.AUTONOMOUS, "engine", "initialized", tasks_total=2)
    store.put_task(ex.id, TaskProgress("1.1", "first"))
    store.put_task(ex.id, TaskProgress("1.2", "second"))
    for step in (T.IN_PROGRESS, T.VERIFYING, T.COMPLETED):
        store.set_task_status(ex.id, "1.1", step, attempts=1, tool="aider", **(
            {"duration": 42.3, "commit": "0123456789abcdef"} if step is T.COMPLETED else {}))
    store.set_task_status(ex.id, "1.2", T.IN_PROGRESS, attempts=1, tool="aider")
    store.set_task_status(ex.id, "1.2", T.ERROR_SOLVING, error_class="check_failed")
    store.log(ex.id, "task 1.2: attempt 1 failed\nAssertionError", "warning", "1.2")
    store.set_task_status(ex.id, "1.2", T.IN_PROGRESS, attempts=2)
    return store.transition(ex.id, status, "engine", "task 1.2 attempt 2", current_task="1.2")


def newest_id(store: Store, execution_id: str) -> str:
    return str(store.log_lines(execution_id, 1)[-1]["id"])


# -- the execution page ---------------------------------------------------------------------------
def test_the_log_reads_as_sentences_with_their_times_not_event_names(client: FlaskClient, store: Store) -> None:
    ex = running(store)
    page = client.get(f"/executions/{ex.id}").get_data(as_text=True)
    log = page.split('id="log"', 1)[1].split("</pre>", 1)[0]
    lines = re.findall(r'<span data-id="[^"]+" data-kind="([^"]+)" data-level="(\w+)"><time datetime="([^"]+)">'
                       r'(\d\d:\d\d:\d\d)</time> ([^\n]+)', log)
    assert len(lines) == len(store.log_lines(ex.id, 300)) > 5
    assert not RAW_KINDS.search(re.sub(r"<[^>]+>", "", log)), log  # the kinds stay in attributes only
    said = [text for *_, text in lines]
    assert "Execution queued → initializing: started" in said
    assert "Task 1.1 “first”: verifying → completed (attempt 1)" in said
    assert "Warning: task 1.2: attempt 1 failed" in said and ("log", "warning") in {(k, v) for k, v, *_ in lines}


def test_a_running_task_shows_since_when_it_runs_and_a_finished_one_how_long_it_took(client: FlaskClient,
                                                                                    store: Store) -> None:
    ex = running(store)
    page = client.get(f"/executions/{ex.id}").get_data(as_text=True)
    cell = re.search(r'<tr data-task="1.2"[^>]*>.*?data-field="duration"[^>]*>([^<]*)</td>', page, re.DOTALL)
    assert cell and re.fullmatch(r"running since \d\d:\d\d:\d\d UTC", cell.group(1)), cell
    done = re.search(r'<tr data-task="1.1"[^>]*>.*?data-field="duration"[^>]*>([^<]*)</td>', page, re.DOTALL)
    assert done and done.group(1) == "42 s"
    assert "0.0s" not in page and "0.0 s" not in page
    failure = re.search(r'<tr data-task="1.2"[^>]*>.*?data-field="failure"[^>]*>([^<]*)</td>', page, re.DOTALL)
    assert failure and failure.group(1) == "check_failed"  # the class of the attempt that failed, while it retries


def test_the_notice_of_a_control_lasts_until_the_status_changes_after_it(client: FlaskClient, store: Store) -> None:
    ex = running(store, S.TASK_EXECUTING)
    store.transition(ex.id, S.AUTONOMOUS, "engine", "task 1.2 completed")
    store.transition(ex.id, S.PAUSED, "engine", "stop point 1.2 reached")
    pressed = newest_id(store, ex.id)

    def notice() -> str:
        page = client.get(f"/executions/{ex.id}?requested=resume&at={pressed}").get_data(as_text=True)
        found = re.search(r'<p role="status" class="notice" data-field="requested">([^<]*)</p>', page)
        assert found, page
        return found.group(1)

    assert notice() == "Resume requested: the engine acts on it at the next safe point."
    store.log(ex.id, "a line is no answer")
    assert notice().startswith("Resume requested")
    store.transition(ex.id, S.QUEUED, "ada", "resumed by @ada")
    assert notice() == ""  # the engine acted: the status moved after the press
    assert execview.still_requested("", []) is False and execview.still_requested("nonsense", []) is False


def test_time_left_is_said_in_every_status(client: FlaskClient, store: Store) -> None:
    ex = running(store)
    page = client.get(f"/executions/{ex.id}").get_data(as_text=True)
    assert re.search(r'data-field="eta">about \d+ min left<', page)
    for status in ExecutionStatus:
        said = board.time_left(_with(ex, status=status), 120.0)
        assert said.strip(), status
    paused = _with(ex, status=S.PAUSED, tasks_total=3, tasks_completed=1, tasks_left=2)
    assert board.time_left(paused, 120.0) == "about 4 min left when resumed"
    overview = client.get("/").get_data(as_text=True)
    assert re.search(rf'<tr data-execution="{ex.id}"[^>]*>.*?data-field="eta">[^<]+<', overview, re.DOTALL)


def test_group_rows_have_their_titles_from_the_task_list_for_every_reader(stack: devstack.Stack,
                                                                          tmp_path: Path) -> None:
    make_repo(stack, tmp_path, tasks_md(("1", "Setup", True), ("1.1", "first", False), ("2", "Data layer", True),
                                        ("2.1", "tables", False)))
    stack.comment(REPO, 1, "/clarity run until 1.1", user="ada")
    ex = wait_settled(stack)
    page = httpx.get(f"{stack.web_url}/executions/{ex.id}", timeout=30).text  # no script: what the server says
    titles = dict(re.findall(r'<tr data-task="(\d+)" data-group[^>]*>.*?data-field="title"[^>]*>([^<]*)</td>', page))
    assert titles == {"1": "Setup"}  # 2.1 is beyond the stop point: not in the table, no row for 2


def _with(ex: Execution, **changes: Any) -> Execution:
    import dataclasses
    return dataclasses.replace(ex, **changes)


# -- the log's sentences ----------------------------------------------------------------------------
@pytest.mark.parametrize(("entry", "text"), [
    ({"kind": "execution.created", "actor": "ada", "status": "queued"}, "Execution created by @ada, queued"),
    ({"kind": "execution.status", "actor": "engine", "from": "paused", "to": "queued", "reason": ""},
     "Execution paused → queued"),
    ({"kind": "execution.status", "actor": "ada", "from": "task-executing", "to": "stopped", "reason": "stopped by @ada"},
     "Execution task-executing → stopped by @ada: stopped by @ada"),
    ({"kind": "task.status", "actor": "engine", "task": "2.1", "title": "", "from": "pending", "to": "skipped",
      "attempts": 0}, "Task 2.1: pending → skipped"),
    ({"kind": "log", "message": "task 1.1: done in 1 attempt(s)", "level": "info"}, "task 1.1: done in 1 attempt(s)"),
    ({"kind": "log", "message": "budget: time", "level": "error"}, "Error: budget: time"),
    ({"kind": "task.override", "actor": "ada", "task": "1.2", "outcome": "done"}, "Task 1.2 marked done by @ada"),
    ({"kind": "step.started", "actor": "engine", "worker": "w1", "job": "j"}, "Step started on worker w1"),
    ({"kind": "step.finished", "actor": "engine", "outcome": "task 1.1 completed"}, "Step finished: task 1.1 completed"),
    ({"kind": "execution.reprioritised", "actor": "ada", "from": 5, "to": 9}, "Priority 5 → 9 by @ada"),
    ({"kind": "budget.exhausted", "actor": "engine", "reason": "2 of 2 attempts used"},
     "Budget exhausted: 2 of 2 attempts used"),
    ({"kind": "execution.deferred", "actor": "engine", "seconds": 60, "why": "secondary rate limit"},
     "GitHub asked to slow down: next step in 60 s (secondary rate limit)"),
    ({"kind": "something.new", "actor": "ada", "answer": 42}, "Something new by @ada: answer 42"),
])
def test_each_kind_of_event_reads_as_a_sentence(entry: dict[str, Any], text: str) -> None:
    line = logtext.line({"id": "1-0", "time": 1_700_000_000.0, **entry})
    assert (line.text, line.clock, line.iso) == (text, "22:13:20", "2023-11-14T22:13:20+00:00")


# -- artifacts by attempt ---------------------------------------------------------------------------
def test_artifacts_are_grouped_by_task_then_attempt_in_number_order() -> None:
    entries = [Entry(p, d, 10) for p, d in (
        ("1.10", True), ("1.10/attempt-1/agent.log", False), ("1.2", True), ("1.2/attempt-10/diff.patch", False),
        ("1.2/attempt-9/prompt.md", False), ("1.2/attempt-9/agent.log", False), ("1.2/notes.txt", False),
        ("stray.txt", False))]
    groups = artifactlist.group(entries)
    assert [g.task_id for g in groups] == ["1.2", "1.10", ""]
    assert [(a.number, [f.name for f in a.files]) for a in groups[0].attempts] == [
        (9, ["agent.log", "prompt.md"]), (10, ["diff.patch"])]
    assert [f.path for f in groups[0].other] == ["1.2/notes.txt"] and groups[2].other[0].name == "stray.txt"
    assert (artifactlist.size_text(812), artifactlist.size_text(4200), artifactlist.size_text(3 << 20)) == (
        "812 B", "4.1 KiB", "3.0 MiB")


def test_the_artifacts_page_has_a_section_per_task_and_a_box_per_attempt(client: FlaskClient, store: Store,
                                                                       settings: Settings) -> None:
    ex = running(store)
    for attempt in (1, 2):
        folder = artifacts.execution_dir(settings.artifacts_dir, ex.id) / "1.2" / f"attempt-{attempt}"
        folder.mkdir(parents=True)
        artifacts.write_text(folder / "agent.log", f"attempt {attempt}\n")
    page = client.get(f"/executions/{ex.id}/artifacts").get_data(as_text=True)
    assert re.search(r'<section class="task-files" data-task="1.2"[^>]*>\s*<h2[^>]*>Task 1.2', page)
    boxes = re.findall(r'<section class="attempt" data-attempt="(\d+)"[^>]*>\s*<h3[^>]*>Attempt \d+</h3>\s*'
                       r'<ul class="files"><li><a href="([^"]+)">agent.log</a>', page)
    assert boxes == [("1", f"/executions/{ex.id}/artifacts/1.2/attempt-1/agent.log"),
                     ("2", f"/executions/{ex.id}/artifacts/1.2/attempt-2/agent.log")]


# -- the audit's fields -----------------------------------------------------------------------------
def test_audit_details_are_named_fields_not_key_value_words(client: FlaskClient, store: Store) -> None:
    ex = running(store)
    store.audit_event(ex, "task.override", "ada", {"task": "1.2", "outcome": "done", "note": "x" * 400})
    row = audit.row("1-0", {"kind": "task.override", "actor": "ada", "task": "1.2", "outcome": "done",
                            "empty": "", "checks": ["a", "b"]})
    assert row.details == (("task", "1.2"), ("outcome", "done"), ("checks", '["a", "b"]'))
    page = client.get("/audit?kind=task.override").get_data(as_text=True)
    assert '<dl class="fields"><dt>task</dt><dd>1.2</dd><dt>outcome</dt><dd>done</dd><dt>note</dt>' in page
    assert "task=1.2" not in page and "x" * 301 not in page


# -- one stylesheet, no inline style ------------------------------------------------------------------
def test_no_template_holds_inline_style_and_the_csp_forbids_it(client: FlaskClient, store: Store) -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert "<style" not in text and not re.search(r"\sstyle\s*=", text), template.name
    ex = running(store)
    for path in ("/", f"/executions/{ex.id}", f"/executions/{ex.id}/artifacts", "/audit", "/queue", "/resources",
                 "/insights"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        csp = dict(part.strip().split(" ", 1) for part in answer.headers["Content-Security-Policy"].split(";"))
        assert csp["style-src"] == "'self'", path
        assert '<link rel="stylesheet" href="/assets/clarity.css">' in answer.get_data(as_text=True), path
    sheet = client.get("/assets/clarity.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css" and ".status[data-status=failed]" in sheet.text


def test_statuses_are_words_in_pills_without_emoji(client: FlaskClient, store: Store) -> None:
    ex = running(store)
    for path in ("/", f"/executions/{ex.id}", "/queue"):
        page = client.get(path).get_data(as_text=True)
        assert not re.search(r"[\U0001F300-\U0001FAFF\u2600-\u27BF\u23E9-\u23FA]", page), path
    page = client.get(f"/executions/{ex.id}").get_data(as_text=True)
    assert '<span class="status" data-status="task-executing" data-field="status"><span data-field="status-word">' \
           'task-executing</span></span>' in page
