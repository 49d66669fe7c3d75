"""RetryPolicy's decisions, as a table: what is tried again inline, what is the caller's to wait for, what never.

GitHub's guidance (docs.github.com, "Best practices for using the REST API" and "Rate limits"): honour
retry-after, or x-ratelimit-reset when x-ratelimit-remaining is 0; otherwise wait at least a minute. A
5xx may come after the write happened, so a POST that creates is not repeated blindly; right after a
push the REST API may not see the commit for a moment.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from githubkit import GitHub, Response
from githubkit.exception import (
    PrimaryRateLimitExceeded,
    RequestFailed,
    RequestTimeout,
    SecondaryRateLimitExceeded,
)

from clarity.settings import Settings
from github_app.retries import SECONDARY_LIMIT_WAIT, RetryLater, RetryPolicy

API = "https://api.github.com"
SECONDARY = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
             "If you reach out to GitHub Support for help, please include the request ID.")
HEAD_INVALID = {"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head",
                                                             "code": "invalid"}]}
CREATES = [("POST", "/repos/acme/widgets/issues/1/comments"), ("POST", "/repos/acme/widgets/check-runs"),
           ("POST", "/repos/acme/widgets/pulls"), ("POST", "/repos/acme/widgets/issues")]
SAFE = [("GET", "/repos/acme/widgets"), ("PATCH", "/repos/acme/widgets/check-runs/7"),
        ("PATCH", "/repos/acme/widgets/pulls/2"), ("POST", "/repos/acme/widgets/issues/comments/9/reactions"),
        ("POST", "/app/installations/1/access_tokens"), ("GET", "/repos/acme/widgets/commits/abc/check-runs")]


def failed(method: str, path: str, status: int, body: Any = None, headers: dict[str, str] | None = None,
           kind: type[RequestFailed] = RequestFailed, wait: float | None = None) -> RequestFailed:
    """A githubkit failure as githubkit builds it from GitHub's answer."""
    raw = httpx.Response(status, json=body if body is not None else {"message": "Server Error"},
                         headers=headers or {}, request=httpx.Request(method, API + path))
    answer: Response[Any, Any] = Response(raw, Any)
    if wait is not None:
        return kind(answer, timedelta(seconds=wait))  # type: ignore[call-arg]
    return kind(answer)


@pytest.mark.parametrize(("method", "path"), CREATES)
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_a_post_that_creates_is_never_retried_blindly(method: str, path: str, status: int) -> None:
    assert not RetryPolicy()(failed(method, path, status), 0).do_retry


@pytest.mark.parametrize(("method", "path"), SAFE)
def test_a_5xx_on_a_read_an_update_or_an_idempotent_post_is_retried_with_backoff(method: str, path: str) -> None:
    policy = RetryPolicy(base_delay=0.5, server_retries=4)
    waits = [policy(failed(method, path, 502), n) for n in range(5)]
    assert [w.do_retry for w in waits] == [True, True, True, True, False]
    assert [w.retry_after.total_seconds() for w in waits[:4] if w.retry_after] == [0.5, 1.0, 2.0, 4.0]


def test_a_timeout_is_left_to_the_caller() -> None:
    timeout = RequestTimeout(httpx.ReadTimeout("slow", request=httpx.Request("POST", API + CREATES[0][1])))
    assert not RetryPolicy()(timeout, 0).do_retry


@pytest.mark.parametrize(("path", "body"), [
    ("/repos/acme/widgets/pulls", HEAD_INVALID),
    ("/repos/acme/widgets/check-runs", {"message": f"No commit found for SHA: {'a' * 40}"}),
])
def test_githubs_two_not_yet_visible_422s_are_retried_with_backoff_for_about_30_s(path: str, body: Any) -> None:
    policy = RetryPolicy()
    decisions = [policy(failed("POST", path, 422, body), n) for n in range(6)]
    waits = [d.retry_after.total_seconds() for d in decisions if d.do_retry and d.retry_after]
    assert waits == [1.0, 2.0, 4.0, 8.0, 15.0] and not decisions[-1].do_retry
    assert sum(waits) <= 30


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/repos/acme/widgets/pulls", {"message": "Validation Failed", "errors": [
        {"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for acme:b."}]}),
    ("POST", "/repos/acme/widgets/pulls", {"message": "Draft pull requests are not supported in this repository."}),
    ("POST", "/repos/acme/widgets/check-runs", {"message": "Invalid request.\n\n\"name\" wasn't supplied."}),
    ("PATCH", "/repos/acme/widgets/pulls/2", HEAD_INVALID),
    ("GET", "/repos/acme/widgets/commits/x/check-runs", {"message": "No commit found for SHA: x"}),
])
def test_other_422s_are_not_retried(method: str, path: str, body: Any) -> None:
    assert not RetryPolicy()(failed(method, path, 422, body), 0).do_retry


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_limit_without_headers_is_never_slept_inline_but_handed_back_with_the_setting(status: int) -> None:
    policy = RetryPolicy(secondary_wait=3.0)
    with pytest.raises(RetryLater) as raised:
        policy(failed("PATCH", "/repos/acme/widgets/check-runs/7", status, {"message": SECONDARY}), 0)
    assert raised.value.seconds == 3.0 and raised.value.guessed
    assert isinstance(raised.value, RequestFailed) and raised.value.response.status_code == status


