"""Reporter against the forge: GitHub's size limits, annotation batches, redaction, PR reuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarity.redaction import redact
from github_app.annotations import Annotation
from github_app.client import GitHubApp
from github_app.reporting import CHECK_TEXT_LIMIT, Reporter, fit
from runner.workspace import Workspace
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"


@pytest.fixture
def reporter(forge: ForgeHandle) -> Reporter:
    forge.create_repo(REPO)
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url)
    return Reporter(app.client(app.installation_id_for(REPO)), REPO)


def head_sha(reporter: Reporter) -> str:
    return reporter.gh.rest.repos.get_branch("acme", "widgets", "main").parsed_data.commit.sha


def check_run(forge: ForgeHandle, run_id: int) -> dict:
    return next(r for r in forge.admin("GET", "/state")[1]["check_runs"] if r["id"] == run_id)


def test_text_over_the_limit_is_cut_cleanly_in_bytes(reporter: Reporter, forge: ForgeHandle) -> None:
    run_id = reporter.start_check(head_sha(reporter), "Clarity: 1 Big", "http://x/e/1", "e:1", "starting")
    huge = "✓ line of output\n" * 5000  # 85,000 characters, more bytes
    reporter.finish_check(run_id, "success", "done", huge, huge)
    stored = check_run(forge, run_id)
    for field in ("summary", "text"):
        assert len(stored[field].encode()) <= CHECK_TEXT_LIMIT
        assert stored[field].endswith("… (truncated)")
        assert stored[field].startswith("✓ line of output\n")


def test_fit_never_splits_a_character() -> None:
    cut = fit("é" * 40000, 65535)
    assert len(cut.encode()) <= 65535 and "\ufffd" not in cut


def test_120_annotations_arrive_in_three_requests(reporter: Reporter, forge: ForgeHandle) -> None:
    run_id = reporter.start_check(head_sha(reporter), "Clarity: 2 Lint", "http://x/e/1", "e:2", "starting")
    forge.admin("DELETE", "/calls")
    notes = [Annotation("calc.py", n, f"E{n} something") for n in range(1, 121)]
    reporter.finish_check(run_id, "failure", "lint failed", "see annotations", annotations=notes)
    patches = forge.calls(method="PATCH", path=f"/check-runs/{run_id}")
    assert [len(c["request"]["output"]["annotations"]) for c in patches] == [50, 50, 20]
    stored = check_run(forge, run_id)
    assert len(stored["annotations"]) == 120 and stored["conclusion"] == "failure"


def test_secrets_never_reach_check_runs_or_comments(reporter: Reporter, forge: ForgeHandle) -> None:
    redact.add("hunter2-very-secret")
    run_id = reporter.start_check(head_sha(reporter), "Clarity: 3", "http://x", "e:3", "token ghs_" + "a" * 36)
    reporter.finish_check(run_id, "failure", "t", "hunter2-very-secret", "x hunter2-very-secret",
                          [Annotation("a.py", 1, "leak hunter2-very-secret")])
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    reporter.comment(1, "the secret is hunter2-very-secret")
    dump = str(forge.admin("GET", "/state")[1]) + str(forge.calls())
    assert "hunter2-very-secret" not in dump and "ghs_aaaa" not in dump


SECRET = "acme/secret"


def without_drafts(forge: ForgeHandle, tmp_path: Path) -> Reporter:
    """A private repository of a Free-plan owner (GitHub refuses drafts there) with a branch to propose."""
    forge.create_repo(SECRET, private=True, owner_plan="free")
    app = GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url)
    installation = app.installation_id_for(SECRET)
    ws = Workspace(tmp_path / "ws", app.clone_url(installation, SECRET), lambda: app.installation_token(installation))
    ws.sync("clarity/issue-1", "main")
    ws.write("done.txt", b"done\n")
    ws.commit("clarity: 1 Task")
    ws.push("clarity/issue-1")
    return Reporter(app.client(installation), SECRET)


def test_where_drafts_are_refused_the_pull_opens_ready_and_is_never_toggled(
        forge: ForgeHandle, tmp_path: Path) -> None:
    reporter = without_drafts(forge, tmp_path)
    opened = reporter.ensure_pull("clarity/issue-1", "main", "Clarity: tasks", "first", draft=True)
    assert opened.draft is False and reporter.drafts is False
    created = forge.calls(method="POST", path=f"/repos/{SECRET}/pulls")
    assert [(c["request"]["draft"], c["status"]) for c in created] == [(True, 422), (False, 201)]
    refreshed = reporter.refresh_pull(opened.number, "clarity/issue-1", "second", draft=True)
    assert refreshed is not None and refreshed.draft is False
    assert not forge.calls(path="graphql")


def test_a_draft_toggle_refused_by_graphql_leaves_the_pull_ready_and_is_noted(
        forge: ForgeHandle, tmp_path: Path) -> None:
    reporter = without_drafts(forge, tmp_path)
    opened = reporter.ensure_pull("clarity/issue-1", "main", "Clarity: tasks", "first", draft=False)
    forgetful = Reporter(reporter.gh, SECRET)  # a step that did not know: it asks, and learns
    refreshed = forgetful.refresh_pull(opened.number, "clarity/issue-1", "second", draft=True)
    assert refreshed is not None and refreshed.draft is False and forgetful.drafts is False
    assert len(forge.calls(path="graphql")) == 1
