"""Everything Clarity writes to GitHub: reactions, comments, check runs and pull requests.

Every text passes the redactor and GitHub's size limits before it leaves. What creates something (a
comment, an issue, a check run, a PR) is made exactly once: GitHub can answer a 5xx, or nothing in
time, after it made it, so such a failure is followed by a look for it (`_create_once`), and only
when it is not there is it created again. To be found, a comment or issue carries a hidden marker
(`<!-- clarity:op:<id> -->`) and a check run an `external_id` of its own (`<owner>#<id>`, where the
owner part, `<execution>:<task>`, is what buttons and recovery read: `check_owner`); a PR is found by
its branch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from githubkit import GitHub
from githubkit.exception import GraphQLFailed, RequestError, RequestFailed

from clarity.redaction import redact
from github_app.annotations import Annotation, batches

log = logging.getLogger(__name__)

CHECK_TEXT_LIMIT = 65535
COMMENT_LIMIT = 65536
_TRUNCATED = "\n\n… (truncated)"
CREATE_TRIES = 3  # a create GitHub may have made anyway: looked for, then made again, at most this often
LOOKUP_PAUSE = 0.5  # seconds before the first look (doubling): GitHub's reads may lag its writes
LOOKBACK = timedelta(minutes=10)  # how far back a comment is looked for (clock skew with GitHub included)
T = TypeVar("T")


def _op() -> str:
    """A fresh id for one create (its marker or external_id)."""
    return uuid.uuid4().hex[:16]


def _marker(op: str) -> str:
    return f"<!-- clarity:op:{op} -->"


def _marked(body: str, op: str) -> str:
    """`body` fitted to a comment, with the create's hidden marker at its end."""
    marker = _marker(op)
    return f"{fit(body, COMMENT_LIMIT - len(marker) - 2)}\n\n{marker}"


def check_owner(external_id: str) -> str:
    """What a check run of ours belongs to, `<execution>:<task>` (`<execution>:` for a summary), from its
    external_id (`<execution>:<task>#<create id>`; older runs have no `#` part)."""
    return external_id.split("#", 1)[0]


def unsure(exc: Exception) -> bool:
    """Whether a create that failed may have been made all the same: a 5xx, or no answer at all."""
    if isinstance(exc, RequestFailed):
        return exc.response.status_code >= 500
    return isinstance(exc, RequestError)  # a timeout or a lost connection


def fit(text: str, limit: int) -> str:
    """Redact, then cut to GitHub's limit (counted in UTF-8 bytes, the stricter reading) and say so."""
    text = redact(text)
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = limit - len(_TRUNCATED.encode("utf-8"))
    return data[:room].decode("utf-8", "ignore") + _TRUNCATED  # "ignore" drops a split character


Conclusion = Literal["action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale",
                     "timed_out"]
Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]


def _redacted(annotations: Sequence[Annotation]) -> list[Annotation]:
    return [dataclasses.replace(a, message=redact(a.message), title=redact(a.title)) for a in annotations]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Button:
    """A check-run action button (GitHub: ≤ 3 per run; label ≤ 20, description ≤ 40, identifier ≤ 20)."""

    label: str
    description: str
    identifier: str

    def __post_init__(self) -> None:
        if len(self.label) > 20 or len(self.description) > 40 or len(self.identifier) > 20:
            raise ValueError(f"check-run button {self.identifier!r} exceeds GitHub's size limits")

    def to_github(self) -> dict[str, str]:
        """The JSON GitHub expects in `actions`."""
        return {"label": self.label, "description": self.description, "identifier": self.identifier}


STOP = Button("Stop", "Stop this execution now", "stop")
RETRY = Button("Retry", "Run this task again", "retry")
RESUME = Button("Resume", "Continue the execution", "resume")


@dataclass(frozen=True, slots=True)
class PullRequestRef:
    """The PR an execution reports into."""

    number: int
    url: str
    node_id: str = ""
    draft: bool = False
    head: str = ""  # its head branch, as GitHub last answered
    open: bool = True


