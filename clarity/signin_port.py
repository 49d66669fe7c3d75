"""What the dashboard's sign-in asks of GitHub: a Protocol in the kernel, implemented by `github_app.oauth`.

The dashboard may import only `clarity` (DESIGN §2), and everything that speaks GitHub lives in
`github_app`. So the sign-in views (dashboard.signin) talk to this port, and `app.create_app` (the
composition root) hands them the github_app implementation, as it hands the REST API its engine port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class SignInError(Exception):
    """GitHub did not sign the person in; the message says what to do."""


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who signed in, and their role (one of dashboard.auth.ROLES) in each installation they reach."""

    login: str
    roles: Mapping[int, str] = field(default_factory=dict)


class SignInPort(Protocol):
    """GitHub's OAuth web flow: where to send the browser, the code exchange, and who the user is."""

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        """GitHub's authorize page for this app, sending the browser back to `redirect_uri` with `state`."""
        ...

    def exchange_code(self, code: str, redirect_uri: str) -> str:
        """The user access token for a one-time code; SignInError with what to do when GitHub refuses."""
        ...

    def read_viewer(self, token: str) -> SignedIn:
        """Who the token's user is, and their role in each installation they reach (SignInError if not)."""
        ...
