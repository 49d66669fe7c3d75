"""Comment dedupe: a comment command is acted on once per version of the comment, however often
GitHub delivers it (`comment:<id>:<action>:<version>`, SET NX EX)."""

from __future__ import annotations

from clarity.store.keyspace import Keyspace


class CommentClaims(Keyspace):
    """The claims on comments already handled."""

    def claim_comment(self, comment_id: int, action: str, version: str, ttl: int) -> bool:
        """True the first time this version of a comment is handled for `action` within `ttl` seconds (SET NX EX)."""
        return bool(self.r.set(self._k("comment", comment_id, action, version), "1", nx=True, ex=ttl))
