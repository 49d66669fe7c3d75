"""The Metrics page (`/insights`): numbers from the history, server-drawn SVG with tables, scoped by viewer.

The real app on a real Redis; the viewer comes through `clarity.viewer_provider` (the contract the live
tests use) or, for the sign-in guard, from a deployment with sign-in on.
"""

from __future__ import annotations

import dataclasses
import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from clarity.history import Tally
from clarity.models import Execution, TaskProgress
from clarity.settings import Settings
from clarity.status import ExecutionStatus, TaskStatus
from clarity.store import Store
from dashboard import insights
from dashboard.auth import Viewer

S, T = ExecutionStatus, TaskStatus
A, B = 101, 202


def as_viewer(app: Flask, who: Viewer | None) -> FlaskClient:
    app.extensions["clarity.viewer_provider"] = lambda: who
    return app.test_client()


def finished(store: Store, installation: int, account: str, status: ExecutionStatus,
             *tasks: TaskProgress) -> Execution:
    ex = store.create(Execution(id="", installation_id=installation, repo=f"{account}/app", account=account,
                                issue_number=1, is_pull_request=False, branch="clarity/issue-1",
                                base_branch="main", requester="ada"), actor="ada")
    for progress in tasks:
        store.put_task(ex.id, dataclasses.replace(progress, status=T.PENDING))
        if progress.status is T.FAILED:
            store.set_task_status(ex.id, progress.task_id, T.IN_PROGRESS)
        store.put_task(ex.id, progress)
    path = {S.COMPLETED: (S.INITIALIZING, S.AUTONOMOUS, S.COMPLETED), S.FAILED: (S.INITIALIZING, S.FAILED),
            S.PAUSED: (S.INITIALIZING, S.AUTONOMOUS, S.PAUSED)}[status]
    for step in path:
        ex = store.transition(ex.id, step, "engine")
    return ex


@pytest.fixture
def world(store: Store) -> None:
    finished(store, A, "acme", S.COMPLETED,
             TaskProgress("1", "one", T.COMPLETED, tool="aider", duration=10.0),
             TaskProgress("2", "two", T.COMPLETED, tool="aider", duration=30.0))
    finished(store, A, "acme", S.FAILED,
             TaskProgress("1", "one", T.FAILED, tool="claude", duration=20.0, error_class="check_failed"))
    finished(store, A, "acme", S.PAUSED, TaskProgress("1", "one", T.COMPLETED, tool="aider", duration=99.0))
    finished(store, B, "globex-secret-customer", S.COMPLETED,
             TaskProgress("1", "one", T.FAILED, tool="ollama", duration=5.0, error_class="timeout"))


def cell(text: str, table: str, row: str) -> list[str]:
    """The cells of the row whose data attribute or header is `row`, in table `table`."""
    body = text.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    match = re.search(rf"<tr[^>]*>(?:(?!</tr>).)*?{re.escape(row)}(?:(?!</tr>).)*</tr>", body, re.DOTALL)
    assert match, (table, row)
    return re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", match.group(0), re.DOTALL)


# -- the page ------------------------------------------------------------------------------------
def test_metrics_page_shows_rates_times_error_classes_and_tasks_per_day(app: Flask, world: None) -> None:
    text = as_viewer(app, Viewer("ada", {A: "viewer"})).get("/insights").get_data(as_text=True)
    assert "<title>Metrics · Clarity</title>" in text and "<h1>Metrics</h1>" in text
    assert re.search(r'data-metric="executions">2<', text)
    assert 'data-metric="success-rate">67% (2 of 3)<' in text
    assert 'data-metric="task-time">20 s<' in text
    assert cell(text, "customers", "acme") == ["acme", "2", "2", "1", "67% (2 of 3)", "20 s"]
    assert cell(text, "tools", "aider") == ["aider", "2", "0", "100% (2 of 2)", "20 s"]
    assert cell(text, "tools", "claude") == ["claude", "0", "1", "0% (0 of 1)", "20 s"]
    assert cell(text, "errors", "check_failed") == ["check_failed", "1"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert cell(text, "per-day", today) == [today, "2"]
    per_day = text.split('<table id="per-day">', 1)[1].split("</table>", 1)[0]
    assert per_day.count('<tr><th scope="row">') == 30  # the default window, days without tasks included


def test_charts_are_inline_svg_with_text_and_no_external_script(app: Flask, world: None) -> None:
    text = as_viewer(app, Viewer("ada", {A: "viewer"})).get("/insights").get_data(as_text=True)
    for chart in ("customer-rate", "customer-time", "tool-rate", "tool-time", "errors", "per-day"):
        assert f'data-chart="{chart}"' in text, chart
        assert f'aria-labelledby="{chart}-chart-title {chart}-chart-desc"' in text
    tool_rate = text.split('data-chart="tool-rate"', 1)[1].split("</svg>", 1)[0]
    assert '<rect x="170" y="0" width="360.0"' in tool_rate  # aider: 100% fills the bar
    assert '<rect x="170" y="26" width="0.0"' in tool_rate  # claude: 0%
    assert ">100% (2 of 2)</text>" in tool_rate and ">0% (0 of 1)</text>" in tool_rate  # the value in words
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids))  # every aria-labelledby points at one element
    assert "cdn" not in text.lower() and not re.search(r"""src=["']?(https?:)?//""", text)


