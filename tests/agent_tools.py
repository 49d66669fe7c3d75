"""The real agent CLIs the tests drive (installed by tests/fixtures/agents/install_real_agents.sh): where they
are, the `agent_tools` fixture, and their versions at the end of pytest's report.

Outside CI a missing tool skips the tests that need it; in CI (`CI=true`) it fails them, loudly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

INSTALLER = Path(__file__).parent / "fixtures" / "agents" / "install_real_agents.sh"
PROGRAMS = ("aider", "claude")  # aider is also what the ollama tool runs
TESTS = "tests/test_real_agents.py"


def agents_home() -> Path:
    """Where the installer puts the tools: CLARITY_AGENTS_HOME, else ~/.cache/clarity-agents."""
    configured = os.environ.get("CLARITY_AGENTS_HOME")
    return Path(configured) if configured else Path.home() / ".cache" / "clarity-agents"


def bin_dir() -> Path:
    """The folder holding one link per tool: what the tests put on the worker's PATH (and nothing else does)."""
    return agents_home() / "bin"


def version(program: str) -> str:
    """`<program> --version` as it answers, or why it did not."""
    path = bin_dir() / program
    if not os.access(path, os.X_OK):
        return f"not installed (no {path})"
    try:
        done = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60, check=False,
                              stdin=subprocess.DEVNULL, env={**os.environ, "HOME": str(agents_home())})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not answer `--version`: {exc}"
    words = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return f"{words[-1]} ({path})" if done.returncode == 0 and words else f"`--version` failed (exit {done.returncode})"


@pytest.fixture(scope="session")
def agent_tools() -> Path:
    """The folder of the real tools; skipped without them outside CI, failed without them in CI."""
    missing = [program for program in PROGRAMS if not os.access(bin_dir() / program, os.X_OK)]
    if missing:
        why = (f"the real agent CLIs ({', '.join(missing)}) are not installed in {bin_dir()}: run {INSTALLER} "
               "(CLARITY_AGENTS_HOME chooses where)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must test the real agents, but {why}", pytrace=False)
        pytest.skip(why)
    return bin_dir()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the tools' versions whenever the real-agent tests ran (also under xdist: this runs in the controller)."""
    ran = any(getattr(report, "nodeid", "").startswith(TESTS)
              for kind, reports in terminalreporter.stats.items() if kind != "deselected" for report in reports)
    if not ran:
        return
    terminalreporter.section("real agent CLIs")
    for program in PROGRAMS:
        terminalreporter.write_line(f"{program}: {version(program)}")
