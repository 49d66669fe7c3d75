"""tasks_list.md: parsing, selection and tick-back (DESIGN §3), as table tests and properties."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clarity.tasklist import Task, TaskList, TaskListError, canonical_id, parse, tick

SEED = """\
# Tasks
- [ ] 1. Project setup
  - [x] 1.1 Create package skeleton
  - [ ] 1.2 Add CI workflow
    - Add a GitHub Actions workflow that runs the tests.
    - depends: 1.1
    - tool: aider
    - check: pytest -q tests/test_ci.py
    - check: file .github/workflows/ci.yml
    - _Requirements: 2.1_
- [ ] 2.0 Data layer
"""


def ids(tasks: list[Task] | TaskList) -> list[str]:
    return [t.id for t in (tasks.tasks if isinstance(tasks, TaskList) else tasks)]


def error_of(text: str) -> TaskListError:
    with pytest.raises(TaskListError) as caught:
        parse(text)
    return caught.value


# --- ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("1", "1"),
        ("1.", "1"),
        ("1.0", "1"),
        ("1.0.", "1"),
        (" 2.3 ", "2.3"),
        ("2.3.1.4", "2.3.1.4"),
        ("2.3.1.4.", "2.3.1.4"),
        ("02.03", "2.3"),
        ("1.10", "1.10"),
        ("1.0.1", "1.0.1"),
        ("0", "0"),
    ],
)
def test_canonical_id_has_one_spelling_per_task(raw: str, canonical: str) -> None:
    assert canonical_id(raw) == canonical


@pytest.mark.parametrize("raw", ["", "a", "1..2", ".1", "1.2a", "v1", "1 2"])
def test_canonical_id_rejects_what_is_not_an_id(raw: str) -> None:
    with pytest.raises(TaskListError, match="is not a task id"):
        canonical_id(raw)


@pytest.mark.parametrize(
    ("line", "task_id", "title", "done"),
    [
        ("- [ ] 1. Project setup", "1", "Project setup", False),
        ("* [x] 1.1 Create skeleton", "1.1", "Create skeleton", True),
        ("+ [X] 2.0 Data layer", "2", "Data layer", True),
        ("1. [ ] 3 Ordered marker", "3", "Ordered marker", False),
        ("2) [x] 4: Colon after id", "4", "Colon after id", True),
        ("- [ ] 5 - Dash after id", "5", "Dash after id", False),
        ("- [ ] 5.1 — Em dash", "5.1", "Em dash", False),
        ("- [ ] **6.1** Bold id", "6.1", "Bold id", False),
        ("- [ ] **6.2 Bold everything**", "6.2", "Bold everything", False),
        ("- [ ] `6.3` Code id", "6.3", "Code id", False),
        ("- [ ] 7.1.2.3 Deep id", "7.1.2.3", "Deep id", False),
        ("\t- [ ] 8 Tab indented", "8", "Tab indented", False),
        ("        - [ ] 9 Deeply indented", "9", "Deeply indented", False),
        ("- [ ] 10", "10", "", False),
        ("- [ ] 11.Setup", "11", "Setup", False),
        ("- [ ] 12 .hidden files stay", "12", ".hidden files stay", False),
        ("- [ ]   13   Spaces around  ", "13", "Spaces around", False),
        ("- [ ] 14 Datenbank prüfen — 数据库 ✓", "14", "Datenbank prüfen — 数据库 ✓", False),
        ("- [ ]* 15 Kiro's optional task", "15", "Kiro's optional task", False),
    ],
)
def test_a_checkbox_item_starting_with_an_id_is_a_task(
    line: str, task_id: str, title: str, done: bool
) -> None:
    (task,) = parse(line + "\n").tasks
    assert (task.id, task.title, task.done, task.line, task.is_group) == (task_id, title, done, 1, False)


@pytest.mark.parametrize(
    "line",
    [
        "- [ ] Write the docs",
        "- [ ] 1.5x faster parser",
        "- [] 1 empty box",
        "-[ ] 1 no space after marker",
        "- [ ]1 no space after box",
        "[ ] 1 no list marker",
        "- [y] 1 unknown mark",
        "> - [ ] 1 in a quote",
        "- 1 no checkbox",
        "Plain 1.2 paragraph",
    ],
)
def test_lines_that_are_not_tasks(line: str) -> None:
    assert parse(line + "\n").tasks == ()


def test_empty_file_has_no_tasks_and_nothing_to_do() -> None:
    tasks = parse("")
    assert tasks.tasks == ()
    assert tasks.next_task() is None
    assert tasks.run_order() == []
    assert tasks.stop_reached(None)


def test_ids_spelled_differently_are_the_same_task() -> None:
    error = error_of("- [ ] 1 First\n- [ ] 1.0 Again\n")
    assert str(error) == "tasks_list.md line 2: task 1 appears twice (lines 1 and 2)"
    assert parse("- [ ] 2.0 Data\n").get("2.").id == "2"


# --- hierarchy -------------------------------------------------------------------------------


def test_hierarchy_comes_from_ids_not_indentation() -> None:
    tasks = parse(
        "- [ ] 1 One\n"
        "- [ ] 1.1 Not indented, still a child of 1\n"
        "      - [ ] 2 Indented, still top level\n"
        "- [ ] 2.3.1 No 2.3, so its parent is 2\n"
        "- [ ] 1.2 Far from its parent\n"
    )
    assert {t.id: t.parent for t in tasks.tasks} == {
        "1": None,
        "1.1": "1",
        "2": None,
        "2.3.1": "2",
        "1.2": "1",
    }
    assert tasks.get("1").children == ("1.1", "1.2")
    assert ids(tasks.leaves()) == ["1.1", "2.3.1", "1.2"]
    assert not tasks.get("1").is_leaf and tasks.get("1.2").is_leaf


def test_a_parent_may_come_after_its_children() -> None:
    tasks = parse("- [ ] 3.1 Child first\n- [ ] 3 Parent\n")
    assert tasks.get("3.1").parent == "3"
    assert ids(tasks.leaves()) == ["3.1"]


def test_n_dot_zero_children_hang_under_n() -> None:
    tasks = parse("- [ ] 1.0 Parent\n  - [ ] 1.0.1 Child\n")
    assert tasks.get("1.0.1").parent == "1"


@pytest.mark.parametrize(
    ("line", "task_id", "title"),
    [
        ("### 2.3 Database health", "2.3", "Database health"),
        ("## 2. Data", "2", "Data"),
        ("# 3 Title with closing hashes ##", "3", "Title with closing hashes"),
        ("  ## 4: Indented a little", "4", "Indented a little"),
        ("###### 5.0 Six hashes", "5", "Six hashes"),
    ],
)
def test_a_heading_starting_with_an_id_is_a_group(line: str, task_id: str, title: str) -> None:
    (group,) = parse(line + "\n").tasks
    assert (group.id, group.title, group.is_group, group.done, group.is_leaf) == (
        task_id,
        title,
        True,
        False,
        False,
    )


@pytest.mark.parametrize("line", ["# Tasks", "#2 no space", "####### 7 seven hashes", "    ### 8 code block"])
def test_headings_without_a_leading_id_are_not_groups(line: str) -> None:
    assert parse(line + "\n").tasks == ()


def test_groups_hold_the_tasks_under_their_id() -> None:
    tasks = parse(
        "## 2 Data\n### 2.3 Database health\n- [x] 2.3.1 Add index\n- [ ] 2.3.2 Vacuum\n- [ ] 2.4 Backups\n"
    )
    assert tasks.get("2.3").children == ("2.3.1", "2.3.2")
    assert tasks.get("2").children == ("2.3", "2.4")
    assert ids(tasks.leaves("2.3")) == ["2.3.1", "2.3.2"]
    assert ids(tasks.leaves("2")) == ["2.3.1", "2.3.2", "2.4"]
    assert ids(tasks.leaves("2.3.1")) == ["2.3.1"]


# --- descriptions and keys -------------------------------------------------------------------


def test_seed_example() -> None:
    tasks = parse(SEED)
    assert ids(tasks) == ["1", "1.1", "1.2", "2"]
    ci = tasks.get("1.2")
    assert ci.depends == ("1.1",)
    assert ci.tool == "aider"
    assert ci.checks == ("pytest -q tests/test_ci.py", "file .github/workflows/ci.yml")
    assert ci.description == "- Add a GitHub Actions workflow that runs the tests.\n- _Requirements: 2.1_"
    assert (ci.line, tasks.get("2").line) == (4, 11)


def test_keys_are_case_insensitive_and_unknown_lines_are_kept_verbatim() -> None:
    tasks = parse(
        "- [ ] 1 Task\n"
        "  Some paragraph with `code`.\n"
        "  - a bullet\n"
        "  - [ ] a sub-checkbox without id is description\n"
        "  - DEPENDS: 2\n"
        "  - Tool: claude\n"
        "  - CHECK: pytest -q\n"
        "  * check: `ruff check .`\n"
        "  files: src/a.py, `src/b.py`\n"
        "  - Files: docs/c.md\n"
        "  - **timeout:** 15m\n"
        "  - owner: alice\n"
        "    - nested: kept too\n"
        "  - _Requirements: 2.1_\n"
        "- [ ] 2 Other\n"
    )
    task = tasks.get("1")
    assert task.depends == ("2",)
    assert task.tool == "claude"
    assert task.checks == ("pytest -q", "ruff check .")
    assert task.files == ("src/a.py", "src/b.py", "docs/c.md")
    assert task.timeout == "15m"
    assert task.description == (
        "Some paragraph with `code`.\n"
        "- a bullet\n"
        "- [ ] a sub-checkbox without id is description\n"
        "- owner: alice\n"
        "  - nested: kept too\n"
        "- _Requirements: 2.1_"
    )
    assert [t.id for t in tasks.tasks] == ["1", "2"]


@pytest.mark.parametrize(
    ("value", "depends"),
    [
        ("1.1, 1.2", ("1.1", "1.2")),
        ("1.1 1.2", ("1.1", "1.2")),
        ("1.1,1.2;1.3", ("1.1", "1.2", "1.3")),
        ("1.1 and 1.2", ("1.1", "1.2")),
        ("`1.1`, **1.2**", ("1.1", "1.2")),
        ("1.0", ("1",)),
        ("1.1, 1.1", ("1.1",)),
        ("none", ()),
        ("", ()),
    ],
)
def test_depends_lists_are_comma_or_space_separated_and_canonical(
    value: str, depends: tuple[str, ...]
) -> None:
    text = (
        "- [ ] 1 P\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n  - [ ] 1.3 C\n- [ ] 2 Task\n  - depends: " + value + "\n"
    )
    assert parse(text).get("2").depends == depends


def test_depends_lines_accumulate_and_checks_keep_their_order() -> None:
    task = parse(
        "- [ ] 1 A\n- [ ] 2 B\n- [ ] 3 C\n  - depends: 1\n  - check: second? no, first\n"
        "  - depends: 2\n  - check: then this\n"
    ).get("3")
    assert task.depends == ("1", "2")
    assert task.checks == ("second? no, first", "then this")


def test_description_keeps_inner_blank_lines_and_drops_outer_ones() -> None:
    task = parse("- [ ] 1 Task\n\n  First paragraph.\n\n\n  Second paragraph.\n\n- [ ] 2 Next\n").get("1")
    assert task.description == "First paragraph.\n\n\nSecond paragraph."


def test_text_at_the_margin_after_a_task_is_not_its_description() -> None:
    tasks = parse("- [ ] 1 Task\n  mine\nNot mine.\n  nor this, the paragraph above closed the list\n")
    assert tasks.get("1").description == "mine"


def test_description_goes_to_the_item_it_is_indented_under() -> None:
    tasks = parse(
        "- [ ] 1 Parent\n"
        "  - [ ] 1.1 Child\n"
        "    child text\n"
        "    - check: child check\n"
        "  parent text\n"
        "  - check: parent check\n"
    )
    assert (tasks.get("1.1").description, tasks.get("1.1").checks) == ("child text", ("child check",))
    assert (tasks.get("1").description, tasks.get("1").checks) == ("parent text", ("parent check",))


def test_fenced_code_is_description_and_never_tasks_or_keys() -> None:
    tasks = parse(
        "- [ ] 1 Task\n"
        "  ```markdown\n"
        "  - [ ] 9 Not a task\n"
        "  check: not a key\n"
        "  ```\n"
        "  - check: a key\n"
        "```\n"
        "- [ ] 8 Not a task either\n"
        "```\n"
        "- [ ] 2 Real\n"
    )
    assert ids(tasks) == ["1", "2"]
    task = tasks.get("1")
    assert task.checks == ("a key",)
    assert task.description == "```markdown\n- [ ] 9 Not a task\ncheck: not a key\n```"


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [("15m", 900), ("90s", 90), ("1h", 3600), ("1h30m", 5400), ("2H", 7200), ("1h 5m 3s", 3903)],
)
def test_timeout_is_a_duration(timeout: str, seconds: int) -> None:
    assert parse(f"- [ ] 1 Task\n  - timeout: {timeout}\n").get("1").timeout_seconds() == seconds


def test_no_timeout_is_none() -> None:
    assert parse("- [ ] 1 Task\n").get("1").timeout_seconds() is None


# --- line endings, tabs, unicode ------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_line_ending(newline: str) -> None:
    text = SEED.replace("\n", newline)
    assert parse(text) == parse(SEED)


def test_mixed_line_endings_and_no_newline_at_the_end() -> None:
    text = "- [ ] 1 A\r\n  - depends: 2\n- [x] 2 B\r\n  - check: true\r- [ ] 3 C"
    tasks = parse(text)
    assert [(t.id, t.line) for t in tasks.tasks] == [("1", 1), ("2", 3), ("3", 5)]
    assert tasks.get("2").checks == ("true",)
    assert tasks.get("3").title == "C"


def test_byte_order_mark_is_tolerated() -> None:
    assert parse("\ufeff" + SEED) == parse(SEED)


def test_tabs_indent_descriptions() -> None:
    task = parse("\t- [ ] 1 Task\n\t\t- depends: 2\n\t\tnote\n- [ ] 2 B\n").get("1")
    assert (task.depends, task.description) == (("2",), "note")


def test_unicode_everywhere() -> None:
    tasks = parse(
        "# Задачи\n- [ ] 1 Настроить проект\n  - tool: aider\n  - check: pytest -q -k 'ü'\n  描述\n"
    )
    task = tasks.get("1")
    assert (task.title, task.checks, task.description) == ("Настроить проект", ("pytest -q -k 'ü'",), "描述")


# --- done-ness and selection -----------------------------------------------------------------

TREE = """\
- [ ] 1 Setup
  - [x] 1.1 Skeleton
  - [ ] 1.2 CI
    - depends: 1.1
  - [ ] 1.3 Lint
