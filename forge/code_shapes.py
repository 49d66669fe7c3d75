"""GitHub-shaped JSON for what lives in git: pulls, check runs, contents, refs, branches, commits."""

from __future__ import annotations

import base64
import zlib
from pathlib import Path
from typing import Any

from forge import git_repos
from forge.records import CheckRun, Issue, Repo
from forge.shapes import Shapes, node_id, ts


def bare_path(repos_dir: Path, repo: Repo) -> Path:
    """Where a repo's bare git directory lives."""
    return repos_dir / repo.owner / f"{repo.name}.git"


class CodeShapes:
    """Builds git-backed objects; reads refs live so pushes show up without notification."""

    def __init__(self, shapes: Shapes) -> None:
        self.s = shapes
        self.state = shapes.state
        self.api = shapes.api
        self.web = shapes.web

    def bare(self, repo: Repo) -> Path:
        """The repo's bare git directory."""
        return bare_path(self.s.config.repos_dir, repo)

    def live_pull(self, issue: Issue) -> Issue:
        """The PR with head/base SHAs re-read from git (an open PR follows its branches)."""
        repo = self.state.repo(issue.repo)
        if issue.pull is None or repo is None or issue.state != "open":
            return issue
        head = git_repos.resolve(self.bare(repo), f"refs/heads/{issue.pull.head_ref}") or issue.pull.head_sha
        base = git_repos.resolve(self.bare(repo), f"refs/heads/{issue.pull.base_ref}") or issue.pull.base_sha
        if (head, base) != (issue.pull.head_sha, issue.pull.base_sha):
            return self.state.update_pull(issue.repo, issue.number, head_sha=head, base_sha=base)
        return issue

    def _branch_side(self, repo: Repo, ref: str, sha: str) -> dict[str, Any]:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": self.s.user(repo.owner),
            "repo": self.s.repo(repo),
        }

    def pull(self, issue: Issue) -> dict[str, Any]:
        """A full PullRequest object (also valid as PullRequestSimple)."""
        issue = self.live_pull(issue)
        pull = issue.pull
        repo = self.state.repo(issue.repo)
        assert pull is not None and repo is not None
        a = f"{self.api}/repos/{issue.repo}/pulls/{issue.number}"
        html = f"{self.web}/{issue.repo}/pull/{issue.number}"
        issue_api = f"{self.api}/repos/{issue.repo}/issues/{issue.number}"
        statuses = f"{self.api}/repos/{issue.repo}/statuses/{pull.head_sha}"
        bare = self.bare(repo)
        commits = git_repos.count_commits(bare, pull.base_sha, pull.head_sha)
        additions, deletions, changed = git_repos.diff_stats(bare, pull.base_sha, pull.head_sha)
        comments = len(self.state.comments(issue.repo, issue.number))
        return {
            "url": a,
            "id": pull.id,
            "node_id": node_id("PullRequest", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue_api,
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self.s.user(issue.author),
            "body": issue.body,
            "created_at": ts(issue.created_at),
            "updated_at": ts(issue.updated_at),
            "closed_at": ts(issue.closed_at),
            "merged_at": ts(pull.merged_at),
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": [self.s.label(issue.repo, name) for name in issue.labels],
            "milestone": None,
            "draft": pull.draft,
            "commits_url": f"{a}/commits",
            "review_comments_url": f"{a}/comments",
            "review_comment_url": f"{self.api}/repos/{issue.repo}/pulls/comments{{/number}}",
            "comments_url": f"{issue_api}/comments",
            "statuses_url": statuses,
            "head": self._branch_side(repo, pull.head_ref, pull.head_sha),
            "base": self._branch_side(repo, pull.base_ref, pull.base_sha),
            "_links": {
                name: {"href": href}
                for name, href in {
                    "self": a,
                    "html": html,
                    "issue": issue_api,
                    "comments": f"{issue_api}/comments",
                    "review_comments": f"{a}/comments",
                    "review_comment": f"{self.api}/repos/{issue.repo}/pulls/comments{{/number}}",
                    "commits": f"{a}/commits",
                    "statuses": statuses,
                }.items()
            },
            "author_association": self.s.author_association(issue.repo, issue.author),
            "auto_merge": None,
            "active_lock_reason": None,
            "merged": pull.merged_at is not None,
            "mergeable": issue.state == "open" or None,
            "rebaseable": issue.state == "open" or None,
            "mergeable_state": "clean" if issue.state == "open" else "unknown",
            "merged_by": None,
            "comments": comments,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": commits,
            "additions": additions,
            "deletions": deletions,
            "changed_files": changed,
        }

    def _minimal_pull(self, issue: Issue, repo: Repo) -> dict[str, Any]:
        assert issue.pull is not None
        repo_min = {"id": repo.id, "url": f"{self.api}/repos/{repo.full_name}", "name": repo.name}
        return {
            "id": issue.pull.id,
            "number": issue.number,
            "url": f"{self.api}/repos/{repo.full_name}/pulls/{issue.number}",
            "head": {"ref": issue.pull.head_ref, "sha": issue.pull.head_sha, "repo": repo_min},
            "base": {"ref": issue.pull.base_ref, "sha": issue.pull.base_sha, "repo": repo_min},
        }

    def check_run(self, run: CheckRun) -> dict[str, Any]:
        """A CheckRun object; `pull_requests` lists the open PRs whose head is the run's commit."""
        repo = self.state.repo(run.repo)
        assert repo is not None
        a = f"{self.api}/repos/{run.repo}/check-runs/{run.id}"
        pulls = [self.live_pull(i) for i in self.state.issues(run.repo) if i.pull and i.state == "open"]
        return {
            "id": run.id,
            "head_sha": run.head_sha,
            "node_id": node_id("CheckRun", run.id),
            "external_id": run.external_id,
            "url": a,
            "html_url": f"{self.web}/{run.repo}/runs/{run.id}",
            "details_url": run.details_url,
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": ts(run.started_at),
            "completed_at": ts(run.completed_at),
            "output": {
                "title": run.title,
                "summary": run.summary,
                "text": run.text,
                "annotations_count": len(run.annotations),
                "annotations_url": f"{a}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": run.check_suite_id},
            "app": self.s.app(),
            "pull_requests": [
                self._minimal_pull(p, repo)
                for p in pulls
                if p.pull is not None and p.pull.head_sha == run.head_sha
            ],
            "actions": [dict(action) for action in run.actions],
        }

    def annotation(self, run: CheckRun, annotation: dict[str, Any]) -> dict[str, Any]:
        """A CheckAnnotation object."""
        return {
            "path": annotation["path"],
            "start_line": annotation["start_line"],
            "end_line": annotation["end_line"],
            "start_column": annotation.get("start_column"),
            "end_column": annotation.get("end_column"),
            "annotation_level": annotation["annotation_level"],
            "title": annotation.get("title"),
            "message": annotation["message"],
            "raw_details": annotation.get("raw_details"),
            "blob_href": f"{self.web}/{run.repo}/blob/{run.head_sha}/{annotation['path']}",
        }

    # contents and refs
    def content_entry(
        self, repo: Repo, ref: str, entry: git_repos.TreeEntry | git_repos.Blob
    ) -> dict[str, Any]:
        """One file or directory entry of the contents API (without `content`)."""
        is_blob = isinstance(entry, git_repos.Blob)
        type_ = "file" if is_blob else entry.type  # type: ignore[union-attr]
        size = len(entry.data) if is_blob else entry.size  # type: ignore[union-attr]
        self_url = f"{self.api}/repos/{repo.full_name}/contents/{entry.path}?ref={ref}"
        kind = "trees" if type_ == "dir" else "blobs"
        git_url = f"{self.api}/repos/{repo.full_name}/git/{kind}/{entry.sha}"
        html = f"{self.web}/{repo.full_name}/{'tree' if type_ == 'dir' else 'blob'}/{ref}/{entry.path}"
        download = f"{self.web}/{repo.full_name}/raw/{ref}/{entry.path}" if type_ == "file" else None
        return {
            "type": type_,
            "size": size,
            "name": entry.path.rsplit("/", 1)[-1],
            "path": entry.path,
            "sha": entry.sha,
            "url": self_url,
            "git_url": git_url,
            "html_url": html,
            "download_url": download,
            "_links": {"self": self_url, "git": git_url, "html": html},
        }

    def content_file(self, repo: Repo, ref: str, blob: git_repos.Blob) -> dict[str, Any]:
        """A ContentFile object with base64 content wrapped at 60 columns, as GitHub sends it."""
        encoded = base64.b64encode(blob.data).decode()
        wrapped = "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
        return {**self.content_entry(repo, ref, blob), "content": wrapped, "encoding": "base64"}

    def git_ref(self, repo: Repo, ref: str, sha: str) -> dict[str, Any]:
        """A GitRef object for ``refs/heads/<branch>``."""
        return {
            "ref": ref,
            "node_id": node_id("Ref", zlib.crc32(f"{repo.full_name}:{ref}".encode())),
            "url": f"{self.api}/repos/{repo.full_name}/git/{ref}",
            "object": {
                "type": "commit",
                "sha": sha,
                "url": f"{self.api}/repos/{repo.full_name}/git/commits/{sha}",
            },
        }

    def commit(self, repo: Repo, sha: str) -> dict[str, Any]:
        """A Commit object read from git."""
        info = git_repos.commit_info(self.bare(repo), sha)
        a = f"{self.api}/repos/{repo.full_name}"

        def person(name: str, email: str, date: str) -> dict[str, str]:
            return {"name": name, "email": email, "date": date.replace("+00:00", "Z")}

        return {
            "url": f"{a}/commits/{sha}",
            "sha": sha,
            "node_id": node_id("Commit", int(sha[:7], 16)),
            "html_url": f"{self.web}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{a}/commits/{sha}/comments",
            "commit": {
                "url": f"{a}/git/commits/{sha}",
                "author": person(info.author_name, info.author_email, info.author_date),
                "committer": person(info.committer_name, info.committer_email, info.committer_date),
                "message": info.message,
                "comment_count": 0,
                "tree": {"sha": info.tree, "url": f"{a}/git/trees/{info.tree}"},
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "author": None,
            "committer": None,
            "parents": [
                {"sha": p, "url": f"{a}/commits/{p}", "html_url": f"{self.web}/{repo.full_name}/commit/{p}"}
                for p in info.parents
            ],
        }

    def branch(self, repo: Repo, name: str, sha: str) -> dict[str, Any]:
        """A BranchWithProtection object (forge branches are never protected)."""
        a = f"{self.api}/repos/{repo.full_name}/branches/{name}"
        return {
            "name": name,
            "commit": self.commit(repo, sha),
            "_links": {"self": a, "html": f"{self.web}/{repo.full_name}/tree/{name}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
            },
            "protection_url": f"{a}/protection",
        }

    def short_branch(self, repo: Repo, name: str, sha: str) -> dict[str, Any]:
        """A ShortBranch object for branch listings."""
        return {
            "name": name,
            "commit": {"sha": sha, "url": f"{self.api}/repos/{repo.full_name}/commits/{sha}"},
            "protected": False,
        }
