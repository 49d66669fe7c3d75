"""Gate phases and setup: the config forms, and what blocks (real sandbox runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarity import repoconfig
from jobs import gates
from runner.allowlist import Allowlist
from runner.checks import CheckResult
from runner.sandbox import Limits, LocalSandbox

LIMITS = Limits(timeout=20)


def test_gates_list_form_still_means_post_task() -> None:
    config = repoconfig.parse("gates: [ruff check ., pytest -q]")
    assert (config.pre_gates, config.gates, config.post_execution_gates) == ((), ("ruff check .", "pytest -q"), ())


def test_gates_by_phase() -> None:
    config = repoconfig.parse("gates:\n  pre: [make lint]\n  post_task: pytest -q\n  post_execution: [make e2e]\n")
    assert (config.pre_gates, config.gates, config.post_execution_gates) == (
        ("make lint",), ("pytest -q",), ("make e2e",))


@pytest.mark.parametrize(("text", "message"), [
    ("gates: {during: [x]}", "`gates.during` is not a phase"),
    ("gates: {pre: {a: 1}}", "`gates.pre` must be a list of strings"),
    ("allowed_commands: {a: 1}", "`allowed_commands` must be a list of strings"),
    ("check_timeout: soon", "`check_timeout` must be a duration"),
])
def test_bad_gate_and_allowlist_config_says_why(text: str, message: str) -> None:
    with pytest.raises(repoconfig.ConfigError) as caught:
        repoconfig.parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(("results", "reason"), [
    ((), None),
    ((CheckResult("ruff check .", "command", True, 0, "", 0.1),), None),
    ((CheckResult("ruff check .", "command", False, 1, "E501 line too long", 0.1),),
     "pre gate `ruff check .` failed (exit 1)\n```\nE501 line too long\n```"),
    ((CheckResult("file a", "file", False, None, "a does not exist", 0.0),
      CheckResult("false", "command", False, 1, "", 0.0)),
     "pre gate `file a` failed (and 1 more gate(s))\n```\na does not exist\n```"),
])
def test_failure_reason_names_the_first_failing_gate(results: tuple[CheckResult, ...], reason: str | None) -> None:
    assert gates.failure("pre", results) == reason


def test_run_gates_runs_them_all_and_blocks_on_any(tmp_path: Path) -> None:
    results, blocked = gates.run_gates("post_execution", ["false", "touch after", "file after"], LocalSandbox(),
                                       tmp_path, LIMITS, Allowlist(), None)
    assert [r.passed for r in results] == [False, True, True]
    assert blocked == "post_execution gate `false` failed (exit 1)"


def test_setup_runs_in_order_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    said: list[str] = []
    failed = gates.before_task(["echo one > order", "echo oops >&2; exit 2", "echo three >> order"],
                               LocalSandbox(), tmp_path, ["true"], LIMITS, Allowlist(), said.append)
    assert failed == "setup command `echo oops >&2; exit 2` failed (exit 2)\n```\noops\n```"
    assert (tmp_path / "order").read_text() == "one\n"
    assert said == ["setup: 3 command(s)"]
    assert gates.before_task(["touch ok"], LocalSandbox(), tmp_path, ["true"], LIMITS, Allowlist(), said.append) is None
    assert (tmp_path / "ok").exists()


def test_a_refused_check_blocks_before_setup_runs(tmp_path: Path) -> None:
    failed = gates.before_task(["touch setup-ran"], LocalSandbox(), tmp_path, ["curl -s x"], LIMITS,
                               Allowlist(("touch",)), lambda line: None)
    assert failed is not None and "`curl` is not allowed by CLARITY_COMMAND_ALLOWLIST" in failed
    assert not (tmp_path / "setup-ran").exists()