## 2 Data
- [ ] 2.1 Models
  - depends: 3
- [ ] 2.2 Migrations
  - depends: 2.1
- [ ] 3 Later
- [ ] 4 Last
  - depends: 1
"""


def test_is_done_for_leaves_parents_and_groups() -> None:
    tasks = parse("- [ ] 1 P\n  - [x] 1.1 A\n  - [x] 1.2 B\n- [x] 2 Q\n  - [ ] 2.1 C\n## 3 G\n")
    assert tasks.is_done("1.1") and tasks.is_done("1")  # unticked parent, all leaves done
    assert not tasks.is_done("2") and tasks.get("2").done  # ticked parent with an open leaf
    assert tasks.is_done("3")  # a group with nothing in it


def test_next_task_is_the_first_open_leaf_whose_depends_are_done() -> None:
    tasks = parse(TREE)
    assert tasks.next_task().id == "1.2"
    assert tasks.next_task(unavailable=frozenset({"1.2"})).id == "1.3"
    assert tasks.next_task(unavailable=frozenset({"1.2", "1.3"})).id == "3"  # 2.1 waits for 3
    assert tasks.next_task(unavailable=frozenset({"1.2", "1.3", "3"})) is None


def test_next_task_respects_the_stop_point() -> None:
    tasks = parse(TREE)
    assert tasks.next_task(until="1.1") is None
    assert tasks.next_task(until="1.2").id == "1.2"
    assert tasks.next_task(until="1", unavailable=frozenset({"1.2"})).id == "1.3"
    assert tasks.next_task(until="1.0", unavailable=frozenset({"1.2", "1.3"})) is None


def test_an_unavailable_parent_covers_its_leaves_and_unknown_ids_are_ignored() -> None:
    tasks = parse(TREE)
    assert tasks.next_task(unavailable=frozenset({"1", "9.9"})).id == "3"


def test_a_hand_built_task_list_needs_only_one_side_of_each_link() -> None:
    tasks = TaskList(
        (
            Task("1.1", "Child", done=False, line=1),
            Task("1", "Parent", done=False, line=2, children=("1.1",)),
            Task("2", "Next", done=False, line=3, depends=("1",)),
        )
    )
    assert tasks.run_order() == ["1.1", "2"]
    assert tasks.next_task(unavailable=frozenset({"1.1"})) is None


def test_dependants_of_an_unavailable_task_are_not_eligible() -> None:
    tasks = parse("- [ ] 1 A\n- [ ] 2 B\n  - depends: 1\n- [ ] 3 C\n")
    assert tasks.next_task(unavailable=frozenset({"1"})).id == "3"


@pytest.mark.parametrize(
    ("until", "order"),
    [
        (None, ["1.2", "1.3", "3", "2.1", "2.2", "4"]),
        ("1.2", ["1.2"]),
        ("1", ["1.2", "1.3"]),
        ("2.1", ["1.2", "1.3", "3", "2.1"]),  # forward dependency 3 comes into scope
        ("2", ["1.2", "1.3", "3", "2.1", "2.2"]),  # a group: all of its leaves
        ("3", ["1.2", "1.3", "3", "2.1", "2.2"]),
        ("4", ["1.2", "1.3", "3", "2.1", "2.2", "4"]),
        ("1.1", []),
    ],
)
def test_run_order_simulates_ticking(until: str | None, order: list[str]) -> None:
    assert parse(TREE).run_order(until) == order


def test_depending_on_a_parent_means_all_its_leaves() -> None:
    tasks = parse("- [ ] 1 Last\n  - depends: 2\n- [ ] 2 P\n  - [ ] 2.1 A\n  - [ ] 2.2 B\n")
    assert tasks.run_order() == ["2.1", "2.2", "1"]
    assert tasks.run_order("1") == ["2.1", "2.2", "1"]


def test_a_parents_depends_apply_to_its_leaves() -> None:
    tasks = parse("- [ ] 1 P\n  - depends: 2\n  - [ ] 1.1 A\n  - [ ] 1.2 B\n- [ ] 2 First\n")
    assert tasks.next_task().id == "2"
    assert tasks.run_order() == ["2", "1.1", "1.2"]


def test_run_order_is_what_next_task_gives_when_each_task_is_ticked() -> None:
    text = TREE
    seen = []
    while (task := parse(text).next_task("2")) is not None:
        seen.append(task.id)
        text = tick(text, [task.id])
    assert seen == parse(TREE).run_order("2")
    assert parse(text).stop_reached("2") and not parse(text).stop_reached(None)


def test_stop_reached_when_every_leaf_in_scope_is_done() -> None:
    tasks = parse(TREE)
    assert tasks.stop_reached("1.1")
    assert not tasks.stop_reached("1")
    done = parse(tick(TREE, ["1.2", "1.3"]))
    assert done.stop_reached("1") and not done.stop_reached("2") and not done.stop_reached(None)


def test_blocked_by_names_the_failed_tasks_in_the_way() -> None:
    tasks = parse(TREE)
    assert tasks.blocked_by("2.2", {"3"}) == {"3"}  # 2.2 → 2.1 → 3
    assert tasks.blocked_by("4", {"1.3", "3"}) == {"1.3"}  # 4 depends on 1, so on 1.3
    assert tasks.blocked_by("1.3", {"3"}) == set()
    assert tasks.blocked_by("3", {"3"}) == set()


def test_unknown_ids_in_lookups_are_errors_for_people() -> None:
    tasks = parse(TREE)
    with pytest.raises(TaskListError) as caught:
        tasks.get("9.9")
    assert str(caught.value) == "task 9.9 is not in tasks_list.md"
    for call in (tasks.next_task, tasks.run_order, tasks.stop_reached):
        with pytest.raises(TaskListError) as caught:
            call("9.9")
        assert str(caught.value) == "stop point 9.9 is not a task or group in tasks_list.md"
        assert caught.value.line is None
    with pytest.raises(TaskListError, match="stop point banana is not a task or group"):
        tasks.run_order("banana")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("- [ ] 1 A\n- [ ] 1.1 B\n- [ ] 1.1 C\n", 3, "task 1.1 appears twice (lines 2 and 3)"),
        ("## 2 Group\n- [ ] 2. Task\n", 2, "task 2 appears twice (lines 1 and 2)"),
        ("- [ ] 2.3 A\n  - depends: 7.1\n", 2, "task 2.3 depends on 7.1, which does not exist"),
        ("- [ ] 1 A\n  - depends: 1\n", 2, "task 1 depends on itself"),
        ("- [ ] 1 A\n  - [ ] 1.1 B\n    - depends: 1\n", 3, "task 1.1 depends on 1, which contains it"),
        (
            "- [ ] 1 A\n  - depends: 1.1\n  - [ ] 1.1 B\n",
            2,
            "task 1 depends on 1.1, which is one of its own subtasks",
        ),
        (
            "- [ ] 1 P\n- [ ] 1.2 A\n  - depends: 1.3\n- [ ] 1.3 B\n  - depends: 1.2\n",
            2,
            "dependency cycle: 1.2 → 1.3 → 1.2",
        ),
        (
            "- [ ] 1 A\n  - depends: 3\n- [ ] 2 B\n  - depends: 1\n- [ ] 3 C\n  - depends: 2\n",
            1,
            "dependency cycle: 1 → 3 → 2 → 1",
        ),
        (
            "- [ ] 1 A\n  - depends: 2\n- [ ] 2 P\n  - [ ] 2.1 B\n    - depends: 1\n",
            1,
            "dependency cycle: 1 → 2 → 2.1 → 1",
        ),
        (
            "- [ ] 1 A\n  - timeout: fifteen\n",
            2,
            "task 1 has timeout: fifteen, expected a duration like 90s, 15m, 1h or 1h30m",
        ),
        (
            "- [ ] 1 A\n  - timeout: 0s\n",
            2,
            "task 1 has timeout: 0s, expected a duration like 90s, 15m, 1h or 1h30m",
        ),
        (
            "- [ ] 1 A\n  - timeout: 90\n",
            2,
            "task 1 has timeout: 90, expected a duration like 90s, 15m, 1h or 1h30m",
        ),
        ("- [ ] 1 A\n  - timeout: 1m\n  - timeout: 2m\n", 3, "task 1 sets timeout: twice (lines 2 and 3)"),
        ("- [ ] 1 A\n  - tool: aider\n  - tool: claude\n", 3, "task 1 sets tool: twice (lines 2 and 3)"),
        (
            "- [ ] 1 A\n  - tool: aider please\n",
            2,
            "task 1 has tool: aider please, expected one agent name like aider",
        ),
        ("- [ ] 1 A\n  - tool:\n", 2, "task 1 has an empty tool:"),
        ("- [ ] 1 A\n  - check: \n", 2, "task 1 has an empty check:"),
        (
            "- [ ] 1 A\n  - depends: 2, the database\n",
            2,
            "task 1 has depends: 2, the database, but the is not a task id (expected ids like 1.2)",
        ),
    ],
)
def test_errors_name_the_line_and_say_why(text: str, line: int, reason: str) -> None:
    error = error_of(text)
    assert (error.line, error.reason) == (line, reason)
    assert str(error) == f"tasks_list.md line {line}: {reason}"
    assert isinstance(error, ValueError)


def test_errors_use_the_given_filename() -> None:
    with pytest.raises(TaskListError) as caught:
        parse("- [ ] 1 A\n  - depends: 9\n", filename="docs/tasks.md")
    assert str(caught.value) == "docs/tasks.md line 2: task 1 depends on 9, which does not exist"
    with pytest.raises(TaskListError) as caught:
        parse("- [ ] 1 A\n", filename="docs/tasks.md").run_order("2")
    assert str(caught.value) == "stop point 2 is not a task or group in docs/tasks.md"


def test_a_cycle_is_found_when_each_dependency_is_above_its_dependant_but_a_subtask_is_not() -> None:
    # 1 depends on 2 (above it), 2.1 on 1 (above it); but 2 waits for 2.1, which is below 1.
    error = error_of("- [ ] 2 P\n- [ ] 1 A\n  - depends: 2\n- [ ] 2.1 B\n  - depends: 1\n")
    assert (error.line, error.reason) == (1, "dependency cycle: 2 → 2.1 → 1 → 2")


def test_dependencies_pointing_down_the_file_are_fine_without_a_cycle() -> None:
    tasks = parse("- [ ] 1 A\n  - [ ] 1.2 B\n    - depends: 2\n- [ ] 2 C\n  - depends: 1.1\n- [ ] 1.1 D\n")
    assert tasks.run_order() == ["1.1", "2", "1.2"]


# --- tick ------------------------------------------------------------------------------------

NESTED = """\
- [ ] 1 Root
  - [ ] 1.1 Middle
    - [ ] 1.1.1 Leaf A
    - [x] 1.1.2 Leaf B
  - [ ] 1.2 Other
