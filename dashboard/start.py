"""The overview's "Initialize customer execution" form: the repositories a viewer may start an execution on.

The form acts through the REST API from the browser (static/controls.js): `GET /api/devteam/repos/<owner>/
<repo>/tasks` fills the stop-point picker and `POST /api/devteam/executions/initialize` starts, so a start
from the page passes exactly the checks a script's does (role, installation, stop point, CSRF for the
session). This module only decides what the pickers offer and to whom.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clarity.agentconfig import TOOLS
from clarity.store import Store
from dashboard.auth import Viewer
from dashboard.board import Board

ROLE = "team_member"  # what dashboard.api's initialize requires (DESIGN §5: team_member may run)


@dataclass(frozen=True, slots=True)
class Customer:
    """One installation and the repositories of it the viewer may start on, by name."""

    installation_id: int
    account: str
    repositories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StartForm:
    """What the form offers: repositories by customer, and the tools a run may name."""

    customers: tuple[Customer, ...]
    tools: tuple[str, ...] = TOOLS


def choices(installations: Iterable[Mapping[str, Any]], executions: Iterable[tuple[int, str, str]],
            viewer: Viewer) -> tuple[Customer, ...]:
    """Repositories the viewer holds `ROLE` on, by customer (account name), each customer's by name.

    The registry (installation webhooks) is the source; a suspended installation offers nothing. An
    installation the registry has not heard of (installed before Clarity listened) offers the
    repositories the viewer's executions show: `executions` is (installation, account, repository).
    """
    found: dict[int, tuple[str, set[str]]] = {}
    known: set[int] = set()
    for record in installations:
        installation = int(record.get("id", 0))
        known.add(installation)
        if record.get("status") == "active" and viewer.may(installation, ROLE):
            found[installation] = (str(record.get("account", "")), {str(r) for r in record.get("repos") or ()})
    for installation, account, repository in executions:
        if installation not in known and viewer.may(installation, ROLE):
            found.setdefault(installation, (account, set()))[1].add(repository)
    return tuple(Customer(inst, account, tuple(sorted(repos, key=str.lower)))
                 for inst, (account, repos) in sorted(found.items(), key=lambda item: item[1][0].lower())
                 if repos)


def form(store: Store, viewer: Viewer, board: Board) -> StartForm | None:
    """The form for this viewer, or None when there is nowhere they may start (the page then leaves it out)."""
    shown = ((c.installation_id, c.account, r.name) for c in board.customers for r in c.repositories)
    customers = choices(store.installations(), shown, viewer)
    return StartForm(customers) if customers else None
