"""Writes to GitHub made once and one at a time: the reporter against a forge that fails after writing, the forge
as slow as github.com to see a push, and the installation's write lock.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import redis
from githubkit.exception import RequestFailed

from github_app.client import GitHubApp, RetryPolicy
from github_app.reporting import Reporter, check_owner
from github_app.write_lock import InstallationWriteLock
from runner.workspace import Workspace
from tests.conftest_forge import ForgeHandle

REPO = "acme/widgets"
BRANCH = "clarity/issue-1"


def app_of(forge: ForgeHandle, **options: object) -> GitHubApp:
    forge.create_repo(REPO)
    return GitHubApp(forge.app_id, forge.private_key_pem, forge.api_url, **options)  # type: ignore[arg-type]


@pytest.fixture
def reporter(forge: ForgeHandle) -> Reporter:
    app = app_of(forge, retry=RetryPolicy(base_delay=0.01))
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    return Reporter(app.client(app.installation_id_for(REPO)), REPO)


def pushed_branch(forge: ForgeHandle, tmp_path: Path) -> tuple[GitHubApp, int, str]:
    """REPO with BRANCH one commit ahead of main; (app, installation, the branch's sha)."""
    app = app_of(forge)
    installation = app.installation_id_for(REPO)
    ws = Workspace(tmp_path / "ws", app.clone_url(installation, REPO), lambda: app.installation_token(installation))
    ws.sync(BRANCH, "main")
    ws.write("done.txt", b"done\n")
    ws.commit("clarity: 1 Task")
    ws.push(BRANCH)
    return app, installation, ws.head_sha()


def fail(forge: ForgeHandle, path_regex: str, kind: str = "server_error_after_write", count: int = 1) -> None:
    status, answer = forge.admin("POST", "/faults", {"path_regex": path_regex, "method": "POST", "kind": kind,
                                                    "status": 502, "count": count})
    assert status == 201, answer


def state(forge: ForgeHandle, table: str) -> list[dict[str, object]]:
    return forge.admin("GET", "/state")[1][table]  # type: ignore[no-any-return]


# -- made once ------------------------------------------------------------------------------------
def test_a_comment_github_made_before_answering_502_is_found_and_not_made_again(
        reporter: Reporter, forge: ForgeHandle) -> None:
    fail(forge, r"/issues/1/comments$")
    url = reporter.comment(1, "the closing comment")
    [made] = [c for c in state(forge, "comments") if "the closing comment" in str(c["body"])]
    assert url.endswith(f"#issuecomment-{made['id']}")
    assert "<!-- clarity:op:" in str(made["body"])  # the hidden marker it was found by
    assert [c["status"] for c in forge.calls(method="POST", path="/issues/1/comments")] == [502]


def test_a_check_run_github_made_before_answering_502_is_found_by_its_own_external_id(
        reporter: Reporter, forge: ForgeHandle) -> None:
    sha = reporter.gh.rest.repos.get_branch("acme", "widgets", "main").parsed_data.commit.sha
    fail(forge, r"/check-runs$")
    run_id = reporter.start_check(sha, "Clarity: 1 Task", "http://x/e/1", "e1:1", "running")
    [run] = state(forge, "check_runs")
    assert run["id"] == run_id and check_owner(str(run["external_id"])) == "e1:1"
    assert str(run["external_id"]).startswith("e1:1#")
    assert reporter.running_checks(sha, "e1:1") == [run_id]  # recovery and the buttons read the owner part


def test_a_pull_request_github_made_before_answering_502_is_found_by_its_branch(
        forge: ForgeHandle, tmp_path: Path) -> None:
    app, installation, _ = pushed_branch(forge, tmp_path)
    reporter = Reporter(app.client(installation), REPO)
    fail(forge, r"/pulls$")
    opened = reporter.ensure_pull(BRANCH, "main", "Clarity: tasks", "body", draft=False)
    assert [i["number"] for i in state(forge, "issues") if i.get("pull")] == [opened.number]


def test_an_issue_github_made_before_answering_502_is_not_opened_twice(reporter: Reporter, forge: ForgeHandle) -> None:
    fail(forge, r"/repos/acme/widgets/issues$")
    number = reporter.open_issue("Clarity: tracking", "tasks for the API's execution")
    assert [i["number"] for i in state(forge, "issues") if i["title"] == "Clarity: tracking"] == [number]


def test_a_create_github_did_not_make_is_made_again_after_looking(reporter: Reporter, forge: ForgeHandle) -> None:
    fail(forge, r"/issues/1/comments$", kind="server_error")  # failed before writing
    reporter.comment(1, "made on the second try")
    assert len([c for c in state(forge, "comments") if "made on the second try" in str(c["body"])]) == 1
    assert [c["status"] for c in forge.calls(method="POST", path="/issues/1/comments")] == [502, 201]
    assert forge.calls(method="GET", path="/issues/1/comments")  # it looked before making it again


def test_a_create_that_keeps_failing_gives_up_after_three_tries(reporter: Reporter, forge: ForgeHandle) -> None:
    fail(forge, r"/issues/1/comments$", kind="server_error", count=10)
    with pytest.raises(RequestFailed) as failed:
        reporter.comment(1, "never made")
    assert failed.value.response.status_code == 502
    assert len(forge.calls(method="POST", path="/issues/1/comments")) == 3


# -- right after a push --------------------------------------------------------------------------
def test_the_forge_like_github_does_not_see_a_push_for_a_moment(forge: ForgeHandle, tmp_path: Path) -> None:
    assert forge.admin("PUT", "/push-visibility", {"seconds": 1.5})[0] == 200
    _, _, sha = pushed_branch(forge, tmp_path)
    gh = forge.installation_client(REPO, auto_retry=False)
    with pytest.raises(RequestFailed) as pull:
        gh.rest.pulls.create("acme", "widgets", title="t", head=BRANCH, base="main")
    with pytest.raises(RequestFailed) as run:
        gh.rest.checks.create("acme", "widgets", name="n", head_sha=sha)  # type: ignore[call-overload]
    assert pull.value.response.status_code == run.value.response.status_code == 422
    assert pull.value.response.raw_response.json()["errors"] == [
        {"resource": "PullRequest", "field": "head", "code": "invalid"}]
    assert run.value.response.raw_response.json()["message"] == f"No commit found for SHA: {sha}"
    time.sleep(1.6)
    assert gh.rest.pulls.create("acme", "widgets", title="t", head=BRANCH, base="main").parsed_data.number
    assert gh.rest.checks.create("acme", "widgets", name="n", head_sha=sha).parsed_data.id  # type: ignore[call-overload]


@pytest.mark.slow
def test_a_check_run_on_a_commit_github_does_not_see_yet_is_created_once_it_does(
        forge: ForgeHandle, tmp_path: Path) -> None:
    forge.admin("PUT", "/push-visibility", {"seconds": 1.5})
    app, installation, sha = pushed_branch(forge, tmp_path)
    started = time.monotonic()
    run_id = Reporter(app.client(installation), REPO).start_check(sha, "Clarity: 1", "http://x", "e:1", "s")
    assert time.monotonic() - started >= 1.0
    runs = forge.calls(method="POST", path="/repos/acme/widgets/check-runs")
    assert runs[0]["status"] == 422 and runs[0]["response"]["message"] == f"No commit found for SHA: {sha}"
    assert runs[-1]["status"] == 201 and [r["id"] for r in state(forge, "check_runs")] == [run_id]


# -- one write at a time -------------------------------------------------------------------------
def writers(locks: list[InstallationWriteLock], installation: int, rounds: int = 20) -> int:
    """Threads (two per lock: two processes of two threads) writing at once; the most inside at once."""
    inside, most, guard = 0, 0, threading.Lock()

    def write(lock: InstallationWriteLock) -> None:
        nonlocal inside, most
        for _ in range(rounds):
            with lock.hold(installation):
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=write, args=(lock,)) for lock in locks for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return most


