"""Tests for the `/clarity` comment command grammar (github_app.commands)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from github_app.commands import (
    GRAMMAR,
    MAX_BODY_CHARS,
    MAX_COMMANDS,
    TASK_ID,
    Command,
    OptionSpec,
    Reply,
    Verb,
    VerbSpec,
    help_text,
    parse,
)
from github_app.roles import Role


def only_item(body: str) -> Command | Reply:
    """The single item parsed from a body that must hold exactly one."""
    items = parse(body)
    assert len(items) == 1, items
    return items[0]


def problem_of(body: str) -> str | None:
    """The problem of the single Reply parsed from `body`."""
    item = only_item(body)
    assert isinstance(item, Reply), item
    return item.problem


def line_count(body: str) -> int:
    """How many lines a body has, counting LF, CRLF and CR like the parser does."""
    return len(re.split(r"\r\n|\r|\n", body))


# --- accepted commands -------------------------------------------------------------------------

ACCEPTED: list[tuple[str, Verb, dict[str, Any]]] = [
    ("/clarity run", Verb.RUN, {}),
    ("/clarity run until 1.2", Verb.RUN, {"until": "1.2"}),
    ("/clarity run to 2.3", Verb.RUN, {"until": "2.3"}),
    ("/clarity run stop after 2.3.1.4", Verb.RUN, {"until": "2.3.1.4"}),
    ("/clarity run only 4", Verb.RUN, {"only": "4"}),
    ("/clarity run tool aider", Verb.RUN, {"tool": "aider"}),
    ("/clarity run tool gpt-4.1_mini", Verb.RUN, {"tool": "gpt-4.1_mini"}),
    ("/clarity run priority 1", Verb.RUN, {"priority": 1}),
    ("/clarity run priority 10", Verb.RUN, {"priority": 10}),
    ("/clarity run priority 07", Verb.RUN, {"priority": 7}),
    (
        "/clarity run until 2.3 tool claude priority 3",
        Verb.RUN,
        {"until": "2.3", "tool": "claude", "priority": 3},
    ),
    (
        "/clarity run priority 3 tool claude stop after 2.3",
        Verb.RUN,
        {"until": "2.3", "tool": "claude", "priority": 3},
    ),
    (
        "/clarity run tool ollama only 1.1 priority 9",
        Verb.RUN,
        {"only": "1.1", "tool": "ollama", "priority": 9},
    ),
    ("/Clarity RUN Until 1.2", Verb.RUN, {"until": "1.2"}),
    ("/CLARITY Run STOP AFTER 5 TOOL Aider", Verb.RUN, {"until": "5", "tool": "aider"}),
    ("/clarity run until 2.0", Verb.RUN, {"until": "2"}),
    ("/clarity run until 3.", Verb.RUN, {"until": "3"}),
    ("/clarity run until 2.3.", Verb.RUN, {"until": "2.3"}),
    ("/clarity run until 2.0.", Verb.RUN, {"until": "2"}),
    ("/clarity run until 1. tool aider", Verb.RUN, {"until": "1", "tool": "aider"}),
    ("/clarity run until 2.0.1", Verb.RUN, {"until": "2.0.1"}),
    ("/clarity run until 02.03", Verb.RUN, {"until": "2.3"}),
    ("/clarity run until 2.00", Verb.RUN, {"until": "2"}),
    ("/clarity run until 0", Verb.RUN, {"until": "0"}),
    ("/clarity run tool aider.", Verb.RUN, {"tool": "aider"}),
    ("/clarity run priority 5.", Verb.RUN, {"priority": 5}),
    ("   /clarity run until 1", Verb.RUN, {"until": "1"}),
    ("  /clarity   run\tuntil  1  ", Verb.RUN, {"until": "1"}),
    ("/clarity\u00a0run until 1", Verb.RUN, {"until": "1"}),
    ("/clarity stop-point 2.3", Verb.STOP_POINT, {"task_id": "2.3"}),
    ("/clarity stop_point 2.3", Verb.STOP_POINT, {"task_id": "2.3"}),
    ("/clarity stoppoint 2.3", Verb.STOP_POINT, {"task_id": "2.3"}),
    ("/clarity stop point 2.3", Verb.STOP_POINT, {"task_id": "2.3"}),
    ("/clarity stop after 2.3.1.4", Verb.STOP_POINT, {"task_id": "2.3.1.4"}),
    ("/Clarity Stop-Point 7.0", Verb.STOP_POINT, {"task_id": "7"}),
    ("/clarity pause", Verb.PAUSE, {}),
    ("/clarity pause.", Verb.PAUSE, {}),
    ("/clarity resume", Verb.RESUME, {}),
    ("/clarity stop", Verb.STOP, {}),
    ("/CLARITY STOP", Verb.STOP, {}),
    ("/clarity retry", Verb.RETRY, {}),
    ("/clarity retry 1.2", Verb.RETRY, {"task_id": "1.2"}),
    ("/clarity status", Verb.STATUS, {}),
    ("/clarity help", Verb.HELP, {}),
    ("/clarity", Verb.HELP, {}),
    ("/Clarity", Verb.HELP, {}),
    ("/clarity.", Verb.HELP, {}),
    ("/clarity run until 1.2 \u2028", Verb.RUN, {"until": "1.2"}),
]


@pytest.mark.parametrize(("body", "verb", "fields"), ACCEPTED, ids=lambda v: repr(v))
def test_each_form_of_the_grammar_is_accepted(body: str, verb: Verb, fields: dict[str, Any]) -> None:
    assert parse(body) == [Command(verb, 1, body.strip(), **fields)]


def test_non_ascii_digits_are_not_task_ids() -> None:
    assert problem_of("/clarity run until ２") == (
        "`２` is not a task id; task ids are dotted numbers like `2.3.1.4`."
    )


def test_command_text_is_the_line_without_surrounding_whitespace_or_line_ending() -> None:
    [command] = parse("  /clarity run until 1.2  \r\n")
    assert isinstance(command, Command)
    assert command.text == "/clarity run until 1.2"


# --- which lines are commands --------------------------------------------------------------------

IGNORED = [
    "",
    "\n\n",
    "Thanks, looks good!",
    "please /clarity run until 1.2",
    "I typed `/clarity run` yesterday",
    "`/clarity run`",
    "**/clarity run**",
    "/claritybot run",
    "/clarity:run",
    "/clarity-run",
    "clarity run",
    "@clarity run",
    "> /clarity run",
    "  > /clarity run",
    "> > /clarity stop",
    ">> /clarity stop",
    "```\n/clarity run\n```",
    "~~~\n/clarity run\n~~~",
    "```python title='x'\n/clarity run\n```",
    "~~~ {.bash}\n/clarity run\n~~~",
    "   ```\n/clarity run\n   ```",
    "````\n```\n/clarity run\n````",
    "```\n/clarity run",
    "~~~~\n/clarity run\n~~~\n/clarity stop",
    "```\n/clarity run\n~~~\n/clarity stop",
    "```\n/clarity run\n``` not a close\n/clarity stop",
    "<!--\n/clarity run\n-->",
    "<!-- /clarity run -->",
    "<!-- hidden\n/clarity stop",
    "\u200b/clarity run",
    # Indented code (CommonMark: 4 columns, a tab reaches the next multiple of 4).
    "    /clarity run",
    "\t/clarity run",
    "  \t/clarity run",
    "text\n\n        /clarity run",
    "text\n    /clarity run",  # a paragraph's continuation: shown mid-sentence, not a command
    # <pre>, <details> and the other hiding elements, wherever the tag opens and in any case.
    "<pre>\n/clarity run\n</pre>",
    "<PRE class='x'>\n/clarity run",
    "<pre>/clarity run</pre>",
    "Look: <pre>\n/clarity run\n</pre>",
    "<details>\n/clarity run\n</details>",
    "<details><summary>log</summary>\n\n/clarity run\n\n</details>",
    "<details>\n<details>\n</details>\n/clarity run\n</details>",  # nested: the outer one still hides
    "<details open>\n/clarity stop",
    "<textarea>\n/clarity run\n</textarea>",
    "<script>\n/clarity run\n</script>",
    "<style>\n/clarity run\n</style>",
    "</details> /clarity run",
    # HTML comments opened anywhere in a line.
    "text <!-- note\n/clarity run\n-->",
    "text <!-- a --> more <!--\n/clarity run",
    "<!-- a -->/clarity run",
]


@pytest.mark.parametrize("body", IGNORED, ids=lambda v: repr(v))
def test_lines_that_are_not_commands_are_ignored(body: str) -> None:
    assert parse(body) == []


# (body, [(verb, line), ...])
LOCATED: list[tuple[str, list[tuple[Verb, int]]]] = [
    (
        "/clarity pause\n/clarity resume\n/clarity status",
        [(Verb.PAUSE, 1), (Verb.RESUME, 2), (Verb.STATUS, 3)],
    ),
    ("/clarity pause\r\n/clarity resume\r\n", [(Verb.PAUSE, 1), (Verb.RESUME, 2)]),
    ("/clarity pause\r/clarity resume", [(Verb.PAUSE, 1), (Verb.RESUME, 2)]),
    ("Hi!\n\n/clarity run until 1.2\nthanks", [(Verb.RUN, 3)]),
    ("```\n/clarity run\n```\n/clarity stop", [(Verb.STOP, 4)]),
    ("~~~\n/clarity run\n~~~\n/clarity stop", [(Verb.STOP, 4)]),
    ("```\r\n/clarity run\r\n```\r\n/clarity stop\r\n", [(Verb.STOP, 4)]),
    ("``` js\n/clarity run\n````\n/clarity stop", [(Verb.STOP, 4)]),
    ("  ~~~\n/clarity run\n   ~~~~~\n/clarity stop", [(Verb.STOP, 4)]),
    ("    ```\n/clarity stop", [(Verb.STOP, 2)]),  # four spaces: indented code, not a fence
    ("``` `x`\n/clarity stop", [(Verb.STOP, 2)]),  # backtick in the info string: not a fence
    ("> ```\n/clarity stop", [(Verb.STOP, 2)]),  # a fence inside a quote ends with the quote
    ("> quoted\n/clarity stop", [(Verb.STOP, 2)]),
    ("> > /clarity run\n> /clarity run\n/clarity status", [(Verb.STATUS, 3)]),
    ("<!--\n/clarity run\n-->\n/clarity stop", [(Verb.STOP, 4)]),
    ("```\n<!--\n```\n/clarity stop", [(Verb.STOP, 4)]),
    ("/clarity run until 1\n\n    /clarity stop", [(Verb.RUN, 1)]),  # indented code
    ("   /clarity run until 1\n    /clarity stop", [(Verb.RUN, 1)]),  # three columns count, four do not
    ("<pre>\n/clarity run\n</pre>\n/clarity stop", [(Verb.STOP, 4)]),
    ("<details>\n/clarity run\n</details>\n/clarity stop", [(Verb.STOP, 4)]),
    ("<details>\n\n```\n</details>\n```\n/clarity run\n</details>\n/clarity stop", [(Verb.STOP, 8)]),
    ("<!-- a\n/clarity run\nb -->\n/clarity stop", [(Verb.STOP, 4)]),
    ("/clarity stop <!-- why: done -->", [(Verb.STOP, 1)]),  # hidden words after a command are left out
    ("/clarity stop <details>\n/clarity run\n</details>", [(Verb.STOP, 1)]),
    ("Use `<details>` to fold logs.\n/clarity stop", [(Verb.STOP, 2)]),  # a tag in a code span is text
    ("Use `<!--` for notes.\n/clarity stop", [(Verb.STOP, 2)]),
    ("    <details>\n/clarity stop", [(Verb.STOP, 2)]),  # a tag in indented code is code
    ("```\n<pre>\n```\n/clarity stop", [(Verb.STOP, 4)]),
    ("> <details>\n/clarity stop", [(Verb.STOP, 2)]),
    ("héllo wörld 🎉\n/clarity run until 2.3 ✓", []),  # ✓ is an unknown option: a Reply, not a Command
]


@pytest.mark.parametrize(("body", "expected"), LOCATED, ids=lambda v: repr(v))
def test_commands_are_found_on_their_lines(body: str, expected: list[tuple[Verb, int]]) -> None:
    commands = [(item.verb, item.line) for item in parse(body) if isinstance(item, Command)]
    assert commands == expected


def test_good_and_bad_lines_are_reported_in_order() -> None:
    items = parse("/clarity run until 1\n/clarity fly\n/clarity status")
    assert [type(item) for item in items] == [Command, Reply, Command]
    assert [item.line for item in items] == [1, 2, 3]


# --- malformed commands ---------------------------------------------------------------------------

OPTIONS = "its options are `until`, `only`, `tool`, `priority` and `budget`."
NOT_AN_ID = "is not a task id; task ids are dotted numbers like `2.3.1.4`."
PRIORITY = "priority must be a whole number from 1 to 10, got"

MALFORMED = [
    ("/clarity run until", "`/clarity run until` needs a task id, like `/clarity run until 2.3.1.4`."),
    ("/clarity run to", "`/clarity run to` needs a task id, like `/clarity run to 2.3.1.4`."),
    (
        "/clarity run stop after",
        "`/clarity run stop after` needs a task id, like `/clarity run stop after 2.3.1.4`.",
    ),
    ("/clarity run only", "`/clarity run only` needs a task id, like `/clarity run only 2.3.1.4`."),
    (
        "/clarity run until tool aider",
        "`/clarity run until` needs a task id, like `/clarity run until 2.3.1.4`.",
    ),
    ("/clarity run tool", "`/clarity run tool` needs a tool name, like `/clarity run tool aider`."),
    (
        "/clarity run priority",
        "`/clarity run priority` needs a priority from 1 to 10, like `/clarity run priority 5`.",
    ),
    ("/clarity stop-point", "`/clarity stop-point` needs a task id, like `/clarity stop-point 2.3.1.4`."),
    ("/clarity stoppoint", "`/clarity stoppoint` needs a task id, like `/clarity stoppoint 2.3.1.4`."),
    ("/clarity stop after", "`/clarity stop after` needs a task id, like `/clarity stop after 2.3.1.4`."),
    ("/clarity run until 2..3", f"`2..3` {NOT_AN_ID}"),
    ("/clarity run until 1.a", f"`1.a` {NOT_AN_ID}"),
    ("/clarity run until .1", f"`.1` {NOT_AN_ID}"),
    ("/clarity run until 2.3..", f"`2.3..` {NOT_AN_ID}"),
    ("/clarity run only -1", f"`-1` {NOT_AN_ID}"),
    ("/clarity stop-point v2", f"`v2` {NOT_AN_ID}"),
    ("/clarity retry x", f"`x` {NOT_AN_ID}"),
    ("/clarity run until `2.3`", f"`` `2.3` `` {NOT_AN_ID}"),
    ("/clarity run priority 0", f"{PRIORITY} `0`."),
    ("/clarity run priority 11", f"{PRIORITY} `11`."),
    ("/clarity run priority abc", f"{PRIORITY} `abc`."),
    ("/clarity run priority 2.5", f"{PRIORITY} `2.5`."),
    ("/clarity run priority -3", f"{PRIORITY} `-3`."),
    ("/clarity run priority " + "9" * 5000, f"{PRIORITY} `{'9' * 60}…`."),
    (
        "/clarity run tool ai/der",
        "`ai/der` is not a tool name; tool names use only letters, digits, `_`, `.` and `-`.",
    ),
    ("/clarity run fast", f"`/clarity run` has no option `fast`; {OPTIONS}"),
    ("/clarity run until 2 please", f"`/clarity run` has no option `please`; {OPTIONS}"),
    (
        "/clarity run 2.3",
        (
            "`/clarity run` has no option `2.3`; put `until` or `only` before a task id,"
            " like `/clarity run until 2.3`."
        ),
    ),
    (
        "/clarity run until 1 until 2",
        (
            "`until` is given more than once; give each option at most once"
            " (`to` and `stop after` also mean `until`)."
        ),
    ),
    (
        "/clarity run to 1 stop after 2",
        (
            "`until` is given more than once; give each option at most once"
            " (`to` and `stop after` also mean `until`)."
        ),
    ),
    (
        "/clarity run tool aider tool claude",
        "`tool` is given more than once; give each option at most once.",
    ),
    (
        "/clarity run priority 1 priority 2",
        "`priority` is given more than once; give each option at most once.",
    ),
    (
        "/clarity run only 1 until 2",
        "`only` and `until` cannot be combined: `only` runs one task, `until` runs every task up to a stop point.",
    ),
    (
        "/clarity run to 2 only 1",
        "`only` and `until` cannot be combined: `only` runs one task, `until` runs every task up to a stop point.",
    ),
    ("/clarity pause now", "`/clarity pause` takes no arguments, got `now`."),
    ("/clarity resume 1.2", "`/clarity resume` has no option `1.2`; its options are `budget`."),
    ("/clarity stop now please", "`/clarity stop` takes no arguments, got `now please`."),
    ("/clarity status all", "`/clarity status` takes no arguments, got `all`."),
    ("/clarity help me", "`/clarity help` takes no arguments, got `me`."),
    ("/clarity retry 1 2", "`/clarity retry` takes at most one task id, got `1 2`."),
    ("/clarity stop-point 1 2", "`/clarity stop-point` takes one task id, got `1 2`."),
    ("/clarity fly", "unknown command `/clarity fly`."),
    ("/Clarity FLY away", "unknown command `/clarity fly`."),
    ("/clarity stpo", "unknown command `/clarity stpo`; did you mean `/clarity stop`?"),
    ("/clarity until 2.3", "unknown command `/clarity until`."),
    (
        "/clarity `run`",
        "unknown command `` /clarity `run` ``; did you mean `/clarity run`?",
    ),
]


@pytest.mark.parametrize(("body", "problem"), MALFORMED, ids=lambda v: repr(v)[:60])
def test_each_malformed_command_names_its_exact_problem(body: str, problem: str) -> None:
    assert problem_of(body) == problem


def test_a_problem_reply_carries_the_line_the_problem_and_the_help() -> None:
    [reply] = parse("Please run it:\n\n/clarity run until\n")
    assert isinstance(reply, Reply)
    assert reply.line == 3
    assert reply.problem is not None
    assert reply.text == f"{reply.problem}\n\n{help_text()}"


def test_an_echoed_word_cannot_mention_anyone_or_break_out_of_code() -> None:
    problem = problem_of("/clarity run tool @org/team")
    assert problem is not None
    assert "`@org/team`" in problem
    problem = problem_of("/clarity run until a``b")
    assert problem is not None and problem.startswith("```a``b``` ")


# --- limits ---------------------------------------------------------------------------------------


def test_at_most_max_commands_are_read_and_the_rest_is_reported() -> None:
    body = "\n".join(["/clarity status"] * (MAX_COMMANDS + 5))
    items = parse(body)
    assert len(items) == MAX_COMMANDS + 1
    assert all(isinstance(item, Command) for item in items[:MAX_COMMANDS])
    last = items[-1]
    assert isinstance(last, Reply)
    assert last.line == MAX_COMMANDS + 1
    assert last.problem == (
        f"a comment may hold at most {MAX_COMMANDS} commands; line {MAX_COMMANDS + 1} and later were not read."
    )


def test_text_beyond_githubs_body_limit_is_not_read() -> None:
    body = "x" * MAX_BODY_CHARS + "\n/clarity stop"
    assert parse(body) == []
    assert parse("x" * (MAX_BODY_CHARS - 20) + "\n/clarity stop") != []


def test_a_body_near_the_limit_with_long_command_lines_stops_at_the_first_problem_of_each() -> None:
    body = ("/clarity run " + "until 1 " * 750 + "\n") * MAX_COMMANDS + "> a\n" * 500
    assert len(body) < MAX_BODY_CHARS
    items = parse(body)
    assert [item.line for item in items] == list(range(1, MAX_COMMANDS + 1))
    assert all(isinstance(item, Reply) and item.problem.startswith("`until` is given") for item in items)


# --- help -----------------------------------------------------------------------------------------


def test_help_lists_every_verb_of_the_table_with_its_usage_and_summary() -> None:
    text = help_text()
    for spec in GRAMMAR:
        name = " ".join(spec.names[0])
        assert f"`/clarity {name}" in text
        assert spec.summary in text
        for option in spec.options:
            assert option.summary in text
    assert {spec.verb for spec in GRAMMAR} == set(Verb)


def test_help_mentions_the_aliases_of_until_and_stop_point() -> None:
    text = help_text()
    assert "`to <id>`" in text
    assert "`stop after <id>`" in text
    assert "`/clarity stop after <id>`" in text
    assert "`/clarity stoppoint <id>`" in text
    assert "`/clarity run [until <id>] [only <id>] [tool <name>] [priority <1-10>] [budget <limits>]`" in text
    assert "cannot be combined with `until`" in text


def test_help_is_generated_from_the_table_that_the_parser_reads() -> None:
    extra_option = OptionSpec("until", (("before",),), TASK_ID, "an option added for the test")
    extended = tuple(
        replace(spec, options=(*spec.options, extra_option)) if spec.verb is Verb.RUN else spec
        for spec in GRAMMAR
        if spec.verb is not Verb.PAUSE
    ) + (VerbSpec(Verb.STATUS, (("ping",),), "A verb added for the test.", Role.VIEWER, "jobs.verbs:status"),)
    text = help_text(extended)
    assert "`/clarity ping` | A verb added for the test. |" in text
    assert "[before <id>]" in text
    assert "`/clarity pause`" not in text
    [ping, run, pause] = parse("/clarity ping\n/clarity run before 3\n/clarity pause", extended)
    assert ping == Command(Verb.STATUS, 1, "/clarity ping")
    assert run == Command(Verb.RUN, 2, "/clarity run before 3", until="3")
    assert isinstance(pause, Reply) and pause.problem == "unknown command `/clarity pause`."
    assert pause.text.endswith(text)


def test_help_text_itself_holds_no_commands() -> None:
    assert parse(help_text()) == []


@pytest.mark.parametrize("line", [
    "x " + "`" * 65_000 + "a",  # backtick runs that close nothing
    "x " + "`" * 1_000 + "a" * 64_000,
    "x " + "`a" * 32_000,
    "x " + "<pre" * 16_000 + "<",
    "x " + "`<details>`" * 5_900,
])
def test_a_pathological_line_is_read_in_one_pass(line: str) -> None:
    # A regex for code spans took ~16 s on the first of these (quadratic); the scan is linear. The
    # bound is loose on purpose: it fails only for the quadratic kind of slow.
    started = time.perf_counter()
    assert parse(line + "\n/clarity stop") != []
    assert time.perf_counter() - started < 5


# --- properties -----------------------------------------------------------------------------------

_pieces = st.sampled_from(
    [
        "/clarity",
        "/CLARITY ",
        "run",
        " until ",
        " to ",
        "stop after",
        "only",
        "tool",
        "priority",
        "1.2",
        "2..3",
        "10",
        "```",
        "~~~",
        "    ",
        ">",
        "<!--",
        "-->",
        "<pre>",
        "</details>",
        "<details>",
        "\t",
        "\n",
        "\r\n",
        "\r",
        " ",
        ".",
        "`",
        "é",
        "🎉",
    ]
)
_bodies = st.one_of(st.text(max_size=300), st.lists(st.one_of(_pieces, st.text(max_size=5))).map("".join))


@settings(max_examples=300, deadline=None)
@given(_bodies)
def test_parse_never_raises_and_every_item_points_into_the_body(body: str) -> None:
    items = parse(body)
    assert isinstance(items, list)
    lines = line_count(body)
    for item in items:
        assert isinstance(item, (Command, Reply))
        assert item.line is not None and 1 <= item.line <= lines
        if isinstance(item, Reply):
            assert item.problem and item.text.startswith(item.problem)


_ids = st.lists(st.integers(0, 99), min_size=1, max_size=4).map(lambda parts: ".".join(map(str, parts)))
_run_options = st.fixed_dictionaries(
    {},
    optional={
        "until": _ids,
        "tool": st.from_regex(r"[a-z][a-z0-9_.-]{0,10}[a-z0-9_-]", fullmatch=True).filter(
            lambda name: name not in {"until", "to", "stop", "only", "tool", "priority"}
        ),
        "priority": st.integers(1, 10),
    },
)


@settings(max_examples=150, deadline=None)
@given(_run_options, st.randoms(use_true_random=False), st.sampled_from(["until", "to", "stop after"]))
def test_run_options_in_any_order_read_back_as_written(
    options: dict[str, Any], random: Any, until: str
) -> None:
    words = [f"{until if key == 'until' else key} {value}" for key, value in options.items()]
    random.shuffle(words)
    [command] = parse(" ".join(["/clarity run", *words]))
    assert isinstance(command, Command) and command.verb is Verb.RUN
    expected_until = options.get("until")
    if expected_until is not None:
        head, _, tail = expected_until.partition(".")
        expected_until = head if tail == "0" else expected_until
    assert (command.until, command.tool, command.priority) == (
        expected_until,
        options.get("tool"),
        options.get("priority"),
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from([body for body, *_ in ACCEPTED]), min_size=1, max_size=5),
    st.sampled_from(["```", "~~~", "````", "  ~~~~ info"]),
    st.sampled_from(["\n", "\r\n"]),
)
def test_commands_inside_a_fence_or_quote_are_never_read(lines: list[str], fence: str, newline: str) -> None:
    fenced = newline.join([fence, *lines, fence.strip().split()[0]])
    quoted = newline.join(f"> {line}" for line in lines)
    assert parse(fenced) == []
    assert parse(quoted) == []