def test_a_429_without_a_message_is_a_secondary_limit_too() -> None:
    with pytest.raises(RetryLater):
        RetryPolicy()(failed("POST", "/repos/acme/widgets/pulls", 429, {}), 0)


def test_the_default_wait_for_a_secondary_limit_naming_no_time_is_at_least_a_minute() -> None:
    assert SECONDARY_LIMIT_WAIT >= 60
    assert Settings(app_id=1, private_key="", webhook_secret="").secondary_limit_wait >= 60
    assert Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": "k", "GITHUB_WEBHOOK_SECRET": "s"},
                             require_github=False).secondary_limit_wait >= 60
    with pytest.raises(RetryLater) as raised:
        RetryPolicy()(failed("POST", "/repos/acme/widgets/issues/1/comments", 403, {"message": SECONDARY}), 0)
    assert raised.value.seconds >= 60


def test_a_403_that_is_no_rate_limit_is_not_retried() -> None:
    refused = failed("POST", "/repos/acme/widgets/check-runs", 403,
                     {"message": "Resource not accessible by integration"},
                     {"x-ratelimit-remaining": "4999", "x-ratelimit-reset": "1"})
    assert not RetryPolicy()(refused, 0).do_retry


def test_a_short_retry_after_is_slept_inline_a_long_one_is_the_callers() -> None:
    policy = RetryPolicy(max_wait=10)
    short = failed("POST", "/repos/acme/widgets/pulls", 403, {"message": SECONDARY}, {"retry-after": "2"},
                   SecondaryRateLimitExceeded, 2)
    decision = policy(short, 0)
    assert decision.do_retry and decision.retry_after == timedelta(seconds=2.25)
    long = failed("POST", "/repos/acme/widgets/pulls", 429, {"message": SECONDARY}, {"retry-after": "600"},
                  SecondaryRateLimitExceeded, 600)
    with pytest.raises(RetryLater) as raised:
        policy(long, 0)
    assert raised.value.seconds == pytest.approx(600.25) and not raised.value.guessed


def test_a_primary_limit_is_waited_until_its_reset_and_a_persistent_one_handed_back() -> None:
    policy = RetryPolicy(max_wait=10, rate_limit_retries=3)
    primary = failed("GET", "/repos/acme/widgets", 403, {"message": "API rate limit exceeded"},
                     {"x-ratelimit-remaining": "0"}, PrimaryRateLimitExceeded, 3)
    assert [policy(primary, n).do_retry for n in range(3)] == [True, True, True]
    with pytest.raises(RetryLater):
        policy(primary, 3)  # still limited after three waits: the caller's to wait for


def test_retry_later_leaves_githubkit_as_the_answer_the_caller_catches() -> None:
    """Raised from githubkit's retry hook, RetryLater reaches the caller after exactly one request."""
    seen: list[str] = []

    def github(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(403, json={"message": SECONDARY})

    gh = GitHub("token", base_url=API + "/", transport=httpx.MockTransport(github),
                auto_retry=RetryPolicy(secondary_wait=5))
    with pytest.raises(RetryLater) as raised:
        gh.rest.issues.create_comment("acme", "widgets", 1, body="hi")
    assert raised.value.seconds == 5 and seen == ["POST"]


def test_a_502_on_a_create_reaches_the_caller_after_one_request() -> None:
    """The reporter, not the client, decides whether to create again (github_app.reporting)."""
    seen: list[str] = []

    def github(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        return httpx.Response(502, json={"message": "Server Error"})

    gh = GitHub("token", base_url=API + "/", transport=httpx.MockTransport(github),
                auto_retry=RetryPolicy(base_delay=0.01))
    with pytest.raises(RequestFailed):
        gh.rest.checks.create("acme", "widgets", name="n", head_sha="a" * 40)  # type: ignore[call-overload]
    assert seen == ["POST"]
