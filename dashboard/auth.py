"""Who is looking: the viewer of a dashboard page, socket or API call, and what they may see and do.

The contract every view uses: `current_viewer()` → Viewer (or None when nobody is signed in and
sign-in is required), `Viewer.sees(installation_id)`, `Viewer.role_in(installation_id)`.
Until sign-in is configured the dashboard is open (an operator's local view): the viewer sees
everything with the viewer role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ROLES = ("viewer", "team_member", "manager", "admin")  # as github_app.roles.Role, least powerful first


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in person or a script's token: the installations they see, with their role in each."""

    login: str
    roles: Mapping[int, str] = field(default_factory=dict)  # installation id → one of ROLES
    everything: bool = False  # sees every installation (the open local dashboard, an operator)
    default_role: str = "viewer"  # the role where `everything` applies and `roles` says nothing

    def sees(self, installation_id: int) -> bool:
        """Whether this viewer may see the executions of an installation."""
        return self.everything or installation_id in self.roles

    def role_in(self, installation_id: int) -> str | None:
        """The viewer's role in an installation, or None if they cannot see it."""
        if installation_id in self.roles:
            return self.roles[installation_id]
        return self.default_role if self.everything else None

    def may(self, installation_id: int, role: str) -> bool:
        """Whether the viewer holds at least `role` in the installation."""
        held = self.role_in(installation_id)
        return held is not None and ROLES.index(held) >= ROLES.index(role)


OPEN_VIEWER = Viewer("anonymous", everything=True)


def current_viewer() -> Viewer | None:
    """The viewer of the current request (sign-in is not configured yet: everyone sees everything)."""
    return OPEN_VIEWER