### 2 Group
- [ ] 2.1 In group
"""


def test_tick_changes_only_the_box() -> None:
    assert tick(SEED, ["1.2"]) == SEED.replace("- [ ] 1. Project", "- [x] 1. Project").replace(
        "- [ ] 1.2", "- [x] 1.2"
    )


def test_tick_completes_parents_several_levels_up() -> None:
    once = tick(NESTED, ["1.1.1"])
    assert once == NESTED.replace("[ ] 1.1.1", "[x] 1.1.1").replace("[ ] 1.1 ", "[x] 1.1 ")
    twice = tick(once, ["1.2"])
    assert twice.startswith("- [x] 1 Root\n")
    assert parse(twice).is_done("1")


def test_tick_never_writes_a_group() -> None:
    text = tick(NESTED, ["2.1"])
    assert "### 2 Group\n- [x] 2.1 In group\n" in text
    text = "- [ ] 1 Parent\n### 1.1 Group\n- [ ] 1.1.1 Leaf\n"
    assert tick(text, ["1.1.1"]) == "- [x] 1 Parent\n### 1.1 Group\n- [x] 1.1.1 Leaf\n"


def test_tick_of_a_parent_or_group_ticks_its_leaves() -> None:
    ticked = parse(tick(NESTED, ["1"]))
    assert all(leaf.done for leaf in ticked.leaves("1")) and ticked.get("1").done
    assert not ticked.get("2.1").done
    assert parse(tick(NESTED, ["2"])).get("2.1").done


def test_tick_keeps_crlf_tabs_trailing_spaces_bom_and_unicode() -> None:
    text = "\ufeff# Aufgaben  \r\n\t- [ ] 1 Über  \r\n\t\t- [ ] 1.1 数据\t\r\n- [X] 2 ✓\r"
    assert tick(text, ["1.1"]) == text.replace("[ ] 1 ", "[x] 1 ").replace("[ ] 1.1", "[x] 1.1")


def test_tick_accepts_any_spelling_and_ignores_done_tasks() -> None:
    text = "- [ ] 1.0 A\n- [X] 2 B\n"
    assert tick(text, ["1"]) == tick(text, ["1."]) == "- [x] 1.0 A\n- [X] 2 B\n"
    assert tick(text, ["2"]) == text
    assert tick(text, []) == text


def test_tick_of_an_unknown_task_is_an_error() -> None:
    with pytest.raises(TaskListError) as caught:
        tick(SEED, ["9"])
    assert str(caught.value) == "task 9 is not in tasks_list.md, so it cannot be ticked"
    with pytest.raises(TaskListError, match="^task 9 is not in docs/t.md, so"):
        tick(SEED, ["9"], filename="docs/t.md")


def test_tick_after_parse_of_the_same_text_gives_what_a_fresh_tick_gives() -> None:
    # tick reuses the reading of the text parsed last; it must not matter which text that was.
    fresh = tick(NESTED, ["1.1.1"])
    parse(NESTED)
    assert tick(NESTED, ["1.1.1"]) == fresh
    assert tick("".join(list(NESTED)), ["1.1.1"]) == fresh  # an equal text, another object
    parse(SEED)
    assert tick(NESTED, ["1.1.1"]) == fresh
    with pytest.raises(TaskListError, match="^task 9 is not in other.md, so"):
        tick(SEED, ["9"], filename="other.md")


def test_tick_after_a_failed_parse_raises_the_same_error() -> None:
    text = "- [ ] 1 A\n  - tool: aider please\n"
    with pytest.raises(TaskListError) as parsed:
        parse(text)
    with pytest.raises(TaskListError) as ticked:
        tick(text, ["1"])
    assert str(ticked.value) == str(parsed.value) == (
        "tasks_list.md line 2: task 1 has tool: aider please, expected one agent name like aider"
    )
    cyclic = "- [ ] 1 A\n  - depends: 2\n- [ ] 2 B\n  - depends: 1\n"
    with pytest.raises(TaskListError, match="dependency cycle"):
        parse(cyclic)
    assert tick(cyclic, ["1"]) == "- [x] 1 A\n  - depends: 2\n- [ ] 2 B\n  - depends: 1\n"


def test_tick_finds_boxes_in_files_mixing_line_endings() -> None:
    text = "- [ ] 1 A\r\n- [ ] 2 B\n- [ ] 3 C\r- [ ] 4 D\r\n"
    for ticked in (tick(text, ["3", "4"]), (parse(text), tick(text, ["3", "4"]))[1]):
        assert ticked == "- [ ] 1 A\r\n- [ ] 2 B\n- [x] 3 C\r- [x] 4 D\r\n"
    text = "\ufeff- [ ] 1 A\n- [ ] 2 B\r\n- [ ] 3 C\r\n"
    assert tick(text, ["3"]) == "\ufeff- [ ] 1 A\n- [ ] 2 B\r\n- [x] 3 C\r\n"


# --- properties ------------------------------------------------------------------------------

TITLES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
EXTRA_LINES = st.sampled_from(
    [
        "",
        "   ",
        "Plain paragraph, ünïcödé 中文",
        "  - a note ✓",
        "    - [ ] sub item without an id",
        "\t- tabbed note",
        "> quoted - [ ] 1 text",
        "_Requirements: 1.1_",
        "# Notes",
        "- plain bullet",
        "  check: echo ok",
        "  - owner: alice",
    ]
)
INDENTS = st.sampled_from(["", "  ", "    ", "\t", " \t"])
MARKERS = st.sampled_from(["-", "*", "+", "1.", "7)"])
NEWLINES = st.sampled_from(["\n", "\r\n"])
TRAILING = st.sampled_from(["", " ", "  ", "\t"])
SEPARATORS = st.sampled_from([" ", ": ", " - "])
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Node:
    """What the generator meant a task or group to be."""

    id: str
    parent: str | None
    is_group: bool = False
    done: bool = False
    box: int | None = None  # offset of the checkbox character in the generated text
    depends: list[str] = field(default_factory=list)


@dataclass
class Generated:
    """A generated tasks_list.md and the model it was written from."""

    text: str
    nodes: dict[str, Node]

    def children(self, node_id: str) -> list[str]:
        return [n.id for n in self.nodes.values() if n.parent == node_id]

    def leaves(self, under: str | None = None) -> list[str]:
        found = [i for i, n in self.nodes.items() if not n.is_group and not self.children(i)]
        return [i for i in found if under is None or i == under or i.startswith(under + ".")]

    def ancestors(self, node_id: str) -> list[str]:
        up, found = self.nodes[node_id].parent, []
        while up is not None:
            found.append(up)
            up = self.nodes[up].parent
        return found

    def expected_ticks(self, chosen: list[str]) -> set[int]:
        done_after = {i: self.nodes[i].done or i in chosen for i in self.leaves()}
        changed = {self.nodes[i].box for i in chosen if not self.nodes[i].done}
        for leaf in chosen:
            for up in self.ancestors(leaf):
                node = self.nodes[up]
                if not node.is_group and not node.done and all(done_after[i] for i in self.leaves(up)):
                    changed.add(node.box)
        return {c for c in changed if c is not None}


@st.composite
def task_files(draw: st.DrawFn, with_depends: bool = False) -> Generated:
    tree: list[tuple[str, str | None]] = []

    def grow(prefix: str | None, depth: int) -> None:
        numbers = draw(st.sets(st.integers(1, 9), min_size=0 if depth else 1, max_size=3 if depth < 2 else 2))
        for number in sorted(numbers):
            node_id = f"{prefix}.{number}" if prefix else str(number)
            tree.append((node_id, prefix))
            if depth < 2:
                grow(node_id, depth + 1)

    grow(None, 0)
    if draw(st.booleans()):
        tree = draw(st.permutations(tree))  # hierarchy comes from the ids, not the document order
    nodes = {
        node_id: Node(node_id, parent, is_group=draw(st.integers(0, 4)) == 0) for node_id, parent in tree
    }
    generated = Generated("", nodes)
    if with_depends:
        leaves = generated.leaves()
        rank = {leaf: i for i, leaf in enumerate(draw(st.permutations(leaves)))}
        for leaf in leaves:
            earlier = sorted(other for other in leaves if rank[other] < rank[leaf])
            if earlier:
                nodes[leaf].depends = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True))
    text = "\ufeff" if draw(st.booleans()) else ""
    for node in nodes.values():
        for extra in draw(st.lists(EXTRA_LINES, max_size=2)):
            text += extra + draw(NEWLINES)
        top = "." not in node.id
        spelled = draw(st.sampled_from([node.id, node.id + "."] + ([node.id + ".0"] if top else [])))
        title = draw(SEPARATORS) + draw(TITLES)
        if node.is_group:
            text += "#" * draw(st.integers(1, 6)) + " " + spelled + title
        else:
            node.done = draw(st.booleans())
            indent, marker = draw(INDENTS), draw(MARKERS)
            node.box = len(text) + len(indent) + len(marker) + 2
            box = draw(st.sampled_from("xX")) if node.done else " "
            text += f"{indent}{marker} [{box}] {spelled}{title}{draw(TRAILING)}"
            if node.depends:
                text += draw(NEWLINES) + indent + "  - depends: " + ", ".join(node.depends)
        text += draw(NEWLINES)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    generated.text = text
    return generated


@PROPERTY
@given(task_files())
@pytest.mark.slow
def test_parse_reads_back_what_was_generated(generated: Generated) -> None:
    tasks = parse(generated.text)
    assert ids(tasks) == list(generated.nodes)
    for task in tasks.tasks:
        node = generated.nodes[task.id]
        assert (task.parent, task.is_group, task.done) == (node.parent, node.is_group, node.done)
    assert ids(tasks.leaves()) == generated.leaves()


@PROPERTY
@given(task_files(), st.data())
@pytest.mark.slow
def test_tick_changes_only_the_boxes_of_ticked_lines(generated: Generated, data: st.DataObject) -> None:
    open_leaves = [i for i in generated.leaves() if not generated.nodes[i].done]
    chosen = data.draw(st.lists(st.sampled_from(open_leaves), unique=True) if open_leaves else st.just([]))
    before = generated.text
    after = tick(before, chosen)
    assert len(after) == len(before) and len(after.encode()) == len(before.encode())
    changed = {i for i, (old, new) in enumerate(zip(before, after, strict=True)) if old != new}
    assert changed == generated.expected_ticks(chosen)
    assert all(before[i] == " " and after[i] == "x" for i in changed)
    reparsed = parse(after)
    assert all(reparsed.get(leaf).done for leaf in chosen)
    assert ids(reparsed) == ids(parse(before))


@PROPERTY
@given(task_files(), st.data())
@pytest.mark.slow
def test_tick_is_idempotent(generated: Generated, data: st.DataObject) -> None:
    leaves = generated.leaves()
    chosen = data.draw(st.lists(st.sampled_from(leaves), unique=True) if leaves else st.just([]))
    once = tick(generated.text, chosen)
    assert tick(once, chosen) == once
    assert tick(generated.text, []) == generated.text


@PROPERTY
@given(task_files(with_depends=True), st.data())
@pytest.mark.slow
def test_next_task_only_offers_tasks_whose_depends_are_done(
    generated: Generated, data: st.DataObject
) -> None:
    tasks = parse(generated.text)
    until = data.draw(st.sampled_from([None, *generated.nodes]))
    leaves = generated.leaves()
    unavailable = frozenset(data.draw(st.lists(st.sampled_from(leaves), unique=True)) if leaves else [])
    order = tasks.run_order(until)
    task = tasks.next_task(until, unavailable)
    if task is not None:
        assert task.is_leaf and not task.done and task.id not in unavailable
        assert all(tasks.is_done(dep) for dep in task.depends)
        assert task.id in order
    if not unavailable:
        assert (task.id if task else None) == (order[0] if order else None)
    assert tasks.stop_reached(until) == (order == [])


@settings(max_examples=60, deadline=None)
@given(task_files(with_depends=True), st.data())
@pytest.mark.slow
def test_run_order_is_next_task_repeated_with_ticks(generated: Generated, data: st.DataObject) -> None:
    until = data.draw(st.sampled_from([None, *generated.nodes]))
    expected = parse(generated.text).run_order(until)
    text, seen = generated.text, []
    while (task := parse(text).next_task(until)) is not None:
        seen.append(task.id)
        text = tick(text, [task.id])
    assert seen == expected
    assert parse(text).stop_reached(until)
