"""The Audit page's model: who did what, when, from the audit stream, filtered and scoped to the viewer.

The stream (`audit`, capped by clarity.store) is read newest first in chunks: a time range becomes a
range of stream ids (they are milliseconds), the other filters and the viewer's installations are
applied to each record, and a page stops at `PAGE_ROWS` rows or after `SCAN_CAP` records, whichever
comes first. The next page starts before the last record looked at, so a sparse filter pages on
through the stream instead of stopping early.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dashboard.auth import Viewer

PAGE_ROWS = 50  # records on one page
SCAN_CAP = 5000  # records looked at for one page (a page of a rare filter may come out short)
CHUNK = 500  # records read per round trip
DETAIL_CHARS = 300  # of each of a record's other fields, as shown
DETAIL_FIELDS = 12  # other fields shown per record
KINDS = ("execution.created", "execution.status", "execution.reprioritised", "execution.forgotten",
         "task.status", "task.override", "step.started", "step.finished", "budget.changed", "budget.exhausted")
_SHOWN = frozenset({"id", "kind", "actor", "execution", "repo", "installation", "time", "status"})


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The filters of the page's form (empty = any)."""

    actor: str = ""
    kind: str = ""  # a kind ("task.status") or a family ("task")
    repo: str = ""  # owner/name, or an owner for all its repositories
    installation: int | None = None
    since: float | None = None  # seconds, inclusive
    until: float | None = None  # seconds, inclusive
    before: str = ""  # stream id: the page starts after this record (older ones)

    def args(self, **changes: str) -> dict[str, str]:
        """The query string of this query (for the form and the next page's link)."""
        found = {"actor": self.actor, "kind": self.kind, "repo": self.repo,
                 "installation": "" if self.installation is None else str(self.installation),
                 "from": _local(self.since), "to": _local(self.until), "before": self.before, **changes}
        return {k: v for k, v in found.items() if v}


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One record as the page shows it."""

    id: str
    time: float
    actor: str
    kind: str
    repo: str
    installation: int | None
    execution: str
    details: tuple[tuple[str, str], ...]  # the record's other fields as (name, value), for a <dl>

    @property
    def iso(self) -> str:
        """Machine-readable time (the `datetime` of <time>)."""
        return datetime.fromtimestamp(self.time, UTC).isoformat(timespec="seconds")

    @property
    def shown(self) -> str:
        """The time as people read it (UTC)."""
        return datetime.fromtimestamp(self.time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of records and where the next one starts."""

    rows: list[AuditRow] = field(default_factory=list)
    next_before: str = ""  # "" when the stream (in range) has been read to its oldest record
    scanned: int = 0


# -- pure -------------------------------------------------------------------------------------------
def parse_query(args: Mapping[str, str]) -> tuple[AuditQuery, list[str]]:
    """The query from the form's fields, and what could not be read (shown beside the form)."""
    problems: list[str] = []
    installation = None
    raw = args.get("installation", "").strip()
    if raw:
        if raw.isdigit():
            installation = int(raw)
        else:
            problems.append(f"installation must be a number, got {raw!r}")
    since, until = (_when(args.get(name, ""), name, problems) for name in ("from", "to"))
    before = args.get("before", "").strip()
    if before and not is_stream_id(before):
        problems.append(f"before must be a record id like 1700000000000-0, got {before!r}")
        before = ""
    return AuditQuery(args.get("actor", "").strip().lstrip("@"), args.get("kind", "").strip(),
                      args.get("repo", "").strip().strip("/"), installation, since, until, before), problems


def visible(record: Mapping[str, Any], who: Viewer) -> bool:
    """Whether the viewer sees a record: only those of installations they see (records without one: operators)."""
    installation = record.get("installation")
    if isinstance(installation, int) or (isinstance(installation, str) and installation.isdigit()):
        return who.sees(int(installation))
    return who.everything


def matches(record: Mapping[str, Any], query: AuditQuery) -> bool:
    """Whether a record passes the filters (time is the stream's business: see `page`)."""
    kind, repo = str(record.get("kind", "")), str(record.get("repo", "")).lower()
    if query.actor and str(record.get("actor", "")).lower() != query.actor.lower():
        return False
    if query.kind and kind != query.kind and not kind.startswith(query.kind.rstrip(".") + "."):
        return False
    wanted = query.repo.lower()
    if wanted and repo != wanted and not repo.startswith(wanted + "/"):
        return False
    return query.installation is None or str(record.get("installation", "")) == str(query.installation)


def row(entry_id: str, record: Mapping[str, Any]) -> AuditRow:
    """A record as a row: the common fields in columns, the rest as named fields."""
    extra = tuple((str(k), _cut(_word(v))) for k, v in record.items()
                  if k not in _SHOWN and v not in ("", None, [], {}))[:DETAIL_FIELDS]
    installation = str(record.get("installation", ""))
    stamp = record.get("time")
    return AuditRow(entry_id, float(stamp) if isinstance(stamp, (int, float)) else int(entry_id.split("-")[0]) / 1000,
                    str(record.get("actor", "")), str(record.get("kind", "")), str(record.get("repo", "")),
                    int(installation) if installation.isdigit() else None, str(record.get("execution", "")),
                    extra)


# -- reading the stream -----------------------------------------------------------------------------
def page(client: Any, key: str, who: Viewer, query: AuditQuery, limit: int = PAGE_ROWS,
         scan: int = SCAN_CAP) -> AuditPage:
    """The newest records (before `query.before`) that the viewer sees and the filters pass."""
    high = f"({query.before}" if query.before else (_ms(query.until) if query.until is not None else "+")
    low = f"{_ms(query.since)}-0" if query.since is not None else "-"
    rows: list[AuditRow] = []
    scanned, last = 0, ""
    while len(rows) < limit and scanned < scan:
        chunk = client.xrevrange(key, high, low, count=min(CHUNK, scan - scanned))
        if not chunk:
            return AuditPage(rows, "", scanned)
        for entry_id, data in chunk:
            scanned, last = scanned + 1, entry_id
            record = _decode(data)
            if visible(record, who) and matches(record, query):
                rows.append(row(entry_id, record))
                if len(rows) == limit:
                    break
        high = f"({last}"
    return AuditPage(rows, last, scanned)


def _decode(data: Mapping[str, str]) -> dict[str, Any]:
    try:
        record = json.loads(data.get("json", "{}"))
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _cut(text: str) -> str:
    return text[:DETAIL_CHARS] + ("…" if len(text) > DETAIL_CHARS else "")


def _word(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _ms(seconds: float | None) -> str:
    return str(int((seconds or 0) * 1000))


def is_stream_id(text: str) -> bool:
    """Whether `text` is a Redis stream id (`milliseconds[-sequence]`, each below 2**64) Redis would take."""
    ms, dash, seq = text.partition("-")
    parts = (ms, seq) if dash else (ms,)
    return all(part.isascii() and part.isdigit() and len(part) <= 20 and int(part) < 2**64 for part in parts)


def _when(text: str, name: str, problems: list[str]) -> float | None:
    """A date and time from the form (`datetime-local` gives no zone: it is read as UTC)."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} must be a date and time like 2026-01-31T14:05, got {text!r}")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _local(seconds: float | None) -> str:
    """A time as the `datetime-local` input shows it (UTC)."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