def test_a_user_of_one_installation_never_sees_another_customer(app: Flask, world: None) -> None:
    mine = as_viewer(app, Viewer("ada", {A: "viewer"})).get("/insights").get_data(as_text=True)
    assert "globex-secret-customer" not in mine and "ollama" not in mine and "timeout" not in mine
    everyone = as_viewer(app, Viewer("op", everything=True)).get("/insights").get_data(as_text=True)
    assert cell(everyone, "customers", "globex-secret-customer")[1:5] == ["1", "0", "1", "0% (0 of 1)"]
    assert 'data-metric="executions">3<' in everyone
    none = as_viewer(app, Viewer("bob", {303: "admin"})).get("/insights").get_data(as_text=True)
    assert "No execution you can see finished in the last 30 days." in none and "acme" not in none


def test_the_window_is_chosen_with_days(app: Flask, world: None) -> None:
    client = as_viewer(app, Viewer("ada", {A: "viewer"}))
    text = client.get("/insights?days=7").get_data(as_text=True)
    per_day = text.split('<table id="per-day">', 1)[1].split("</table>", 1)[0]
    assert per_day.count('<tr><th scope="row">') == 7
    assert '<option value="7" selected>' in text
    assert '<option value="14" selected>' in client.get("/insights?days=14").get_data(as_text=True)
    for bad in ("0", "366", "week", "-1"):
        response = client.get(f"/insights?days={bad}")
        assert response.status_code == 400, bad
        assert "days must be a whole number from 1 to 365" in response.get_data(as_text=True)


def test_nobody_signed_in_gets_401_or_the_sign_in_page(app: Flask, settings: Settings) -> None:
    assert as_viewer(app, None).get("/insights").status_code == 401
    signed = create_app(dataclasses.replace(settings, dashboard_auth="github")).test_client()
    response = signed.get("/insights")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=%2Finsights"


# -- drawing --------------------------------------------------------------------------------------
def test_bars_scale_to_the_top_and_cut_long_labels() -> None:
    chart = insights.bars([("a", 50.0, "50%"), ("a-very-long-customer-name-indeed", 100.0, "100%")], top=100.0)
    assert [(b.label, b.y, b.length) for b in chart.bars] == [("a", 0, 180.0), ("a-very-long-customer-na…", 26, 360.0)]
    assert chart.height == 52
    assert insights.bars([("x", 0.0, "0")]).bars[0].length == 0.0 and insights.bars([]).height == 26
    rates = insights.rate_bars([("aider", Tally(3, 1, 8.0))])
    assert (rates.bars[0].length, rates.bars[0].text) == (270.0, "75% (3 of 4)")


def test_columns_fill_the_width_and_scale_to_the_busiest_day() -> None:
    chart = insights.columns([("2025-03-08", 1), ("2025-03-09", 0), ("2025-03-10", 4)])
    assert chart.top == 4
    assert [(c.x, c.width, c.height) for c in chart.columns] == [(85.0, 148.0, 37.5), (270.0, 148.0, 0.0),
                                                                 (455.0, 148.0, 150.0)]
    assert insights.columns([("2025-03-10", 0)]).columns[0].height == 0.0


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "0.0 s"), (2.345, "2.3 s"), (42.4, "42 s"), (185.0, "3 min 5 s"), (3725.0, "1 h 2 min")])
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert insights.seconds_text(seconds) == text
