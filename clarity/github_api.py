"""The GitHub REST API version Clarity speaks, and the githubkit clients that name only that version.

githubkit sends its newest version (`X-GitHub-Api-Version: 2026-03-10` in 0.16) and parses answers with
that version's models; GitHub Enterprise Server knows only `2022-11-28` and answers 400 to any other. Every
client Clarity builds (the app and its installations, the dashboard's sign-in, `clarity setup`) comes from
`client()`: its `rest` uses the configured version's models where githubkit ships them, and every request it
sends, token minting and GraphQL included, names that version. GraphQL errors are raised as GraphQLRefused,
a RequestFailed, so they are handled wherever REST failures are.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Any

import httpx
from githubkit import GitHub, Response
from githubkit.auth.base import BaseAuthStrategy
from githubkit.exception import GraphQLFailed, RequestFailed
from githubkit.graphql import GraphQLNamespace, GraphQLResponse
from githubkit.versions import LATEST_VERSION, VERSIONS, RestVersionSwitcher

from clarity.settings import GITHUB_API_VERSION

log = logging.getLogger(__name__)

HEADER = "X-GitHub-Api-Version"


class PinnedRest(RestVersionSwitcher):
    """`gh.rest.<namespace>` in one REST API version (githubkit's switcher defaults to its newest)."""

    def __init__(self, github: GitHub[Any], version: str) -> None:
        super().__init__(github)
        self._version = version

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(self(self._version), name)  # type: ignore[call-overload]


class GraphQLRefused(RequestFailed):
    """GitHub's GraphQL API answered `errors` (with HTTP 200): a RequestFailed, so REST's handlers catch it too.

    githubkit raises GraphQLFailed, which no handler of REST failures expects: an execution whose PR could not
    be marked ready for review ended "internal error" instead of saying what GitHub refused.
    """

    def __init__(self, response: Response[GraphQLResponse], failed: GraphQLFailed) -> None:
        super().__init__(response)
        self.errors = failed.response.errors or []
        self.message = "; ".join(f"{e.message} ({e.type})" if e.type else e.message for e in self.errors) \
            or "no error message"

    def __str__(self) -> str:
        return f"GitHub's GraphQL API refused the request: {self.message}"


class _GraphQL(GraphQLNamespace):
    """githubkit's GraphQL namespace raising GraphQLRefused instead of GraphQLFailed."""

    def parse_graphql_response(self, response: Response[GraphQLResponse]) -> dict[str, Any]:
        try:
            return super().parse_graphql_response(response)
        except GraphQLFailed as failed:
            raise GraphQLRefused(response, failed) from None


class PinnedGitHub(GitHub[Any]):
    """A githubkit client whose every request names `api_version` (see `client`)."""

    api_version: str = GITHUB_API_VERSION

    @cached_property
    def rest(self) -> RestVersionSwitcher:
        """The REST namespaces in the pinned version's models (githubkit's newest when it lacks them)."""
        return PinnedRest(self, schema_version(self.api_version))

    @cached_property
    def graphql(self) -> GraphQLNamespace:
        """GraphQL whose errors are RequestFailed (GraphQLRefused), like REST's."""
        return _GraphQL(self)


def schema_version(api_version: str) -> str:
    """githubkit's models for `api_version`: its own when installed, else its newest (the header still says ours)."""
    if api_version in VERSIONS:
        try:
            __import__(f"githubkit_schemas.{VERSIONS[api_version]}.rest")
            return api_version
        except ModuleNotFoundError:
            log.warning("githubkit has no models for REST API version %s installed "
                        "(pip install 'githubkit-schemas[%s]'): parsing with %s's", api_version, api_version,
                        LATEST_VERSION)
    return LATEST_VERSION


def client(auth: BaseAuthStrategy | str | None = None, *, api_version: str = GITHUB_API_VERSION,
           **options: Any) -> GitHub[Any]:
    """A githubkit client (same options as `GitHub(...)`) whose every request names `api_version`."""
    def name_version(request: httpx.Request) -> None:
        request.headers[HEADER] = api_version

    hooks = dict(options.pop("event_hooks", None) or {})
    hooks["request"] = [*hooks.get("request", ()), name_version]
    gh = PinnedGitHub(auth, event_hooks=hooks, **options) if auth is not None else \
        PinnedGitHub(event_hooks=hooks, **options)
    gh.api_version = api_version
    return gh
