"""What Clarity reads from GitHub about a repository: permissions and the role they grant, branches, PRs."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from githubkit import GitHub
from githubkit.exception import RequestFailed

from clarity import repoconfig
from github_app import roles


@dataclass(frozen=True, slots=True)
class PullHead:
    """Where a pull request's changes live."""

    head_ref: str
    head_repo: str
    base_ref: str
    state: str


def permission(gh: GitHub, repo: str, login: str) -> str:
    """The user's repository role (`admin`, `maintain`, `write`, `triage`, `read`, `none`)."""
    owner, name = repo.split("/", 1)
    try:
        data = gh.rest.repos.get_collaborator_permission_level(owner, name, login).parsed_data
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return "none"
        raise
    return roles.repository_role(str(data.permission), getattr(data, "role_name", None))


def authorize(gh: GitHub, repo: str, login: str) -> tuple[roles.Role, str]:
    """The user's Clarity role on the repository, and the GitHub permission it came from."""
    held = permission(gh, repo, login)
    return roles.role_for(held, login, _managers(gh, repo)), held


def _managers(gh: GitHub, repo: str) -> tuple[str, ...]:
    """Managers named in `.github/clarity.yml` on the default branch (none if absent or invalid)."""
    try:
        return repoconfig.parse(read_file(gh, repo, repoconfig.CONFIG_PATH)).managers
    except (RequestFailed, repoconfig.ConfigError):
        return ()


def default_branch(gh: GitHub, repo: str) -> str:
    """The repository's default branch."""
    owner, name = repo.split("/", 1)
    return gh.rest.repos.get(owner, name).parsed_data.default_branch


def pull_head(gh: GitHub, repo: str, number: int) -> PullHead:
    """Head and base of a pull request."""
    owner, name = repo.split("/", 1)
    pull = gh.rest.pulls.get(owner, name, number).parsed_data
    head_repo = pull.head.repo.full_name if pull.head.repo else ""
    return PullHead(pull.head.ref, head_repo, pull.base.ref, pull.state)


def clone_url(gh: GitHub, repo: str) -> str:
    """The HTTPS clone URL (credentials are never part of it)."""
    owner, name = repo.split("/", 1)
    return gh.rest.repos.get(owner, name).parsed_data.clone_url


def read_file(gh: GitHub, repo: str, path: str, ref: str | None = None) -> bytes | None:
    """A file's bytes at `ref` (default branch when None); None when the file or the ref does not exist."""
    owner, name = repo.split("/", 1)
    try:
        response = gh.rest.repos.get_content(owner, name, path, ref=ref) if ref else \
            gh.rest.repos.get_content(owner, name, path)
        data: Any = response.json()
    except RequestFailed as exc:
        if exc.response.status_code == 404:
            return None
        raise
    if not isinstance(data, dict) or "content" not in data:
        return None  # a directory or a submodule
    return base64.b64decode(data["content"])


def issue_labels(gh: GitHub, repo: str, number: int) -> tuple[str, ...]:
    """The names of an issue's (or pull request's) labels."""
    owner, name = repo.split("/", 1)
    data: Any = gh.rest.issues.get(owner, name, number).json()
    return tuple(str(label["name"] if isinstance(label, dict) else label) for label in data.get("labels") or [])


@dataclass(frozen=True, slots=True)
class IssueRef:
    """What the engine needs to know about an issue or pull request before it runs there."""

    number: int
    is_pull_request: bool
    locked: bool
    state: str


def issue(gh: GitHub, repo: str, number: int) -> IssueRef | None:
    """An issue or pull request of the repository; None when it does not exist."""
    owner, name = repo.split("/", 1)
    try:
        data: Any = gh.rest.issues.get(owner, name, number).json()
    except RequestFailed as exc:
        if exc.response.status_code in (404, 410):
            return None
        raise
    return IssueRef(int(data["number"]), bool(data.get("pull_request")), bool(data.get("locked")),
                    str(data.get("state") or "open"))