def test_two_writers_of_one_installation_are_never_inside_a_write_at_once(
        redis_client: redis.Redis, namespace: str) -> None:
    # Two lock objects sharing Redis stand for two worker processes; each has two threads.
    assert writers([InstallationWriteLock(redis_client, namespace), InstallationWriteLock(redis_client, namespace)],
                   7) == 1
    assert not list(redis_client.scan_iter(f"{namespace}:github:writes:*", count=1000))  # released, not left to expire


def test_writers_of_two_installations_do_not_wait_for_each_other(redis_client: redis.Redis, namespace: str) -> None:
    lock = InstallationWriteLock(redis_client, namespace)
    done = threading.Event()

    def other_installation() -> None:
        with lock.hold(2):
            done.set()

    with lock.hold(1):
        threading.Thread(target=other_installation).start()
        assert done.wait(2)


@pytest.mark.slow
def test_without_redis_the_lock_falls_back_to_the_process_and_writing_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    gone = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)  # nothing listens there
    lock = InstallationWriteLock(gone, "t-gone")
    assert writers([lock], 7, rounds=5) == 1
    assert "serialising writes within this process only" in caplog.text


def test_a_work_horse_forked_while_a_thread_writes_is_not_stuck_behind_that_thread() -> None:
    lock = InstallationWriteLock(None, "t-fork")  # the process lock alone: what a fork copies
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with lock.hold(7):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    holding.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: the writing thread is not here, and neither is its hold
        done = threading.Event()
        threading.Thread(target=lambda: (lock.hold(7).__enter__(), done.set()), daemon=True).start()
        os._exit(0 if done.wait(2) else 1)
    release.set()
    thread.join()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_a_write_through_the_client_waits_for_the_lock_and_a_read_does_not(
        forge: ForgeHandle, redis_client: redis.Redis, namespace: str) -> None:
    lock = InstallationWriteLock(redis_client, namespace)
    app = app_of(forge, writes=lock)
    installation = app.installation_id_for(REPO)
    gh = app.client(installation)
    forge.admin("POST", f"/repos/{REPO}/issues", {"title": "one", "user": "acme"})
    other = InstallationWriteLock(redis_client, namespace)  # another process, writing for the same installation
    with other.hold(installation):
        writer = threading.Thread(target=lambda: Reporter(gh, REPO).comment(1, "after the other write"))
        writer.start()
        assert gh.rest.repos.get("acme", "widgets").parsed_data.name == "widgets"  # reads go on
        time.sleep(0.3)
        assert not forge.calls(method="POST", path="/issues/1/comments")  # the write waits its turn
    writer.join(10)
    assert [c["status"] for c in forge.calls(method="POST", path="/issues/1/comments")] == [201]
