"""What a person can do with a running demo (`clarity demo --keep`): commands to paste into a shell.

Each line works as printed: the programs are named so that this shell finds the ones of the demo's
environment, and the environment they need (Redis, namespace) is in the line itself.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Running:
    """The facts of a running demo that its commands name."""

    web_url: str
    forge_url: str
    namespace: str
    redis_url: str
    repo: str
    installation: int
    execution: str


def program(name: str, path: str | None = None) -> str:
    """`name` if the shell's PATH finds this environment's copy, else the copy's full path."""
    mine = Path(sys.executable).parent / name
    if not mine.exists():
        return ""
    found = shutil.which(name, path=path)
    # abspath, not resolve: a venv's python is a symlink to the system's, which lacks our packages
    return name if found and os.path.abspath(found) == os.path.abspath(mine) else shlex.quote(str(mine))


def python(path: str | None = None) -> str:
    """This interpreter, as the shell can name it."""
    for name in ("python", "python3"):
        if os.path.abspath(Path(sys.executable).parent / name) == os.path.abspath(sys.executable):
            return program(name, path)
    return shlex.quote(sys.executable)


def clarity(path: str | None = None) -> str:
    """The `clarity` command of this environment."""
    return program("clarity", path) or f"{python(path)} -m cli"


def recipes(demo: Running, path: str | None = None) -> list[str]:
    """The shell lines (with `#` comments) that sign in, make a token, call the API and comment."""
    env = [f"CLARITY_NAMESPACE={shlex.quote(demo.namespace)}"]
    note = ""
    if urlsplit(demo.redis_url).password:  # never print a password: the shell already has it
        note = " (REDIS_URL as in your environment: it holds a password, so it is not printed here)"
    else:
        env.insert(0, f"REDIS_URL={shlex.quote(demo.redis_url)}")
    api = f"{demo.web_url}/api/devteam/executions/{demo.execution}"
    create = (f"{' '.join(env)} {clarity(path)} tokens create --role team_member "
              f"--installation {demo.installation} --name demo")
    target = shlex.quote(f"{demo.repo}#1")
    return [
        f"# an API token (team_member on {demo.repo}'s installation {demo.installation}){note}, then the API:",
        f"TOKEN=$({create})",
        f'curl -s -H "Authorization: Bearer $TOKEN" {api}/progress',
        f'curl -s -H "Authorization: Bearer $TOKEN" {demo.web_url}/api/devteam/executions',
        "# comment on the issue as ada (python -m forge finds this demo's forge), e.g. to run the rest:",
        f"{python(path)} -m forge comment {target} {shlex.quote('/clarity run')} --user ada",
    ]
