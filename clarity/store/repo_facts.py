"""What the engine learns of a repository while working in it: how long its tasks take (the newest
few, for estimates; `repo:<repo>:durations`, and `durations` across repositories), and whether GitHub
refuses it draft PRs (`repo:<repo>:no-drafts`, believed for a day)."""

from __future__ import annotations

from clarity.store.keyspace import Keyspace

DURATIONS_KEPT = 50  # task durations kept per repository for estimates
DRAFTS_REFUSED_TTL = 24 * 3600  # how long a repository's refusal of draft PRs is believed


class RepoFacts(Keyspace):
    """Task durations and draft-PR refusals, per repository."""

    def _durations_key(self, repo: str | None) -> str:
        """A repository's durations, or (None) every repository's."""
        return self._k("durations") if repo is None else self._k("repo", repo, "durations")

    def _no_drafts_key(self, repo: str) -> str:
        return self._k("repo", repo, "no-drafts")

    def record_duration(self, repo: str, seconds: float) -> None:
        """Remember how long a finished task took (the newest few per repository, and overall)."""
        pipe = self.r.pipeline()
        for key in (self._durations_key(repo), self._durations_key(None)):
            pipe.lpush(key, round(seconds, 3))
            pipe.ltrim(key, 0, DURATIONS_KEPT - 1)
        pipe.execute()

    def durations(self, repo: str | None = None) -> list[float]:
        """Recent task durations of a repository (or of every repository), newest first."""
        return [float(v) for v in self.r.lrange(self._durations_key(repo or None), 0, -1)]

    def refuse_drafts(self, repo: str, ttl: int = DRAFTS_REFUSED_TTL) -> None:
        """Remember that GitHub refuses draft PRs in this repository (private, of a Free or Pro owner).

        For a day: a plan bought or a repository made public is noticed by the next PR after that.
        """
        self.r.set(self._no_drafts_key(repo), "1", ex=ttl)

    def drafts_refused(self, repo: str) -> bool:
        """Whether GitHub refused a draft PR in this repository lately (see `refuse_drafts`)."""
        return bool(self.r.exists(self._no_drafts_key(repo)))
