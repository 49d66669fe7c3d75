"""Who may do what (DESIGN §5): a commenter's repository permission mapped to a Clarity role."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any


class Role(StrEnum):
    """Clarity's roles, from least to most powerful."""

    VIEWER = "viewer"
    TEAM_MEMBER = "team_member"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order for comparisons: viewer < team_member < manager < admin."""
        return list(Role).index(self)


_FROM_PERMISSION = {"admin": Role.ADMIN, "maintain": Role.TEAM_MEMBER, "write": Role.TEAM_MEMBER}
# GitHub's built-in repository roles; any other `role_name` is an organisation's custom role.
BUILT_IN_ROLES = ("admin", "maintain", "write", "triage", "read")


def repository_role(permission: str, role_name: str | None) -> str:
    """The role a collaborator-permission answer grants: its built-in `role_name`, else the base `permission`.

    `role_name` is precise for built-in roles (`maintain` and `triage` read `write` and `read` in
    `permission`); a custom role names itself there ("triage-plus") and its base role in `permission`.
    """
    name = (role_name or "").lower()
    return name if name in BUILT_IN_ROLES else permission.lower()


def role_for(permission: str, login: str, managers: Iterable[str] = ()) -> Role:
    """Map a repository permission (and `.github/clarity.yml` managers) to a role; read/none → viewer."""
    role = _FROM_PERMISSION.get(permission.lower(), Role.VIEWER)
    if role is Role.TEAM_MEMBER and login.lower() in {m.lower() for m in managers}:
        return Role.MANAGER
    return role


def role_for_flags(flags: Mapping[str, Any] | None) -> Role:
    """DESIGN §5 from a repository's permission flags (the dashboard's sign-in reads these): admin → admin;
    maintain or push → team_member; anything else → viewer."""
    found = flags or {}
    if found.get("admin"):
        return Role.ADMIN
    if found.get("maintain") or found.get("push"):
        return Role.TEAM_MEMBER
    return Role.VIEWER


def best_role(held: Iterable[Role]) -> Role:
    """The most powerful of some roles (viewer when there are none)."""
    return max(held, key=lambda role: role.rank, default=Role.VIEWER)


def refusal(permission: str, login: str) -> str:
    """The reply for someone who may not steer Clarity on this repository."""
    return (f"@{login} only people with write access to this repository can steer Clarity "
            f"(your permission here is `{permission}`). Ask a maintainer to run the command.")


def refusal_for(verb: str, needed: Role, role: Role, login: str) -> str:
    """The reply for someone whose role is too low for one command."""
    return (f"@{login} `/clarity {verb}` needs the {needed} role; yours here is {role}. "
            "Managers are named under `managers:` in `.github/clarity.yml`; admins may do everything.")
