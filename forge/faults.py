"""Injected failures (rate limits, server errors) so the app's retry paths can be exercised.

Most faults answer instead of the forge: the call is not performed. `server_error_after_write` is the
other way round, as GitHub can be: the call is performed (the comment, check run or PR is made) and the
answer is a 5xx all the same, so a client that simply tries again makes it twice.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID."
)


GRAPHQL_MESSAGE = "Resource not accessible by integration"
AFTER_WRITE = "server_error_after_write"
KINDS = ("server_error", "secondary_rate_limit", "primary_rate_limit", "graphql_error", AFTER_WRITE)


@dataclass(frozen=True, slots=True)
class Fault:
    """Answer the next `count` matching calls with a failure of `kind`."""

    path_regex: str
    method: str = "*"
    kind: str = "server_error"  # one of KINDS
    status: int = 500
    count: int = 1
    retry_after: int | None = 1  # a secondary limit's `retry-after`; None: GitHub sent none (wait a minute)
    message: str = GRAPHQL_MESSAGE  # a graphql_error's message

    @property
    def after_write(self) -> bool:
        """Whether the call is performed before the failure is answered."""
        return self.kind == AFTER_WRITE

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to the call."""
        return (self.method in ("*", method.upper())) and re.search(self.path_regex, path) is not None


@dataclass(frozen=True, slots=True)
class FaultResponse:
    """What to send instead of the real answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def respond(fault: Fault, subject: str) -> FaultResponse:
    """The GitHub-shaped failure for a fault; `subject` names the rate-limited principal."""
    docs = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
    if fault.kind == "secondary_rate_limit":
        return FaultResponse(
            fault.status if fault.status in (403, 429) else 403,
            {"message": SECONDARY_MESSAGE, "documentation_url": docs},
            {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {},
        )
    if fault.kind == "primary_rate_limit":
        reset = int(time.time()) + (fault.retry_after or 0)
        return FaultResponse(
            fault.status if fault.status in (403, 429) else 403,
            {"message": f"API rate limit exceeded for {subject}.", "documentation_url": docs},
            {
                "x-ratelimit-remaining": "0",
                "x-ratelimit-limit": "5000",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset),
            },
        )
    if fault.kind == "graphql_error":  # GitHub's GraphQL API says what went wrong in `errors`, with HTTP 200
        return FaultResponse(200, {"data": None, "errors": [{"type": "FORBIDDEN", "message": fault.message}]}, {})
    return FaultResponse(fault.status, {"message": "Server Error"}, {})


class FaultList:
    """Pending faults, consumed in order of registration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Register a fault."""
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str, after_write: bool = False) -> Fault | None:
        """The first matching fault answered before the call (or, with `after_write`, after it), one use consumed."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.after_write == after_write and fault.matches(method, path):
                    if fault.count <= 1:
                        del self._faults[index]
                    else:
                        self._faults[index] = replace(fault, count=fault.count - 1)
                    return fault
            return None

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()
