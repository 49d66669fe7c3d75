"""Acceptance checks: parsed as data, run for real in the local sandbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runner.checks import (
    OUTPUT_CHARS,
    CheckError,
    CheckResult,
    CommandCheck,
    FileCheck,
    RegexCheck,
    parse_check,
    run_checks,
)
from runner.sandbox import Limits, LocalSandbox

LIMITS = Limits(timeout=20)


@pytest.fixture
def sandbox() -> LocalSandbox:
    return LocalSandbox()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("pytest -q tests/x.py", CommandCheck("pytest -q tests/x.py", "pytest -q tests/x.py")),
        ("  ruff check .  ", CommandCheck("ruff check .", "ruff check .")),
        (
            "file .github/workflows/ci.yml",
            FileCheck("file .github/workflows/ci.yml", ".github/workflows/ci.yml"),
        ),
        ("file 'docs/my notes.md'", FileCheck("file 'docs/my notes.md'", "docs/my notes.md")),
        (
            "regex pyproject.toml /^version = /m",
            RegexCheck("regex pyproject.toml /^version = /m", "pyproject.toml", "^version = ", re.MULTILINE),
        ),
        (
            "regex README.md /hello world/",
            RegexCheck("regex README.md /hello world/", "README.md", "hello world"),
        ),
        ("filecheck x", CommandCheck("filecheck x", "filecheck x")),
    ],
)
def test_parse_check_table(spec: str, expected: object) -> None:
    assert parse_check(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty check"),
        ("file", "expected `file <path>`"),
        ("file a b", "expected `file <path>`"),
        ("file ../secrets.txt", "path `../secrets.txt` must stay inside the repository"),
        ("file /etc/passwd", "path `/etc/passwd` must stay inside the repository"),
        ("file docs/../../x", "must stay inside the repository"),
        ("regex README.md", "expected `regex <path> /<pattern>/`"),
        ("regex README.md hello", "the pattern must be written between slashes"),
        ("regex README.md /(unclosed/", "invalid pattern"),
        ("regex ../x /a/", "must stay inside the repository"),
    ],
)
def test_bad_checks_say_why(spec: str, message: str) -> None:
    with pytest.raises(CheckError) as caught:
        parse_check(spec)
    assert message in str(caught.value)


def test_passing_and_failing_commands(sandbox: LocalSandbox, tmp_path: Path) -> None:
    ok, bad = run_checks(["echo fine", "echo broken >&2; exit 4"], sandbox, tmp_path, {}, LIMITS)
    assert (ok.name, ok.kind, ok.passed, ok.exit_code, ok.output) == ("echo fine", "command", True, 0, "fine")
    assert (bad.passed, bad.exit_code, bad.output) == (False, 4, "broken")
    assert bad.duration >= 0


def test_commands_run_in_the_workdir_with_the_given_env(sandbox: LocalSandbox, tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("here")
    [result] = run_checks(
        ['test -f marker && test "$CLARITY_TASK_ID" = 1.2'],
        sandbox,
        tmp_path,
        {"CLARITY_TASK_ID": "1.2"},
        LIMITS,
    )
    assert result.passed, result.output


def test_every_check_runs_even_after_a_failure(sandbox: LocalSandbox, tmp_path: Path) -> None:
    specs = [
        "false",
        "file missing.txt",
        "touch ran-after-failures",
        "file ran-after-failures",
        "bad-regex x /(/",
    ]
    results = run_checks(specs, sandbox, tmp_path, {}, LIMITS)
    assert [(r.name, r.kind, r.passed) for r in results] == [
        ("false", "command", False),
        ("file missing.txt", "file", False),
        ("touch ran-after-failures", "command", True),
        ("file ran-after-failures", "file", True),
        ("bad-regex x /(/", "command", False),
    ]


def test_invalid_check_becomes_a_failed_result_with_the_reason(sandbox: LocalSandbox, tmp_path: Path) -> None:
    [invalid, after] = run_checks(["file ../../etc/passwd", "true"], sandbox, tmp_path, {}, LIMITS)
    assert invalid == CheckResult(
        "file ../../etc/passwd",
        "invalid",
        False,
        None,
        "check `file ../../etc/passwd`: path `../../etc/passwd` must stay inside the repository",
        0.0,
    )
    assert after.passed


def test_file_check_exists_and_missing(sandbox: LocalSandbox, tmp_path: Path) -> None:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    present, missing = run_checks(
        ["file .github/workflows/ci.yml", "file nope.yml"], sandbox, tmp_path, {}, LIMITS
    )
    assert (present.passed, present.exit_code, present.output) == (
        True,
        None,
        ".github/workflows/ci.yml exists",
    )
    assert (missing.passed, missing.output) == (False, "nope.yml does not exist")


def test_file_check_through_a_symlink_out_of_the_workdir_fails(sandbox: LocalSandbox, tmp_path: Path) -> None:
    workdir = tmp_path / "repo"
    workdir.mkdir()
    (tmp_path / "outside.txt").write_text("secret")
    (workdir / "link.txt").symlink_to(tmp_path / "outside.txt")
    [result] = run_checks(["file link.txt"], sandbox, workdir, {}, LIMITS)
    assert (result.passed, result.output) == (False, "link.txt points outside the repository")


def test_regex_check(sandbox: LocalSandbox, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1.2"\n')
    hit, miss, absent = run_checks(
        [
            'regex pyproject.toml /^version = "1\\.2"$/m',
            "regex pyproject.toml /^name/m",
            "regex none.txt /x/",
        ],
        sandbox,
        tmp_path,
        {},
        LIMITS,
    )
    assert hit.passed and hit.kind == "regex"
    assert (miss.passed, miss.output) == (False, "pyproject.toml does not match /^name/")
    assert (absent.passed, absent.output) == (False, "none.txt does not exist")


def test_output_excerpt_is_capped_to_the_tail(sandbox: LocalSandbox, tmp_path: Path) -> None:
    script = "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; exit 1"
    [result] = run_checks([script], sandbox, tmp_path, {}, LIMITS)
    assert not result.passed
    assert len(result.output) <= OUTPUT_CHARS + len("[...]\n")
    assert result.output.endswith("line-1999")
    assert "line-0\n" not in result.output


def test_a_check_that_hangs_is_timed_out(sandbox: LocalSandbox, tmp_path: Path) -> None:
    [result] = run_checks(["sleep 30"], sandbox, tmp_path, {}, Limits(timeout=0.5))
    assert not result.passed and "[killed: timeout" in result.output
