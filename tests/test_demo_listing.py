"""The demo's listing and its printed commands, as pure functions: words whole, one line per check, no secrets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devstack.demo_recipes import Running, clarity, python, recipes
from devstack.demo_report import clip, comment_lines, latest_per_name


@pytest.mark.parametrize(("line", "width", "shown"), [
    ("short enough", 20, "short enough"),
    ("Starting execution on branch clarity/issue-1", 40, "Starting execution on branch…"),
    ("one two three", 7, "one…"),  # "one two…" would be 8 wide
    ("one two three", 8, "one two…"),  # a space just past the limit still ends "two"
    ("one  two", 7, "one…"),
    ("trailing   ", 8, "trailing"),
    ("http://127.0.0.1:1/a-very-long-url-without-spaces", 10, "http://127.0.0.1:1/a-very-long-url-without-spaces"),
])
def test_a_long_line_is_cut_at_a_word_with_an_ellipsis_never_inside_one(line: str, width: int, shown: str) -> None:
    assert clip(line, width) == shown
    assert len(shown) <= width or " " not in line.strip()


def test_comments_read_as_github_shows_them() -> None:
    body = ("Starting execution [`3ff6c2a0cbb7`](http://127.0.0.1:1/executions/3ff6c2a0cbb7) on branch "
            "`clarity/issue-1`, until 1.3.\n<!-- clarity:op:bb98f0dc0d7d4fec -->\n")
    assert comment_lines(body) == ["Starting execution `3ff6c2a0cbb7` on branch `clarity/issue-1`, until 1.3."]
    assert comment_lines("\n".join(f"line {n}" for n in range(10))) == [
        "line 0", "line 1", "line 2", "line 3", "line 4", "… (5 more lines)"]


def test_superseded_check_runs_collapse_into_the_newest_of_each_name() -> None:
    runs = [
        {"id": 1, "name": "Clarity: run until 1.3", "title": "Continued on a newer commit"},
        {"id": 2, "name": "Clarity: 1.1 Create"},
        {"id": 3, "name": "Clarity: run until 1.3", "title": "Continued on a newer commit"},
        {"id": 4, "name": "Clarity: 1.2 Test"},
        {"id": 5, "name": "Clarity: run until 1.3", "title": "paused: 2/2 tasks done"},
    ]
    assert [(run["id"], replaced) for run, replaced in latest_per_name(runs)] == [(5, 2), (2, 0), (4, 0)]


def _running(redis_url: str = "redis://127.0.0.1:6379/0") -> Running:
    return Running(web_url="http://127.0.0.1:5000", forge_url="http://127.0.0.1:5001", namespace="clarity-demo-x1",
                   redis_url=redis_url, repo="acme/greeting", installation=1000, execution="abc123")


def test_the_token_line_carries_the_environment_the_command_needs() -> None:
    token = next(line for line in recipes(_running()) if line.startswith("TOKEN=$("))
    assert "REDIS_URL=redis://127.0.0.1:6379/0 CLARITY_NAMESPACE=clarity-demo-x1 " in token
    assert token.endswith("tokens create --role team_member --installation 1000 --name demo)")


def test_a_redis_password_is_never_printed() -> None:
    lines = recipes(_running("redis://clarity-worker:s3cret@127.0.0.1:6379/0"))
    assert not any("s3cret" in line for line in lines)
    assert "it holds a password, so it is not printed here" in lines[0]


def test_commands_are_named_so_that_the_shell_finds_this_environments_copy(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    if not (Path(bin_dir) / "clarity").exists():
        pytest.skip("clarity is not installed next to this interpreter")
    assert clarity(path=bin_dir) == "clarity"  # the venv is on PATH: the bare name works
    assert clarity(path=str(tmp_path)) == str(Path(bin_dir) / "clarity")  # it is not: the full path
    assert python(path=str(tmp_path)) == sys.executable
