"""`clarity tasks FILE [--until ID] [--json]`: the tree, the run order, and errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main

TASKS = """\
# Tasks
- [ ] 1. Project setup
  - [x] 1.1 Create package skeleton
  - [ ] 1.2 Add CI workflow
    - depends: 1.1
    - tool: aider
    - check: pytest -q tests/test_ci.py
### 2.3 Database health
- [ ] 2.3.1 Add index
  - depends: 3
  - timeout: 15m
- [ ] 3 Later
"""


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    path = tmp_path / "tasks_list.md"
    path.write_bytes(TASKS.replace("\n", "\r\n").encode())
    return path


def test_tasks_prints_the_tree_and_the_run_order(
    tasks_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tasks", str(tasks_file), "--until", "2.3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tasks_file}: 4 leaf tasks, 1 done"
    assert out[1:6] == [
        "[ ] 1 Project setup",
        "  [x] 1.1 Create package skeleton",
        "  [ ] 1.2 Add CI workflow  (depends: 1.1; tool: aider)",
        "        check: pytest -q tests/test_ci.py",
        "[ ] 2.3 Database health  (group)",
    ]
    assert "  [ ] 2.3.1 Add index  (depends: 3; timeout: 15m)" in out
    assert out[-1] == "Run order (until 2.3): 1.2 → 3 → 2.3.1"


def test_tasks_without_a_stop_point_runs_everything(
    tasks_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tasks", str(tasks_file), "--until", "1.1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Run order (until 1.1): nothing to do"
    assert main(["tasks", str(tasks_file)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "Run order (all): 1.2 → 3 → 2.3.1"


def test_tasks_json_shape(tasks_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", str(tasks_file), "--until", "1.0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"tasks", "order", "until"}
    assert result["order"] == ["1.2"]
    assert result["until"] == "1"
    assert [t["id"] for t in result["tasks"]] == ["1", "1.1", "1.2", "2.3", "2.3.1", "3"]
    assert result["tasks"][2] == {
        "id": "1.2",
        "title": "Add CI workflow",
        "done": False,
        "depends": ["1.1"],
        "checks": ["pytest -q tests/test_ci.py"],
        "tool": "aider",
        "parent": "1",
        "is_group": False,
        "line": 4,
    }
    assert result["tasks"][3]["is_group"] is True


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("- [ ] 1 A\n  - depends: 7.1\n", [], "{path} line 2: task 1 depends on 7.1, which does not exist"),
        ("- [ ] 1 A\n- [ ] 1.0 B\n", [], "{path} line 2: task 1 appears twice (lines 1 and 2)"),
        ("- [ ] 1 A\n", ["--until", "9.9"], "stop point 9.9 is not a task or group in {path}"),
    ],
)
def test_tasks_reports_bad_input_on_stderr_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str], message: str
) -> None:
    path = tmp_path / "tasks_list.md"
    path.write_text(content, encoding="utf-8")
    assert main(["tasks", str(path), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "clarity: " + message.format(path=path) + "\n"


def test_tasks_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.md"
    assert main(["tasks", str(missing)]) == 2
    assert capsys.readouterr().err == f"clarity: cannot read {missing}: No such file or directory\n"


def test_usage_errors_and_help_are_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["tasks"]) == 2
    assert main(["--help"]) == 0
    assert "tasks" in capsys.readouterr().out


def test_runs_as_a_module(tasks_file: Path) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    ok = subprocess.run(
        [sys.executable, "-m", "cli", "tasks", str(tasks_file), "--json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["order"] == ["1.2", "3", "2.3.1"]
    bad = subprocess.run(
        [sys.executable, "-m", "cli", "tasks", str(tasks_file), "--until", "4"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr == f"clarity: stop point 4 is not a task or group in {tasks_file}\n"
