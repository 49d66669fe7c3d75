"""The forge's records: frozen values for accounts, repos, issues/pulls, comments, reactions, checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def now() -> datetime:
    """The current time in UTC, to the second (GitHub's timestamps have no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


ROLES = ("admin", "maintain", "write", "triage", "read")
# GitHub's `permission` field only knows the legacy levels.
LEGACY_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}
ROLE_RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
PLANS = ("free", "pro", "team", "enterprise")
# GitHub's plans without draft pull requests on private repositories.
NO_PRIVATE_DRAFTS = frozenset({"free", "pro"})


@dataclass(frozen=True, slots=True)
class User:
    """An account: a person (`User`), an app's bot (`Bot`) or an `Organization`."""

    id: int
    login: str
    type: str = "User"
    created_at: datetime = field(default_factory=now)
    plan: str = "free"  # one of PLANS: decides, with a repo's visibility, whether it may hold drafts


@dataclass(frozen=True, slots=True)
class Installation:
    """The app installed on one account; it covers every repo of that account."""

    id: int
    account: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository; its git data lives in a bare repo on disk."""

    id: int
    owner: str
    name: str
    default_branch: str
    private: bool
    installation_id: int
    created_at: datetime
    pushed_at: datetime
    description: str | None = None

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class Pull:
    """The pull-request half of an issue."""

    id: int
    head_ref: str
    base_ref: str
    head_sha: str  # last seen; refreshed from git when read
    base_sha: str
    draft: bool = False
    merged_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Issue:
    """An issue, or a pull request when `pull` is set (they share one number sequence per repo)."""

    repo: str
    number: int
    id: int
    title: str
    body: str | None
    author: str
    state: str = "open"
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    closed_at: datetime | None = None
    state_reason: str | None = None
    labels: tuple[str, ...] = ()
    pull: Pull | None = None


@dataclass(frozen=True, slots=True)
class Comment:
    """An issue (or PR conversation) comment."""

    id: int
    repo: str
    issue_number: int
    author: str
    body: str
    created_at: datetime
    updated_at: datetime
    via_app: bool = False


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction on an issue comment."""

    id: int
    comment_id: int
    user: str
    content: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CheckRun:
    """A check run; annotations accumulate across updates like GitHub's."""

    id: int
    repo: str
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    started_at: datetime | None
    completed_at: datetime | None
    details_url: str | None
    external_id: str | None
    title: str | None
    summary: str | None
    text: str | None
    annotations: tuple[Mapping[str, Any], ...]
    actions: tuple[Mapping[str, Any], ...]
    check_suite_id: int
    app_id: int
