"""Annotations read from real tool output formats, batched by GitHub's 50-per-request limit."""

from __future__ import annotations

import pytest

from github_app.annotations import Annotation, batches, parse

PYTEST = """\
_________________________________ test_add _________________________________

    def test_add():
>       assert add(1, 2) == 4
E       assert 3 == 4

tests/test_calc.py:7: AssertionError
=========================== short test summary info ============================
FAILED tests/test_calc.py::test_add - assert 3 == 4
"""
RUFF = "calc.py:3:1: F401 [*] `os` imported but unused\n/work/ws/acme/calc.py:9:80: E501 Line too long (95 > 88)\n"
FLAKE8 = "./pkg/mod.py:12:5: E303 too many blank lines (3)\n"
ESLINT_UNIX = "src/index.js:4:10: 'x' is assigned a value but never used. [Error/no-unused-vars]\n"
TSC = "src/app.ts(12,5): error TS2322: Type 'string' is not assignable to type 'number'.\n"


@pytest.mark.parametrize(("output", "expected"), [
    (PYTEST, [Annotation("tests/test_calc.py", 7, "AssertionError")]),
    (RUFF, [Annotation("calc.py", 3, "F401 [*] `os` imported but unused"),
            Annotation("calc.py", 9, "E501 Line too long (95 > 88)")]),
    (FLAKE8, [Annotation("pkg/mod.py", 12, "E303 too many blank lines (3)")]),
    (ESLINT_UNIX, [Annotation("src/index.js", 4, "'x' is assigned a value but never used. [Error/no-unused-vars]")]),
    (TSC, [Annotation("src/app.ts", 12, "TS2322: Type 'string' is not assignable to type 'number'.")]),
    ("all good\n3 passed in 0.1s\n", []),
    ("/usr/lib/python3.11/unittest/case.py:10: AssertionError\n", []),
    ("tests/test_x.py:3: in test_y\n", []),
])
def test_formats(output: str, expected: list[Annotation]) -> None:
    assert parse(output, workdir="/work/ws/acme") == expected


def test_duplicates_are_dropped_and_titles_kept() -> None:
    found = parse(RUFF + RUFF, workdir="/work/ws/acme", title="ruff check .")
    assert len(found) == 2 and {a.title for a in found} == {"ruff check ."}


def test_github_shape_and_batches_of_fifty() -> None:
    many = [Annotation("a.py", n, "E1 x") for n in range(1, 121)]
    groups = batches(many)
    assert [len(g) for g in groups] == [50, 50, 20]
    assert groups[0][0] == {"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "failure",
                            "message": "E1 x"}
    assert batches([]) == [[]]
