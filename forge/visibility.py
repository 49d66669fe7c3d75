"""The lag between a push and the REST API seeing it, which github.com has and tests can switch on.

Right after a push GitHub's REST API may not know the new commit yet: opening a PR from the branch
answers 422 (`head` invalid) and creating a check run on the commit answers 422 "No commit found for
SHA". The forge answers the same while `delay` seconds have not passed since the push that brought a
branch or a commit (0, the default: everything is visible at once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping


class PushVisibility:
    """What the REST API does not see yet: branches and commits of recent pushes (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delay = 0.0
        self._branches: dict[tuple[str, str], float] = {}  # (repo, branch) → when it was pushed
        self._commits: dict[tuple[str, str], float] = {}  # (repo, sha) → when it was pushed

    def set_delay(self, seconds: float) -> None:
        """How long a push stays invisible from now on (0 switches the lag off and forgets pushes)."""
        with self._lock:
            self.delay = max(float(seconds), 0.0)
            if not self.delay:
                self._branches.clear()
                self._commits.clear()

    def pushed(self, repo: str, before: Mapping[str, str], after: Mapping[str, str]) -> None:
        """Note a push: every branch it moved, and the commit each now points at."""
        if not self.delay:
            return
        now = time.monotonic()
        with self._lock:
            for branch, sha in after.items():
                if before.get(branch) != sha:
                    self._branches[(repo.lower(), branch)] = now
                    self._commits[(repo.lower(), sha)] = now

    def branch_hidden(self, repo: str, branch: str) -> bool:
        """Whether the REST API does not see the branch's last push yet."""
        return self._hidden(self._branches, (repo.lower(), branch))

    def commit_hidden(self, repo: str, sha: str) -> bool:
        """Whether the REST API does not know the commit yet."""
        return self._hidden(self._commits, (repo.lower(), sha))

    def _hidden(self, table: dict[tuple[str, str], float], key: tuple[str, str]) -> bool:
        with self._lock:
            at = table.get(key)
            return at is not None and time.monotonic() - at < self.delay
