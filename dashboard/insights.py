"""The Metrics page (`/insights`): success rates per customer and per tool, task times, error classes and
tasks per day, from the history (clarity.history) of the executions the viewer sees.

Charts are SVG drawn on the server (no script, no CDN): this module computes each bar's geometry, the
template draws it, and every chart comes with a table of the same numbers, so nothing is told by colour
or shape alone. `/metrics` is Prometheus's (dashboard.ops); this page is for people.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue

from clarity import history, numbers
from clarity.store import Store
from dashboard.appctx import store as _store
from dashboard.auth import Viewer
from dashboard.live import viewer

bp = Blueprint("insights", __name__)
WINDOWS = (7, 30, 90, 365)  # the page's choices of days; `?days=` takes any 1..365
DEFAULT_DAYS = 30
WIDTH = 640  # the SVG's coordinate system: label column, bars, value text
LABEL_WIDTH, BAR_WIDTH, ROW, BAR_HEIGHT = 170, 360, 26, 18
LABEL_CHARS = 24  # longer labels are cut in the chart (the table beside it has them whole)
COLUMNS_HEIGHT = 150  # the tasks-per-day chart's plot height


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label, the text of its value, where it starts (y) and how long it is."""

    label: str
    text: str
    y: int
    length: float


@dataclass(frozen=True, slots=True)
class Column:
    """One day's column in the tasks-per-day chart."""

    label: str
    value: int
    x: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Bars:
    """A horizontal bar chart."""

    bars: tuple[Bar, ...]
    height: int


@dataclass(frozen=True, slots=True)
class Columns:
    """A column chart (one column per day) and its scale."""

    columns: tuple[Column, ...]
    top: int


@dataclass(frozen=True, slots=True)
class Insights:
    """Everything the page renders."""

    days: int
    since: float
    executions: int
    tasks: history.Tally
    customers: tuple[history.Trend, ...]
    tools: dict[str, history.Tally]
    error_classes: dict[str, int]
    per_day: tuple[tuple[str, int], ...]


# -- drawing (pure) -------------------------------------------------------------------------------
def short(label: str) -> str:
    """A label cut to fit the chart's label column."""
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def bars(items: Sequence[tuple[str, float, str]], top: float | None = None) -> Bars:
    """Bars for (label, value, text) rows, scaled so `top` (default: the largest value) fills the width."""
    scale = top if top is not None else max((value for _, value, _ in items), default=0.0)
    return Bars(tuple(Bar(short(label), text, i * ROW, round(BAR_WIDTH * value / scale, 1) if scale > 0 else 0.0)
                      for i, (label, value, text) in enumerate(items)), max(len(items), 1) * ROW)


def columns(days: Sequence[tuple[str, int]]) -> Columns:
    """Columns for (day, tasks) rows across the chart's width, scaled to the busiest day."""
    top = max((n for _, n in days), default=0)
    step = (WIDTH - LABEL_WIDTH // 2) / max(len(days), 1)
    return Columns(tuple(Column(day, n, round(LABEL_WIDTH // 2 + i * step, 2), round(step * 0.8, 2),
                                round(COLUMNS_HEIGHT * n / top, 1) if top else 0.0)
                         for i, (day, n) in enumerate(days)), top)


def seconds_text(seconds: float) -> str:
    """A duration as people read it: 42 s, 3 min 5 s, 1 h 2 min."""
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def rate_text(tally: history.Tally) -> str:
    """A success rate with what it is made of: 75% (3 of 4)."""
    return f"{numbers.rate_text(tally.completed, tally.failed)} ({tally.completed} of {tally.ran})"


def rate_bars(rows: Sequence[tuple[str, history.Tally]]) -> Bars:
    """Success rates out of 100%."""
    return bars([(label, t.success_rate * 100, rate_text(t)) for label, t in rows], top=100.0)


def time_bars(rows: Sequence[tuple[str, history.Tally]]) -> Bars:
    """Mean task times, scaled to the slowest."""
    return bars([(label, t.mean_seconds, seconds_text(t.mean_seconds)) for label, t in rows])


# -- the page -------------------------------------------------------------------------------------
def build(store: Store, who: Viewer, days: int, now: float) -> Insights:
    """The page's numbers over the executions the viewer sees that finished in the last `days` days."""
    since = history.window_start(now, days)
    found = history.read_finished(store, None if who.everything else list(who.roles), since=since)
    found = history.within([r for r in found if who.sees(r.execution.installation_id)], days, now)
    tasks = history.tally(t for r in found for t in r.tasks)
    return Insights(days, since, len(found), tasks, tuple(history.trends(found, days, now)), history.by_tool(found),
                    history.error_classes(found), history.per_day(found, days, now))


def _days() -> int:
    raw = request.args.get("days", str(DEFAULT_DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= 365:
        abort(400, description=f"days must be a whole number from 1 to 365, got {raw[:20]!r}")
    return int(raw)


@bp.get("/insights")
def insights() -> ResponseReturnValue:
    """Metrics: success rates per customer and tool, task times, error classes, tasks per day (SVG + tables)."""
    who = viewer()
    if who is None:
        abort(401, description="sign in to see metrics")
    page = build(_store(), who, _days(), time.time())
    customers = [(c.account, c.tasks) for c in page.customers]
    tools = list(page.tools.items())
    return render_template(
        "insights.html", page=page, windows=sorted({*WINDOWS, page.days}), seconds_text=seconds_text, rate_text=rate_text,
        charts={"customer-rate": rate_bars(customers), "customer-time": time_bars(customers),
                "tool-rate": rate_bars(tools), "tool-time": time_bars(tools),
                "errors": bars([(name, n, str(n)) for name, n in page.error_classes.items()])},
        per_day=columns(page.per_day), label_width=LABEL_WIDTH, bar_width=BAR_WIDTH, bar_height=BAR_HEIGHT, width=WIDTH,
        columns_height=COLUMNS_HEIGHT)
