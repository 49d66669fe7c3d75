"""The forge's in-memory store: users, installations, repos, issues/pulls, comments, reactions, checks.

Records (forge.records) are frozen and replaced on update, so a reader holding one never sees it
change. The store does no validation: the REST layer decides, the store records.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace
from typing import Any

from forge.records import CheckRun, Comment, Installation, Issue, Pull, Reaction, Repo, User, now
from forge.visibility import PushVisibility


class ForgeState:
    """Thread-safe store of everything that is not git data."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids = {
            kind: itertools.count(start)
            for kind, start in {
                "user": 1001,
                "installation": 1000,
                "repo": 200001,
                "issue": 3000001,
                "pull": 4000001,
                "comment": 5000001,
                "reaction": 6000001,
                "check_run": 7000001,
                "check_suite": 8000001,
            }.items()
        }
        self._users: dict[str, User] = {}
        self._installations: dict[int, Installation] = {}
        self._repos: dict[str, Repo] = {}
        self._roles: dict[tuple[str, str], str] = {}
        self._custom_roles: dict[tuple[str, str], str] = {}  # a custom repository role's name, by (repo, login)
        self._issues: dict[tuple[str, int], Issue] = {}
        self._comments: dict[int, Comment] = {}
        self._reactions: dict[int, Reaction] = {}
        self._check_runs: dict[int, CheckRun] = {}
        self._suites: dict[tuple[str, str], int] = {}
        self.max_file_bytes = 100 * 1024 * 1024  # GitHub refuses a pushed file over 100 MB (GH001)
        self.visibility = PushVisibility()  # the REST API's lag behind a push (off unless set)

    def next_id(self, kind: str) -> int:
        """A fresh id from the named sequence."""
        with self._lock:
            return next(self._ids[kind])

    # users and installations
    def ensure_user(self, login: str, type_: str = "User") -> User:
        """The user with this login, created if it does not exist yet."""
        with self._lock:
            key = login.lower()
            if key not in self._users:
                self._users[key] = User(self.next_id("user"), login, type_)
            return self._users[key]

    def set_plan(self, login: str, plan: str) -> User:
        """Put an account on a plan (free, pro, team, enterprise), creating it if needed."""
        with self._lock:
            user = replace(self.ensure_user(login), plan=plan)
            self._users[login.lower()] = user
            return user

    def user(self, login: str) -> User | None:
        """The user with this login (case-insensitive), if any."""
        with self._lock:
            return self._users.get(login.lower())

    def users(self) -> list[User]:
        """All users, oldest first."""
        with self._lock:
            return list(self._users.values())

    def installation(self, installation_id: int) -> Installation | None:
        """An installation by id."""
        with self._lock:
            return self._installations.get(installation_id)

    def installation_for(self, account: str) -> Installation:
        """The installation on this account, created on first use."""
        with self._lock:
            for inst in self._installations.values():
                if inst.account.lower() == account.lower():
                    return inst
            inst = Installation(self.next_id("installation"), account, now())
            self._installations[inst.id] = inst
            return inst

    def installations(self) -> list[Installation]:
        """All installations."""
        with self._lock:
            return list(self._installations.values())

    # repos and permissions
    def add_repo(
        self,
        owner: str,
        name: str,
        default_branch: str,
        private: bool = False,
        description: str | None = None,
    ) -> Repo:
        """Record a repo, its owner and the owner's installation."""
        with self._lock:
            owner_user = self.ensure_user(owner)
            inst = self.installation_for(owner_user.login)
            created = now()
            repo = Repo(
                self.next_id("repo"),
                owner_user.login,
                name,
                default_branch,
                private,
                inst.id,
                created,
                created,
                description,
            )
            self._repos[repo.full_name.lower()] = repo
            return repo

    def repo(self, full_name: str) -> Repo | None:
        """A repo by ``owner/name`` (case-insensitive)."""
        with self._lock:
            return self._repos.get(full_name.lower())

    def repos(self) -> list[Repo]:
        """All repos."""
        with self._lock:
            return list(self._repos.values())

    def touch_repo(self, full_name: str) -> None:
        """Note a push."""
        with self._lock:
            if (repo := self._repos.get(full_name.lower())) is not None:
                self._repos[full_name.lower()] = replace(repo, pushed_at=now())

    def set_role(self, full_name: str, login: str, role: str, custom_name: str | None = None) -> None:
        """Make a user a collaborator with this role (the base role of `custom_name`, a custom role, if given)."""
        with self._lock:
            self._roles[(full_name.lower(), login.lower())] = role
            if custom_name:
                self._custom_roles[(full_name.lower(), login.lower())] = custom_name
            else:
                self._custom_roles.pop((full_name.lower(), login.lower()), None)

    def custom_role(self, full_name: str, login: str) -> str | None:
        """The name of the user's custom repository role on the repo, if they have one."""
        with self._lock:
            return self._custom_roles.get((full_name.lower(), login.lower()))

    def role(self, full_name: str, login: str) -> str | None:
        """The user's explicit role on the repo: `admin` for the owner, None for non-collaborators."""
        with self._lock:
            repo = self._repos.get(full_name.lower())
            if repo is not None and repo.owner.lower() == login.lower():
                return "admin"
            return self._roles.get((full_name.lower(), login.lower()))

    # issues and pulls
    def add_issue(
        self,
        repo: str,
        title: str,
        body: str | None,
        author: str,
        *,
        number: int | None = None,
        pull: Pull | None = None,
    ) -> Issue:
        """Record an issue (or a PR when `pull` is given) with the next free number."""
        with self._lock:
            taken = {n for (r, n) in self._issues if r == repo.lower()}
            if number is None or number in taken:
                number = max(taken, default=0) + 1
            issue = Issue(repo, number, self.next_id("issue"), title, body, author, pull=pull)
            self._issues[(repo.lower(), number)] = issue
            return issue

    def issue(self, repo: str, number: int) -> Issue | None:
        """An issue or PR by number."""
        with self._lock:
            return self._issues.get((repo.lower(), number))

    def issues(self, repo: str) -> list[Issue]:
        """Issues and PRs of a repo, by number."""
        with self._lock:
            return sorted(
                (i for (r, _), i in self._issues.items() if r == repo.lower()), key=lambda i: i.number
            )

    def update_issue(self, repo: str, number: int, **changes: Any) -> Issue:
        """Replace fields of an issue; bumps `updated_at`."""
        with self._lock:
            issue = replace(self._issues[(repo.lower(), number)], updated_at=now(), **changes)
            self._issues[(repo.lower(), number)] = issue
            return issue

    def update_pull(self, repo: str, number: int, **changes: Any) -> Issue:
        """Replace fields of a PR's pull half."""
        with self._lock:
            issue = self._issues[(repo.lower(), number)]
            assert issue.pull is not None
            return self.update_issue(repo, number, pull=replace(issue.pull, **changes))

    # comments and reactions
    def add_comment(self, repo: str, issue_number: int, author: str, body: str, via_app: bool) -> Comment:
        """Record a comment."""
        with self._lock:
            created = now()
            comment = Comment(
                self.next_id("comment"), repo, issue_number, author, body, created, created, via_app
            )
            self._comments[comment.id] = comment
            return comment

    def comment(self, comment_id: int) -> Comment | None:
        """A comment by id."""
        with self._lock:
            return self._comments.get(comment_id)

    def comments(self, repo: str, issue_number: int | None = None) -> list[Comment]:
        """Comments of a repo (or of one issue), oldest first."""
        with self._lock:
            return [
                c
                for c in self._comments.values()
                if c.repo.lower() == repo.lower() and (issue_number is None or c.issue_number == issue_number)
            ]

    def update_comment(self, comment_id: int, body: str) -> Comment:
        """Change a comment's body."""
        with self._lock:
            comment = replace(self._comments[comment_id], body=body, updated_at=now())
            self._comments[comment_id] = comment
            return comment

    def add_reaction(self, comment_id: int, user: str, content: str) -> tuple[Reaction, bool]:
        """Record a reaction unless the same one exists; returns it and whether it is new."""
        with self._lock:
            for reaction in self._reactions.values():
                if (reaction.comment_id, reaction.user.lower(), reaction.content) == (
                    comment_id,
                    user.lower(),
                    content,
                ):
                    return reaction, False
            reaction = Reaction(self.next_id("reaction"), comment_id, user, content, now())
            self._reactions[reaction.id] = reaction
            return reaction, True

    def reactions(self, comment_id: int) -> list[Reaction]:
        """Reactions on a comment, oldest first."""
        with self._lock:
            return [r for r in self._reactions.values() if r.comment_id == comment_id]

    # check runs
    def check_suite_id(self, repo: str, head_sha: str) -> int:
        """The app's check suite for a commit, created on first use."""
        with self._lock:
            key = (repo.lower(), head_sha)
            if key not in self._suites:
                self._suites[key] = self.next_id("check_suite")
            return self._suites[key]

    def put_check_run(self, run: CheckRun) -> CheckRun:
        """Insert or replace a check run."""
        with self._lock:
            self._check_runs[run.id] = run
            return run

    def check_run(self, run_id: int) -> CheckRun | None:
        """A check run by id."""
        with self._lock:
            return self._check_runs.get(run_id)

    def check_runs(self, repo: str, head_sha: str | None = None) -> list[CheckRun]:
        """Check runs of a repo (or of one commit), newest first like GitHub lists them."""
        with self._lock:
            runs = [
                r
                for r in self._check_runs.values()
                if r.repo.lower() == repo.lower() and (head_sha is None or r.head_sha == head_sha)
            ]
            return sorted(runs, key=lambda r: r.id, reverse=True)

    def tables(self) -> dict[str, list[Any]]:
        """A consistent copy of every table, for the state dump."""
        with self._lock:
            return {
                "users": list(self._users.values()),
                "installations": list(self._installations.values()),
                "repos": list(self._repos.values()),
                "issues": sorted(self._issues.values(), key=lambda i: (i.repo, i.number)),
                "comments": list(self._comments.values()),
                "reactions": list(self._reactions.values()),
                "check_runs": sorted(self._check_runs.values(), key=lambda r: r.id),
            }
