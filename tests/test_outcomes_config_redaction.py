"""task_outcomes.md sections, .github/clarity.yml validation and the redactor."""

from __future__ import annotations

import pytest

from clarity import outcomes, repoconfig
from clarity.outcomes import CheckLine, Outcome
from clarity.redaction import MASK, Redactor

OUTCOME = Outcome("1.2", "Add CI workflow", "aider", 2, 12.34, (CheckLine("pytest -q", True, 3.2),),
                  base_commit="abc123", execution_id="e1", finished_at=0)


def test_outcome_section_has_every_fact() -> None:
    text = outcomes.render(OUTCOME)
    for fact in ("## 1.2 Add CI workflow", "Tool: aider", "Attempts: 2", "Duration: 12.3s", "abc123",
                 "✅ `pytest -q` (3.2s)", "Execution: e1"):
        assert fact in text
    assert "Usage" not in text  # the agent reported none


def test_outcome_section_has_the_usage_the_agent_reported() -> None:
    text = outcomes.render(Outcome("1", "x", "claude", 1, 1.0, tokens=12345, cost_usd=0.00822))
    assert "- Usage: 12,345 tokens, $0.0082 (as the agent reported it)\n" in text


def test_append_keeps_existing_bytes_and_line_endings() -> None:
    existing = b"# Task outcomes\r\n\r\n## 1.1 Old\r\n- Tool: x\r\n"
    result = outcomes.append(existing, OUTCOME)
    assert result.startswith(existing)
    assert b"\n" not in result.replace(b"\r\n", b"")
    assert outcomes.append(None, OUTCOME).startswith(b"# Task outcomes")


def test_config_defaults_without_file() -> None:
    config = repoconfig.parse(None)
    assert (config.tasks_file, config.outcomes_file, config.on_failure, config.gates) == (
        "tasks_list.md", "task_outcomes.md", "stop", ())


def test_config_reads_the_documented_keys() -> None:
    config = repoconfig.parse("""
tasks_file: docs/tasks.md
gates: [ruff check ., pytest -q]
agents: {default: aider, fallback: [claude], command: "python3 a.py {prompt_file}"}
retries: 2
on_failure: continue
limits: {timeout: 15m}
managers: [grace]
""")
    assert config.tasks_file == "docs/tasks.md"
    assert config.gates == ("ruff check .", "pytest -q")
    assert (config.agent_default, config.agent_fallback, config.retries) == ("aider", ("claude",), 2)
    assert config.timeout == 900 and config.on_failure == "continue" and config.managers == ("grace",)


@pytest.mark.parametrize(("text", "message"), [
    ("on_failure: maybe", "`on_failure` must be `stop` or `continue`, got 'maybe'"),
    ("retries: many", "`retries` must be a whole number from 0 to 10, got 'many'"),
    ("gates: {a: 1}", "`gates` must be a list of strings"),
    ("limits: {timeout: soon}", "`limits.timeout` must be a duration like 90s, 15m or 1h, got 'soon'"),
    ("tasks_file: ../../etc/passwd", "`tasks_file` must be a path inside the repository"),
    ("agents: [aider]", "`agents` must be a mapping"),
    ("gates: [unclosed", "line 1: not valid YAML"),
    ("- just a list", "expected a mapping of settings at the top level"),
])
def test_config_errors_quote_the_offending_key(text: str, message: str) -> None:
    with pytest.raises(repoconfig.ConfigError, match=".github/clarity.yml"):
        repoconfig.parse(text)
    with pytest.raises(repoconfig.ConfigError) as info:
        repoconfig.parse(text)
    assert message in str(info.value)


def test_redactor_masks_known_values_and_token_shapes(private_key_pem: str) -> None:
    redact = Redactor(["hook-secret-123"])
    redact.add(private_key_pem)
    text = (f"secret hook-secret-123 token ghs_{'a' * 36} pat github_pat_{'b' * 30} key sk-{'c' * 20} "
            f"jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMiJ9.c2lnbmF0dXJlLWJ5dGVz\n{private_key_pem}"
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hz")
    cleaned = redact(text)
    for leaked in ("hook-secret-123", "ghs_a", "github_pat_b", "sk-ccc", "eyJhbGci", "PRIVATE KEY",
                   private_key_pem.splitlines()[1], "eC1hY2Nlc3MtdG9rZW46Z2hz"):
        assert leaked not in cleaned
    assert cleaned.count(MASK) >= 7


def test_redactor_ignores_tiny_values() -> None:
    redact = Redactor(["a", ""])
    assert redact("a cat") == "a cat"


def test_log_records_are_redacted_for_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from clarity.redaction import install_logging, redact

    install_logging()
    redact.add("planted-secret-value-42")
    caplog.set_level(logging.INFO)
    logging.getLogger("clarity.test").info("value=%s token=%s", "planted-secret-value-42", "ghs_" + "z" * 36)
    assert "planted-secret-value-42" not in caplog.text and "ghs_zzz" not in caplog.text
    assert "value=[REDACTED]" in caplog.text


def test_a_traceback_is_redacted_before_the_first_handler_formats_it() -> None:
    """A handler added before ours (pytest's, a library's) formats the exception itself: it must see it clean."""
    import io
    import logging

    from clarity.redaction import install_logging, redact

    install_logging()
    redact.add("planted-traceback-secret-7")
    seen = io.StringIO()
    first = logging.StreamHandler(seen)
    root = logging.getLogger()
    root.handlers.insert(0, first)
    try:
        try:
            raise RuntimeError("failed while holding planted-traceback-secret-7")
        except RuntimeError:
            logging.getLogger("clarity.test").exception("it broke")
            logging.getLogger("clarity.test").exception("again", stack_info=True)
    finally:
        root.removeHandler(first)
    assert "planted-traceback-secret-7" not in seen.getvalue()
    assert seen.getvalue().count("RuntimeError: failed while holding [REDACTED]") == 2


def test_pr_body_rows_carry_commit_checks_and_artifacts() -> None:
    done = [outcomes.DoneTask("1.1", "Skeleton", "a" * 40, 2, 3, 3, "http://d/executions/e/artifacts/1.1",
                              "https://github.com/o/r/commit/" + "a" * 40),
            outcomes.DoneTask("1.2", "Notes", "b" * 40, 1)]
    body = outcomes.pull_body(7, False, "until 1.2", "http://d/executions/e", done, "running")
    assert ("| 1.1 | Skeleton | [aaaaaaaaaa](https://github.com/o/r/commit/" + "a" * 40 + ") | 2 | 3/3 passed "
            "| [artifacts](http://d/executions/e/artifacts/1.1) |") in body
    assert "| 1.2 | Notes | bbbbbbbbbb | 1 | – |  |" in body and "Refs #7" in body
    templated = outcomes.pull_body(7, False, "until 1.2", "http://d", done[:1], "paused", "Done:\n{tasks}\n")
    assert templated.startswith("Done:\n| task | title | commit | attempts | checks | evidence |")
