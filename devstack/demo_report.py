"""The demo's closing listing: the PR, the check runs, the comments, the ticked list and the commits."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from typing import Any

COMMENT_WIDTH = 150  # characters per printed comment line; longer lines end at a word, with "…"
COMMENT_LINES = 6  # lines per printed comment; the rest is counted, not shown
_HIDDEN = re.compile(r"<!--.*?-->", re.DOTALL)  # GitHub does not show HTML comments (Clarity's markers)
_LINK = re.compile(r"\[([^\]\n]+)\]\([^)\s]+\)")  # [text](url) reads as its text, as on GitHub


def clip(line: str, width: int = COMMENT_WIDTH) -> str:
    """`line` whole if it fits, else cut at its last space within `width`, with "…"; never inside a word
    (a line without a space to cut at, such as one long URL, is printed whole)."""
    line = line.rstrip()
    if len(line) <= width:
        return line
    cut = line.rfind(" ", 0, width)
    return line[:cut].rstrip() + "…" if cut > 0 else line


def comment_lines(body: str) -> list[str]:
    """A comment's lines as GitHub shows them (links as their text, no HTML comments), a few, each clipped
    at a word."""
    shown = _LINK.sub(r"\1", _HIDDEN.sub("", body))
    lines = [clip(line) for line in shown.strip().splitlines() if line.strip()]
    if len(lines) > COMMENT_LINES:
        rest = len(lines) - COMMENT_LINES + 1
        lines = [*lines[: COMMENT_LINES - 1], f"… ({rest} more lines)"]
    return lines


def latest_per_name(runs: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], int]]:
    """Each check-run name once, in order of first appearance, with its newest run and how many it replaced.

    Clarity re-creates its summary check on every commit it pushes (a check run belongs to a commit) and
    closes the old one as "Continued on a newer commit"; only the newest says where the execution is.
    """
    newest: dict[str, Mapping[str, Any]] = {}
    count: dict[str, int] = {}
    for run in runs:
        name = str(run["name"])
        if name not in newest or int(run["id"]) > int(newest[name]["id"]):
            newest[name] = run
        count[name] = count.get(name, 0) + 1
    return [(newest[name], count[name] - 1) for name in newest]


def report(say: Callable[[str], None], state: Mapping[str, Any], repo: str, forge_url: str,
           git_dir: str) -> None:
    """Print the PR, the check runs, the comments on issue #1, the ticked list and the branch's commits."""
    say("\nPull request:")
    for issue in state["issues"]:
        if issue["repo"] == repo and issue.get("pull"):
            pull = issue["pull"]
            say(f"  #{issue['number']} {issue['title']} ({issue['state']}): {pull['head_ref']} → {pull['base_ref']}")
            say(f"  {forge_url}/{repo}/pull/{issue['number']}")
    say("\nCheck runs (the newest of each name):")
    for run, replaced in latest_per_name(r for r in state["check_runs"] if r["repo"] == repo):
        title = f"  ({run['title']})" if run["name"].startswith("Clarity: run ") else ""
        older = f"  [{replaced} earlier on older commits]" if replaced else ""
        say(f"  {run['conclusion'] or run['status']:>9}  {run['name']}{title}{older}")
    say("\nComments on issue #1:")
    for comment in state["comments"]:
        if comment["repo"] == repo and comment["issue_number"] == 1:
            first, *rest = comment_lines(comment["body"]) or [""]
            say(f"  @{comment['author']}: {first}")
            for line in rest:
                say(f"      {line}")
    say("\ntasks_list.md on clarity/issue-1:")
    say("  " + _git(git_dir, "show", "clarity/issue-1:tasks_list.md").rstrip().replace("\n", "\n  "))
    say("\ngit log clarity/issue-1:")
    say("  " + _git(git_dir, "log", "--oneline", "clarity/issue-1").strip().replace("\n", "\n  "))


def _git(git_dir: str, *argv: str) -> str:
    result = subprocess.run(["git", f"--git-dir={git_dir}", *argv], capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else f"(git {' '.join(argv)}: {result.stderr.strip()})"
