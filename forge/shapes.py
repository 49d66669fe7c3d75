"""GitHub-shaped JSON for accounts, the app, installations, repos, issues, comments and reactions.

Field sets follow real payloads (tests/fixtures/github-webhooks) so githubkit's strict models parse them.
"""

from __future__ import annotations

import base64
import zlib
from datetime import datetime
from typing import Any

from forge.app_identity import AppRegistry, initial_identity
from forge.config import ForgeConfig
from forge.records import (
    LEGACY_PERMISSION,
    ROLE_RANK,
    Comment,
    Installation,
    Issue,
    Reaction,
    Repo,
    User,
)
from forge.state import ForgeState

REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")


def ts(value: datetime | None) -> str | None:
    """GitHub's timestamp format: ISO 8601 in UTC with a `Z`."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(type_name: str, id_: int) -> str:
    """A legacy-style global node id, e.g. ``MDQ6VXNlcjE=`` for User 1."""
    return base64.b64encode(f"0{len(type_name)}:{type_name}{id_}".encode()).decode()


class Shapes:
    """Builds response bodies from the state; one per forge app."""

    def __init__(self, config: ForgeConfig, state: ForgeState, apps: AppRegistry | None = None) -> None:
        self.config = config
        self.state = state
        self.apps = apps or AppRegistry(initial_identity(config))
        self.api = config.api_url
        self.web = config.public_url.rstrip("/")

    @property
    def bot_login(self) -> str:
        """The current app's bot account, e.g. ``clarity[bot]``."""
        return self.apps.current().bot_login

    # accounts
    def user(self, login: str | None) -> dict[str, Any] | None:
        """A SimpleUser object."""
        if login is None:
            return None
        user = self.state.user(login) or User(0, login)
        api_user = f"{self.api}/users/{user.login}"
        html = f"{self.web}/apps/{user.login.removesuffix('[bot]')}" if user.type == "Bot" else f"{self.web}/{user.login}"
        return {
            "login": user.login,
            "id": user.id,
            "node_id": node_id(user.type, user.id),
            "avatar_url": f"{self.web}/avatars/{user.login}",
            "gravatar_id": "",
            "url": api_user,
            "html_url": html,
            "followers_url": f"{api_user}/followers",
            "following_url": f"{api_user}/following{{/other_user}}",
            "gists_url": f"{api_user}/gists{{/gist_id}}",
            "starred_url": f"{api_user}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api_user}/subscriptions",
            "organizations_url": f"{api_user}/orgs",
            "repos_url": f"{api_user}/repos",
            "events_url": f"{api_user}/events{{/privacy}}",
            "received_events_url": f"{api_user}/received_events",
            "type": user.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    @property
    def app_owner_login(self) -> str:
        """The account that owns the app."""
        return self.apps.current().owner

    def _owner(self) -> dict[str, Any]:
        owner = self.user(self.app_owner_login)
        assert owner is not None
        return owner

    def app(self) -> dict[str, Any]:
        """The Integration object for the app the forge serves."""
        app = self.apps.current()
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("App", app.id),
            "client_id": app.client_id,
            "owner": self._owner(),
            "name": app.name,
            "description": app.description,
            "external_url": app.external_url or self.web,
            "html_url": f"{self.web}/apps/{app.slug}",
            "created_at": ts(app.created_at),
            "updated_at": ts(app.created_at),
            "permissions": dict(app.permissions),
            "events": list(app.events),
            "installations_count": len(self.state.installations()),
        }

    def installation(self, inst: Installation) -> dict[str, Any]:
        """An Installation object."""
        account = self.user(inst.account)
        assert account is not None
        app = self.apps.current()
        return {
            "id": inst.id,
            "client_id": app.client_id,
            "account": account,
            "repository_selection": "all",
            "access_tokens_url": f"{self.api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": f"{self.web}/settings/installations/{inst.id}",
            "app_id": app.id,
            "app_slug": app.slug,
            "target_id": account["id"],
            "target_type": account["type"],
            "permissions": dict(app.permissions),
            "events": list(app.events),
            "created_at": ts(inst.created_at),
            "updated_at": ts(inst.created_at),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }

    # repositories
    def repo_urls(self, repo: Repo) -> dict[str, str]:
        """The templated URL fields every repository object carries."""
        a = f"{self.api}/repos/{repo.full_name}"
        names = {
            "forks_url": "/forks",
            "keys_url": "/keys{/key_id}",
            "collaborators_url": "/collaborators{/collaborator}",
            "teams_url": "/teams",
            "hooks_url": "/hooks",
            "issue_events_url": "/issues/events{/number}",
            "events_url": "/events",
            "assignees_url": "/assignees{/user}",
            "branches_url": "/branches{/branch}",
            "tags_url": "/tags",
            "blobs_url": "/git/blobs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "trees_url": "/git/trees{/sha}",
            "statuses_url": "/statuses/{sha}",
            "languages_url": "/languages",
            "stargazers_url": "/stargazers",
            "contributors_url": "/contributors",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "commits_url": "/commits{/sha}",
            "git_commits_url": "/git/commits{/sha}",
            "comments_url": "/comments{/number}",
            "issue_comment_url": "/issues/comments{/number}",
            "contents_url": "/contents/{+path}",
            "compare_url": "/compare/{base}...{head}",
            "merges_url": "/merges",
            "archive_url": "/{archive_format}{/ref}",
            "downloads_url": "/downloads",
            "issues_url": "/issues{/number}",
            "pulls_url": "/pulls{/number}",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "labels_url": "/labels{/name}",
            "releases_url": "/releases{/id}",
            "deployments_url": "/deployments",
        }
        return {key: a + suffix for key, suffix in names.items()}

    def clone_url(self, repo: Repo) -> str:
        """The smart-HTTP URL git clones and pushes."""
        return f"{self.web}/{repo.full_name}.git"

    def repo(self, repo: Repo) -> dict[str, Any]:
        """A full repository object (a superset of the Repository and webhook shapes)."""
        open_count = sum(1 for i in self.state.issues(repo.full_name) if i.state == "open")
        host = self.web.split("://", 1)[-1]
        return {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.user(repo.owner),
            "html_url": f"{self.web}/{repo.full_name}",
            "description": repo.description,
            "fork": False,
            "url": f"{self.api}/repos/{repo.full_name}",
            **self.repo_urls(repo),
            "created_at": ts(repo.created_at),
            "updated_at": ts(repo.pushed_at),
            "pushed_at": ts(repo.pushed_at),
            "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host}:{repo.full_name}.git",
            "clone_url": self.clone_url(repo),
            "svn_url": f"{self.web}/{repo.full_name}",
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private" if repo.private else "public",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": repo.default_branch,
            "custom_properties": {},
            "network_count": 0,
            "subscribers_count": 0,
        }

    # issues, comments, reactions
    def author_association(self, repo: str, login: str) -> str:
        """OWNER, COLLABORATOR or NONE, from the repo's roles."""
        record = self.state.repo(repo)
        if record is not None and record.owner.lower() == login.lower():
            return "OWNER"
        return "COLLABORATOR" if self.state.role(repo, login) else "NONE"

    def rollup(self, url: str, reactions: list[Reaction]) -> dict[str, Any]:
        """A reactions summary."""
        counts = {content: sum(1 for r in reactions if r.content == content) for content in REACTIONS}
        return {"url": url, "total_count": len(reactions), **counts}

    def issue(self, issue: Issue) -> dict[str, Any]:
        """An issue object; a PR's issue carries the `pull_request` key."""
        a = f"{self.api}/repos/{issue.repo}/issues/{issue.number}"
        kind = "pull" if issue.pull else "issues"
        body: dict[str, Any] = {
            "url": a,
            "repository_url": f"{self.api}/repos/{issue.repo}",
            "labels_url": f"{a}/labels{{/name}}",
            "comments_url": f"{a}/comments",
            "events_url": f"{a}/events",
            "html_url": f"{self.web}/{issue.repo}/{kind}/{issue.number}",
            "id": issue.id,
            "node_id": node_id("Issue", issue.id),
            "number": issue.number,
            "title": issue.title,
            "user": self.user(issue.author),
            "labels": [self.label(issue.repo, name) for name in issue.labels],
            "state": issue.state,
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(self.state.comments(issue.repo, issue.number)),
            "created_at": ts(issue.created_at),
            "updated_at": ts(issue.updated_at),
            "closed_at": ts(issue.closed_at),
            "author_association": self.author_association(issue.repo, issue.author),
            "active_lock_reason": None,
            "body": issue.body,
            "reactions": self.rollup(f"{a}/reactions", []),
            "timeline_url": f"{a}/timeline",
            "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.pull is not None:
            p = f"{self.web}/{issue.repo}/pull/{issue.number}"
            body["draft"] = issue.pull.draft
            body["pull_request"] = {
                "url": f"{self.api}/repos/{issue.repo}/pulls/{issue.number}",
                "html_url": p,
                "diff_url": f"{p}.diff",
                "patch_url": f"{p}.patch",
                "merged_at": ts(issue.pull.merged_at),
            }
        return body

    def label(self, repo: str, name: str) -> dict[str, Any]:
        """A label object (labels are free-form names in the forge)."""
        id_ = zlib.crc32(f"{repo}:{name}".encode())
        return {
            "id": id_,
            "node_id": node_id("Label", id_),
            "url": f"{self.api}/repos/{repo}/labels/{name}",
            "name": name,
            "color": "ededed",
            "default": False,
            "description": None,
        }

    def comment(self, comment: Comment) -> dict[str, Any]:
        """An IssueComment object."""
        a = f"{self.api}/repos/{comment.repo}/issues/comments/{comment.id}"
        issue = self.state.issue(comment.repo, comment.issue_number)
        kind = "pull" if issue is not None and issue.pull else "issues"
        return {
            "url": a,
            "html_url": f"{self.web}/{comment.repo}/{kind}/{comment.issue_number}#issuecomment-{comment.id}",
            "issue_url": f"{self.api}/repos/{comment.repo}/issues/{comment.issue_number}",
            "id": comment.id,
            "node_id": node_id("IssueComment", comment.id),
            "user": self.user(comment.author),
            "created_at": ts(comment.created_at),
            "updated_at": ts(comment.updated_at),
            "author_association": self.author_association(comment.repo, comment.author),
            "body": comment.body,
            "performed_via_github_app": self.app() if comment.via_app else None,
            "reactions": self.rollup(f"{a}/reactions", self.state.reactions(comment.id)),
        }

    def reaction(self, reaction: Reaction) -> dict[str, Any]:
        """A Reaction object."""
        return {
            "id": reaction.id,
            "node_id": node_id("Reaction", reaction.id),
            "user": self.user(reaction.user),
            "content": reaction.content,
            "created_at": ts(reaction.created_at),
        }

    def permission(self, repo: str, login: str, role: str, custom_name: str | None = None) -> dict[str, Any]:
        """The collaborator-permission answer: legacy `permission` plus the precise `role_name`.

        With a custom repository role, `role_name` is its name and `permission` its base role's (as GitHub).
        """
        legacy = LEGACY_PERMISSION.get(role, "none")
        rank = ROLE_RANK[role]
        user = self.user(login)
        assert user is not None
        flags = {
            "admin": rank >= 5,
            "maintain": rank >= 4,
            "push": rank >= 3,
            "triage": rank >= 2,
            "pull": rank >= 1,
        }
        name = custom_name or role
        return {
            "permission": legacy,
            "role_name": name,
            "user": {**user, "permissions": flags, "role_name": name},
        }
