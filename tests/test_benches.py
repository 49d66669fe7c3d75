"""The engine benches still run: each in a tiny configuration, as a user runs it (a script printing one JSON line).

Their numbers are not judged here (timing goals live in bench/ and docs/PERFORMANCE.md); only that
they finish, say what they measured and leave nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # each bench starts a stack of its own

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(BENCH / script), *args], cwd=BENCH.parent, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    [line] = out.splitlines()
    return json.loads(line)


def test_overhead_and_parallel_benches_run_in_a_tiny_configuration() -> None:
    # Both at once: each starts its own stack (ports, namespace, temporary directory of its own).
    overhead = _start("overhead_bench.py", "--tasks", "1", "--timeout", "60")
    parallel = _start("parallel_bench.py", "--repos", "2", "--tasks", "1", "--sleep", "0", "--workers", "2",
                      "--timeout", "60")

    result = _result(overhead)
    assert result["bench"] == "overhead" and result["tasks"] == 1
    [clarity] = result["results"]["clarity"]
    assert clarity["per_task_s"] > 0 and result["shell_per_task_s"] > 0 and result["ratio"] > 0
    assert set(clarity["phases_median_s"]) == {"prepare", "agent", "finish", "report"}
    assert clarity["rest_calls"] > 0 and clarity["git_http_calls"] > 0
    assert result["keys_removed"] > 0

    result = _result(parallel)
    assert result["bench"] == "parallel"
    [row] = result["results"]
    assert row["workers"] == 2 and row["task_steps"] == 2 and row["wall_s"] > 0 and row["speedup"] == 1.0
    assert row["keys_removed"] > 0
