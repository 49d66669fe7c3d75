"""Per-repository tool statistics (DESIGN §8 "per-tool success counters"): what adaptive routing reads.

One hash per repository, `{namespace}:repo:<owner/name>:tools`, fields `<tool>:successes`,
`<tool>:failures` and `<tool>:seconds` (total latency). A "try" is one tool's whole go at one task
(all its attempts): it counts once, as a success when the task passed its checks with that tool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis


@dataclass(frozen=True, slots=True)
class ToolStats:
    """How one tool has done in one repository."""

    successes: int = 0
    failures: int = 0
    seconds: float = 0.0

    @property
    def tries(self) -> int:
        """Every recorded try, passed or not."""
        return self.successes + self.failures

    @property
    def score(self) -> float:
        """The Laplace-smoothed success rate (s+1)/(n+2): 0.5 for an untried tool, never 0 or 1."""
        return (self.successes + 1) / (self.tries + 2)

    @property
    def mean_seconds(self) -> float:
        """Average latency of a try (0 when never tried)."""
        return self.seconds / self.tries if self.tries else 0.0

    def after(self, passed: bool, seconds: float) -> ToolStats:
        """These stats with one more try (what `ToolStatsStore.record` does in Redis)."""
        return ToolStats(self.successes + int(passed), self.failures + int(not passed), self.seconds + seconds)


class ToolStatsStore:
    """Read and record tool statistics in Redis under a namespace."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.r: Any = client
        self.namespace = namespace

    def _key(self, repo: str) -> str:
        return f"{self.namespace}:repo:{repo}:tools"

    def record(self, repo: str, tool: str, passed: bool, seconds: float) -> None:
        """Count one try of `tool` in `repo` (atomically, so concurrent workers add up)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(self._key(repo), f"{tool}:{'successes' if passed else 'failures'}", 1)
        pipe.hincrbyfloat(self._key(repo), f"{tool}:seconds", max(0.0, seconds))
        pipe.execute()

    def record_for(self, repo: str) -> Callable[[str, bool, float], None]:
        """`record` bound to one repository: (tool, passed, seconds)."""
        return lambda tool, passed, seconds: self.record(repo, tool, passed, seconds)

    def read(self, repo: str) -> dict[str, ToolStats]:
        """Every tool's stats in `repo`, by tool name (tools never tried are absent)."""
        raw: dict[str, str] = self.r.hgetall(self._key(repo))
        fields: dict[str, dict[str, str]] = {}
        for name, value in raw.items():
            tool, _, kind = str(name).rpartition(":")
            fields.setdefault(tool, {})[kind] = str(value)
        return {tool: ToolStats(int(f.get("successes", 0)), int(f.get("failures", 0)), float(f.get("seconds", 0)))
                for tool, f in sorted(fields.items())}
