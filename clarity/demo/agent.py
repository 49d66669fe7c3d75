"""The demo's deterministic agent: it "implements" each sample task from a recipe, like a tireless intern.

Task 1.3 gets it wrong on the first attempt on purpose, so the demo shows a retry driven by the
failing check's output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

GREET = '''"""Greetings."""


def hello(name: str) -> str:
    """Greet someone."""
    return f"Hello, {name}!"
'''

# Not the same length as SHOUT: Python trusts a cached .pyc whose source has the same size and mtime
# second, so a same-sized fix written within a second of the mistake would be tested as the mistake.
SHOUT_WRONG = '''

def shout(name: str) -> str:
    """Greet someone loudly."""
    return hello(name)
'''

SHOUT = '''

def shout(name: str) -> str:
    """Greet someone loudly."""
    return hello(name).upper()
'''

TESTS = '''import unittest

import greet


class GreetTest(unittest.TestCase):
    def test_hello(self) -> None:
        self.assertEqual(greet.hello("Ada"), "Hello, Ada!")


if __name__ == "__main__":
    unittest.main()
'''

CLI = '''"""Command line: python3 cli.py NAME"""

import sys

import greet

print(greet.hello(sys.argv[1] if len(sys.argv) > 1 else "world"))
'''


def main() -> int:
    """Apply the recipe of the task named in CLARITY_TASK_ID inside the workspace."""
    task = os.environ["CLARITY_TASK_ID"]
    attempt = int(os.environ.get("CLARITY_ATTEMPT", "1"))
    work = Path(os.environ.get("CLARITY_WORKDIR", "."))
    print(f"demo agent: task {task}, attempt {attempt}, prompt {sys.argv[1] if len(sys.argv) > 1 else '-'}")
    if task == "1.1":
        (work / "greet.py").write_text(GREET)
    elif task == "1.2":
        (work / "test_greet.py").write_text(TESTS)
    elif task == "1.3":
        source = (work / "greet.py").read_text().split("\n\ndef shout")[0].rstrip("\n") + "\n"
        (work / "greet.py").write_text(source + (SHOUT_WRONG if attempt == 1 else SHOUT))
    elif task == "2.1":
        (work / "cli.py").write_text(CLI)
    elif task == "2.2":
        with (work / "README.md").open("a") as readme:
            readme.write("\n## Usage\n\n    python3 cli.py Ada\n")
    else:
        print(f"demo agent: no recipe for task {task}", file=sys.stderr)
        return 1
    print("demo agent: done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
