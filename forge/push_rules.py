"""The forge's pre-receive hook: refuse what GitHub refuses at push time (stdlib only: git runs it as a script).

git runs it with the pushed refs on stdin (``<old> <new> <ref>`` a line) and the pushed objects in
quarantine. Two refusals, as GitHub words them:

- a push that adds, changes or deletes a file under ``.github/workflows/`` with an installation token
  whose app lacks ``workflows: write``; the reason is written to ``FORGE_PUSH_VERDICT`` so the forge can
  put it into git's report (``! [remote rejected] HEAD -> main (refusing to allow ...)``);
- a blob over ``FORGE_PUSH_MAX_BYTES`` (GitHub: 100 MB), with GitHub's ``GH001`` lines on stderr and
  git's own "pre-receive hook declined".
"""

from __future__ import annotations

import os
import subprocess
import sys

ZERO = "0" * 40
WORKFLOWS = ".github/workflows/"
MAX_BYTES = 100 * 1024 * 1024


def workflow_refusal(path: str) -> str:
    """GitHub's words when an app without the workflows permission touches `path`."""
    return (f"refusing to allow a GitHub App to create or update workflow `{path}` "
            "without `workflows` permission")


def _git(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def _new_commits(new: str) -> list[str]:
    return _git("rev-list", new, "--not", "--all").split()


def _touched_workflow(commits: list[str]) -> str | None:
    for commit in commits:
        for path in _git("diff-tree", "-r", "--root", "--no-commit-id", "--name-only", "-m", commit).split("\n"):
            if path.startswith(WORKFLOWS):
                return path
    return None


def _large_files(new: str, limit: int) -> list[tuple[str, int]]:
    listing = _git("rev-list", "--objects", new, "--not", "--all")
    checked = _git("cat-file", "--batch-check=%(objecttype) %(objectsize) %(rest)", stdin=listing)
    found = []
    for line in checked.splitlines():
        kind, size, path = (line.split(" ", 2) + ["", ""])[:3]
        if kind == "blob" and int(size) > limit:
            found.append((path, int(size)))
    return found


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.2f} MB"


def main() -> int:
    """Check every pushed ref; exit 1 (git then refuses the whole push) when one breaks a rule."""
    may_touch_workflows = os.environ.get("FORGE_PUSH_WORKFLOWS", "1") == "1"
    limit = int(os.environ.get("FORGE_PUSH_MAX_BYTES", str(MAX_BYTES)))
    verdicts: list[str] = []
    large: list[tuple[str, int]] = []
    for line in sys.stdin.read().splitlines():
        _, new, ref = line.split(" ", 2)
        if new == ZERO:
            continue
        large += _large_files(new, limit)
        if not may_touch_workflows and (path := _touched_workflow(_new_commits(new))):
            verdicts.append(f"{ref}\t{workflow_refusal(path)}")
    if large:
        print("error: GH001: Large files detected. You may want to try Git Large File Storage - "
              "https://git-lfs.github.com.", file=sys.stderr)
        print("error: See https://gh.io/lfs for more information.", file=sys.stderr)
        for path, size in large:
            print(f"error: File {path} is {_mb(size)}; this exceeds GitHub's file size limit of {_mb(limit)}",
                  file=sys.stderr)
        return 1
    if verdicts:
        if target := os.environ.get("FORGE_PUSH_VERDICT"):
            with open(target, "w", encoding="utf-8") as out:
                out.write("\n".join(verdicts) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
