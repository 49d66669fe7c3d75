"""The app webhook's delivery log on GitHub: read attempts newest first, ask for one to be sent again.

`GET /app/hook/deliveries` (app JWT) lists every attempt GitHub made, newest first, paged by a `cursor`
named in the `Link` header; an event's first attempt and its redeliveries share a `guid` (the
X-GitHub-Delivery header). `POST /app/hook/deliveries/{id}/attempts` sends that attempt's event again,
answered 202 at once; GitHub refuses (422) deliveries older than 3 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from githubkit.utils import UNSET

PER_PAGE = 100
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt to deliver one event, as GitHub logged it."""

    id: int
    guid: str
    delivered_at: float  # epoch seconds
    status_code: int  # 0: no answer (timed out, could not connect)
    redelivery: bool = False
    event: str = ""
    action: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx: the event reached it."""
        return 200 <= self.status_code < 300


def next_cursor(link: str | None) -> str | None:
    """The `cursor` of the next page named by a `Link` header, None on the last page."""
    found = _NEXT.search(link or "")
    if found is None:
        return None
    cursors = parse_qs(urlsplit(found.group(1)).query).get("cursor")
    return cursors[0] if cursors else None


def newest_first(app: Any, oldest: float, max_pages: int) -> tuple[list[Attempt], bool]:
    """Attempts delivered at `oldest` (epoch seconds) or later, newest first, reading at most `max_pages`
    pages; and whether the pages ran out first (older attempts since `oldest` were left unread)."""
    found: list[Attempt] = []
    cursor: Any = UNSET
    for _ in range(max_pages):
        response = app.rest.apps.list_webhook_deliveries(per_page=PER_PAGE, cursor=cursor)
        for item in response.parsed_data:
            attempt = Attempt(item.id, item.guid, item.delivered_at.timestamp(), item.status_code, item.redelivery,
                              item.event, item.action)
            if attempt.delivered_at < oldest:
                return found, False
            found.append(attempt)
        cursor = next_cursor(response.headers.get("link"))
        if cursor is None or not response.parsed_data:
            return found, False
    return found, True


def redeliver(app: Any, attempt_id: int) -> None:
    """Ask GitHub to send an attempt's event again (same guid). Raises githubkit's RequestFailed (422: too old)."""
    app.rest.apps.redeliver_webhook_delivery(attempt_id)
