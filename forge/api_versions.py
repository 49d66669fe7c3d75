"""Which REST API versions the forge knows: like GitHub, a request naming another one is answered 400.

github.com knows `2022-11-28` and `2026-03-10`; GitHub Enterprise Server documents only `2022-11-28`
(`PUT /_forge/api-versions {"mode": "ghes"}` makes the forge behave like it).
"""

from __future__ import annotations

import threading

GITHUB_COM = ("2022-11-28", "2026-03-10")
GHES = ("2022-11-28",)
MODES = {"github.com": GITHUB_COM, "ghes": GHES}
HEADER = "X-GitHub-Api-Version"


def refusal(version: str, known: tuple[str, ...]) -> str:
    """GitHub's 400 message for a version it does not know."""
    newest = max(known)
    supported = ", ".join(f'"{v}" (most recent)' if v == newest else f'"{v}"' for v in sorted(known, reverse=True))
    return (f'The version you specified in the "X-GitHub-API-Version" request header, "{version}", is not a '
            f"supported version. The following versions are currently supported: {supported}.")


class ApiVersions:
    """The versions the forge accepts now (thread-safe; the admin API can change them)."""

    def __init__(self, known: tuple[str, ...] = GITHUB_COM) -> None:
        self._lock = threading.Lock()
        self._known = tuple(known)

    def known(self) -> tuple[str, ...]:
        """The versions accepted now."""
        with self._lock:
            return self._known

    def set(self, known: tuple[str, ...]) -> None:
        """Accept exactly these versions from now on."""
        if not known:
            raise ValueError("at least one API version must be known")
        with self._lock:
            self._known = tuple(known)

    def check(self, version: str | None) -> str | None:
        """None when the request may go on (no header means GitHub's default), else the 400 message."""
        known = self.known()
        if version is None or version in known:
            return None
        return refusal(version, known)
