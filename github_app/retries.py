"""When a GitHub request that failed is tried again, and when the work that needed it goes back in line.

githubkit asks `RetryPolicy` after every failed request (its `auto_retry` hook). The decisions follow
GitHub's own guidance for the REST API:
- a rate limit with `retry-after` (or `x-ratelimit-remaining: 0` and `x-ratelimit-reset`) is waited out
  inline when that is short (`max_wait`); longer, the request ends with `RetryLater` and the caller
  (a step, jobs.step) goes back in line for that long instead of holding a worker;
- a secondary rate limit that names no time (403 saying so, or 429, without either header) asks for
  "at least one minute": never slept inline, always `RetryLater` after `secondary_wait` (60 s);
- right after a push GitHub's REST API may not see the new commit or branch for a moment: the two 422s
  that say so (a PR's `head` invalid, "No commit found for SHA" on a check run) are tried again with
  backoff (1, 2, 4, 8, 15 s: 30 s in all). Nothing was written, so that is safe;
- a 5xx is tried again with backoff, except on a POST that creates something (a comment, a check run,
  a PR, an issue): GitHub may have made it before failing, so a blind retry would make it twice. The
  reporter (github_app.reporting) looks the write up first and creates again only if it is not there.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import httpx
from githubkit.exception import GitHubException, RateLimitExceeded, RequestFailed
from githubkit.typing import RetryOption

log = logging.getLogger(__name__)

# Sleep inline for a rate limit at most this long; a longer wait is the caller's (RetryLater).
MAX_INLINE_WAIT = 10.0
# GitHub: a secondary rate limit without retry-after or x-ratelimit-remaining: 0 → "wait for at least one minute".
SECONDARY_LIMIT_WAIT = 60.0
# Backoff for GitHub's REST API catching up with a push (the two 422s of `not_visible_yet`).
VISIBILITY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)
# POSTs that create a resource: never retried blindly (see the module docstring).
_CREATES = re.compile(r"/repos/[^/]+/[^/]+/(issues|pulls|check-runs|issues/\d+/comments)$")
_SECONDARY_WORDS = ("secondary rate limit", "abuse detection")


class RetryLater(RequestFailed):
    """GitHub asked us to slow down for longer than a worker should sleep: do the work again in `seconds`.

    A RequestFailed (the answer is GitHub's), so a caller that cannot wait treats it as the failure it
    was before; a step catches it and goes back in line for `seconds` (jobs.step).
    """

    def __init__(self, failed: RequestFailed, seconds: float, guessed: bool) -> None:
        super().__init__(failed.response)
        self.seconds = seconds
        self.guessed = guessed  # GitHub named no time (a secondary limit without headers): our setting


def creates(request: httpx.Request) -> bool:
    """Whether the request creates a comment, check run, PR or issue (made twice if retried blindly)."""
    return request.method == "POST" and _CREATES.search(request.url.path) is not None


def _answer(exc: RequestFailed) -> dict[str, object]:
    try:
        body = exc.response.raw_response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def secondary_limit(exc: RequestFailed) -> bool:
    """A secondary rate limit that githubkit did not recognise: no retry-after, no x-ratelimit-remaining: 0.

    A 429 always is one; a 403 only when its message says so (a 403 is also GitHub's "no permission").
    """
    status = exc.response.status_code
    message = str(_answer(exc).get("message", "")).lower()
    return status == 429 or (status == 403 and any(word in message for word in _SECONDARY_WORDS))


def not_visible_yet(exc: RequestFailed) -> bool:
    """GitHub's REST API does not see a commit or branch pushed a moment ago: a PR's `head` is invalid
    (422 on POST .../pulls), or "No commit found for SHA" (422 on POST .../check-runs)."""
    request = exc.request
    if exc.response.status_code != 422 or request.method != "POST":
        return False
    answer = _answer(exc)
    path = request.url.path
    if path.endswith("/check-runs"):
        return str(answer.get("message", "")).startswith("No commit found for SHA")
    if path.endswith("/pulls"):
        errors = answer.get("errors")
        return isinstance(errors, list) and any(
            isinstance(e, dict) and e.get("resource") == "PullRequest" and e.get("field") == "head"
            and e.get("code") == "invalid" for e in errors)
    return False


class RetryPolicy:
    """githubkit retry decisions (its `auto_retry` hook): see the module docstring."""

    def __init__(self, rate_limit_retries: int = 3, server_retries: int = 4, base_delay: float = 0.5,
                 max_wait: float = MAX_INLINE_WAIT, secondary_wait: float = SECONDARY_LIMIT_WAIT,
                 visibility_delays: tuple[float, ...] = VISIBILITY_DELAYS) -> None:
        self.rate_limit_retries = rate_limit_retries
        self.server_retries = server_retries
        self.base_delay = base_delay
        self.max_wait = max_wait
        self.secondary_wait = secondary_wait
        self.visibility_delays = visibility_delays

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        """Whether and when to retry a failed request; raises RetryLater when the wait is not ours to sleep."""
        if not isinstance(exc, RequestFailed):
            return RetryOption(False)  # no answer heard (a timeout): the caller decides
        request, status = exc.request, exc.response.status_code
        if isinstance(exc, RateLimitExceeded):
            wait = max(exc.retry_after.total_seconds(), 0.0) + 0.25  # the reset second itself is still limited
            if wait <= self.max_wait and retry_count < self.rate_limit_retries:
                log.warning("GitHub rate limit on %s %s: waiting %.1fs", request.method, request.url.path, wait)
                return RetryOption(True, timedelta(seconds=wait))
            raise RetryLater(exc, wait, guessed=False)
        if secondary_limit(exc):
            raise RetryLater(exc, self.secondary_wait, guessed=True)
        if not_visible_yet(exc) and retry_count < len(self.visibility_delays):
            wait = self.visibility_delays[retry_count]
            log.info("GitHub does not see the push yet (%s %s answered 422): retry %d in %.0fs", request.method,
                     request.url.path, retry_count + 1, wait)
            return RetryOption(True, timedelta(seconds=wait))
        if status >= 500 and retry_count < self.server_retries and not creates(request):
            wait = self.base_delay * 2 ** retry_count
            log.warning("GitHub answered %s to %s %s: retry %d in %.1fs", status, request.method, request.url.path,
                        retry_count + 1, wait)
            return RetryOption(True, timedelta(seconds=wait))
        return RetryOption(False)