def _pull_ref(pull: Any) -> PullRequestRef:
    """A PullRequestRef from githubkit's PullRequest or PullRequestSimple."""
    return PullRequestRef(pull.number, pull.html_url, pull.node_id, bool(pull.draft), pull.head.ref,
                          pull.state == "open")


DRAFTS_REFUSED = "Draft pull requests are not supported"


def refuses_drafts(exc: Exception) -> bool:
    """Whether GitHub refused a draft because the repository takes none (private, of a Free or Pro owner).

    github.com answers the REST create with 422 and the sentence as `message`; GraphQL (and a `Validation
    Failed` body) carry it in `errors`.
    """
    if isinstance(exc, GraphQLFailed):
        messages = [error.message for error in exc.response.errors or []]
    elif isinstance(exc, RequestFailed):
        try:
            answer = exc.response.raw_response.json()
        except ValueError:
            return False
        if not isinstance(answer, dict):
            return False
        errors = answer.get("errors")
        errors = errors if isinstance(errors, list) else []
        messages = [str(answer.get("message", ""))] + [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
    else:
        return False
    return any(DRAFTS_REFUSED in message for message in messages)


_READY = "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { clientMutationId } }"
_DRAFT = "mutation($id: ID!) { convertPullRequestToDraft(input: {pullRequestId: $id}) { clientMutationId } }"


class Reporter:
    """Writes to one repository as the installation.

    `notice` heads the summary of every check run it writes (the worker's "unsandboxed", say). `drafts`:
    whether the repository takes draft PRs; it turns False when GitHub refuses one (the caller remembers it).
    """

    def __init__(self, gh: GitHub, repo: str, notice: str = "", drafts: bool = True) -> None:
        self.gh = gh
        self.repo = repo
        self.owner, self.name = repo.split("/", 1)
        self.notice = notice
        self.drafts = drafts

    def _summary(self, summary: str) -> str:
        return fit(f"{self.notice}\n\n{summary}" if self.notice else summary, CHECK_TEXT_LIMIT)

    def react(self, comment_id: int, content: Reaction = "eyes") -> None:
        """Acknowledge a comment with a reaction."""
        self.gh.rest.reactions.create_for_issue_comment(self.owner, self.name, comment_id, content=content)

    def _create_once(self, what: str, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """`create()`, made once: after a 5xx or no answer, `find()` it before creating it again."""
        for attempt in range(CREATE_TRIES):
            try:
                return create()
            except RequestError as exc:
                if not unsure(exc) or attempt == CREATE_TRIES - 1:
                    raise
                answer = exc.response.status_code if isinstance(exc, RequestFailed) else type(exc).__name__
                log.warning("%s: creating %s failed (%s); looking whether GitHub made it anyway", self.repo, what,
                            answer)
            time.sleep(LOOKUP_PAUSE * 2 ** attempt)
            found = find()
            if found is not None:
                log.info("%s: GitHub had made the %s after all; not made again", self.repo, what)
                return found
        raise AssertionError("unreachable")

    def comment(self, issue_number: int, body: str) -> str:
        """Post a comment on an issue or PR (once, see `_create_once`); returns its URL."""
        op, since = _op(), _now() - LOOKBACK

        def find() -> str | None:
            # Typed Any: githubkit's method named `list` hides the builtin from mypy in these answers.
            comments: Any = self.gh.rest.issues.list_comments(self.owner, self.name, issue_number, since=since,
                                                              per_page=100).parsed_data
            return next((c.html_url for c in comments if _marker(op) in (c.body or "")), None)

        return self._create_once("comment", lambda: self.gh.rest.issues.create_comment(
            self.owner, self.name, issue_number, body=_marked(body, op)).parsed_data.html_url, find)

    def open_issue(self, title: str, body: str) -> int:
        """Open an issue (the tracking issue of an execution started through the API), once; its number."""
        op = _op()

        def find() -> int | None:
            issues: Any = self.gh.rest.issues.list_for_repo(self.owner, self.name, state="all", sort="created",
                                                            direction="desc", per_page=30).parsed_data
            return next((i.number for i in issues if _marker(op) in (i.body or "")), None)

        return self._create_once("issue", lambda: int(self.gh.rest.issues.create(
            self.owner, self.name, title=fit(title, 256), body=_marked(body, op)).parsed_data.number), find)

    def start_check(self, head_sha: str, name: str, details_url: str, external_id: str, summary: str,
                    actions: Sequence[Button] = (), title: str = "", text: str = "") -> int:
        """Create an in-progress check run (with its buttons), once; returns its id.

        Its output title is `title`, else its name; `text` (details) saves an update right after.
        `external_id` names its owner (`<execution>:<task>`); the run's own gets a create id after it.
        """
        output: dict[str, object] = {"title": fit(title or name, 255), "summary": self._summary(summary)}
        if text:
            output["text"] = fit(text, CHECK_TEXT_LIMIT)
        return self._create_check(head_sha, name, {
            "status": "in_progress", "started_at": _now(), "details_url": details_url, "output": output,
            "actions": [b.to_github() for b in actions[:3]]}, external_id)

    def completed_check(self, head_sha: str, name: str, details_url: str, external_id: str, conclusion: Conclusion,
                        title: str, summary: str, text: str = "", annotations: Sequence[Annotation] = (),
                        actions: Sequence[Button] = ()) -> int:
        """Create a check run already completed (one that could not be opened while its work ran), once."""
        output: dict[str, object] = {"title": fit(title, 255), "summary": self._summary(summary)}
        if text:
            output["text"] = fit(text, CHECK_TEXT_LIMIT)
        first, *rest = batches(_redacted(annotations))
        now = _now()
        check_run_id = self._create_check(head_sha, name, {
            "status": "completed", "conclusion": conclusion, "started_at": now, "completed_at": now,
            "details_url": details_url, "output": {**output, "annotations": first} if first else output,
            "actions": [b.to_github() for b in actions[:3]]}, external_id)
        for batch in rest:
            self.gh.rest.checks.update(  # type: ignore[call-overload]
                self.owner, self.name, check_run_id, output={**output, "annotations": batch})
        return check_run_id

    def _create_check(self, head_sha: str, name: str, fields: dict[str, Any], owner: str) -> int:
        external_id = f"{owner}#{_op()}"

        def find() -> int | None:
            runs = self.gh.rest.checks.list_for_ref(self.owner, self.name, head_sha, check_name=name[:255],
                                                    filter_="all", per_page=100).parsed_data.check_runs
            return next((run.id for run in runs if run.external_id == external_id), None)

        return self._create_once("check run", lambda: int(self.gh.rest.checks.create(  # type: ignore[call-overload]
            self.owner, self.name, name=name[:255], head_sha=head_sha, external_id=external_id,
            **fields).parsed_data.id), find)

    def running_checks(self, head_sha: str, owner: str) -> list[int]:
        """The ids of the check runs on a commit still in progress for `owner` (`check_owner`; a task has one)."""
        response = self.gh.rest.checks.list_for_ref(self.owner, self.name, head_sha, status="in_progress",
                                                    filter_="all", per_page=100)
        return [run.id for run in response.parsed_data.check_runs if check_owner(run.external_id or "") == owner]

    def finish_check(self, check_run_id: int, conclusion: Conclusion, title: str, summary: str,
                     text: str = "", annotations: Sequence[Annotation] = (), actions: Sequence[Button] = ()) -> None:
        """Complete a check run with its evidence; annotations go 50 per request (GitHub appends them)."""
        output: dict[str, object] = {"title": fit(title, 255), "summary": self._summary(summary)}
        if text:
            output["text"] = fit(text, CHECK_TEXT_LIMIT)
        first, *rest = batches(_redacted(annotations))
        self.gh.rest.checks.update(  # type: ignore[call-overload]  # output is a plain dict, not the TypedDict
            self.owner, self.name, check_run_id, status="completed", conclusion=conclusion,
            completed_at=_now(), output={**output, "annotations": first} if first else output,
            actions=[b.to_github() for b in actions[:3]])
        for batch in rest:
            self.gh.rest.checks.update(  # type: ignore[call-overload]
                self.owner, self.name, check_run_id, output={**output, "annotations": batch})

    def update_check(self, check_run_id: int, title: str, summary: str, text: str = "") -> None:
        """Refresh a running check run's output (progress as it happens)."""
        output: dict[str, object] = {"title": fit(title, 255), "summary": self._summary(summary)}
        if text:
            output["text"] = fit(text, CHECK_TEXT_LIMIT)
        self.gh.rest.checks.update(self.owner, self.name, check_run_id, output=output)  # type: ignore[call-overload]

    def find_pull(self, head_branch: str) -> PullRequestRef | None:
        """The open PR whose head is `head_branch` in this repository, if any."""
        pulls = self.gh.rest.pulls.list(self.owner, self.name, state="open",
                                        head=f"{self.owner}:{head_branch}").parsed_data
        for pull in pulls:
            if pull.head.ref == head_branch:
                return _pull_ref(pull)
        return None

    def refresh_pull(self, number: int, head: str, body: str, draft: bool) -> PullRequestRef | None:
        """Refresh a PR opened before (body, then draft state) without looking it up first.

        None when it is gone, closed or no longer on `head`: then `ensure_pull` finds or opens one.
        """
        try:
            pull = self.update_pull(number, body=body)
        except RequestFailed as exc:
            if exc.response.status_code not in (404, 410):
                raise
            return None
        if not pull.open or pull.head != head:
            return None
        return self._with_draft(pull, draft)

    def ensure_pull(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequestRef:
        """Open the execution's PR, or refresh the one that exists for the branch (body and draft state).

        A draft only where the repository takes drafts (see `drafts`); elsewhere the PR opens ready for review.
        """
        existing = self.find_pull(head)
        if existing:
            self.update_pull(existing.number, body=body)
            return self._with_draft(existing, draft)
        try:
            return self._open_pull(head, base, title, body, draft and self.drafts)
        except RequestFailed as exc:
            if exc.response.status_code != 422:
                raise
            # Lost a race with another writer: the PR exists now.
            existing = self.find_pull(head)
            if not existing:
                raise
            return existing

    def _open_pull(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequestRef:
        """Create the PR (once: found by its branch); where GitHub refuses drafts (422), note it in `drafts` and
        create it ready instead."""
        try:
            return self._create_once("pull request", lambda: _pull_ref(self.gh.rest.pulls.create(
                self.owner, self.name, title=fit(title, 256), head=head, base=base, body=fit(body, COMMENT_LIMIT),
                draft=draft).parsed_data), lambda: self.find_pull(head))
        except RequestFailed as exc:
            if not (draft and refuses_drafts(exc)):
                raise
        log.info("%s takes no draft pull requests (GitHub answered 422): opening one ready for review", self.repo)
        self.drafts = False
        return self._open_pull(head, base, title, body, draft=False)

    def _with_draft(self, pull: PullRequestRef, draft: bool) -> PullRequestRef:
        """Toggle the PR to `draft`; never into a draft where the repository takes none (it stays ready)."""
        if pull.draft == draft or not pull.node_id or (draft and not self.drafts):
            return pull
        try:
            self.set_draft(pull.node_id, draft)
        except (RequestFailed, GraphQLFailed) as exc:
            if not (draft and refuses_drafts(exc)):
                raise
            log.info("%s takes no draft pull requests (GraphQL refused): #%s stays ready", self.repo, pull.number)
            self.drafts = False
            return pull
        return dataclasses.replace(pull, draft=draft)

    def set_draft(self, node_id: str, draft: bool) -> None:
        """Draft while the execution runs, ready for review when it pauses or completes (GraphQL only)."""
        self.gh.graphql.request(_DRAFT if draft else _READY, {"id": node_id})

    def update_pull(self, number: int, body: str) -> PullRequestRef:
        """Refresh a PR's body with the latest evidence; the PR as GitHub answered."""
        return _pull_ref(self.gh.rest.pulls.update(self.owner, self.name, number,
                                                   body=fit(body, COMMENT_LIMIT)).parsed_data)
