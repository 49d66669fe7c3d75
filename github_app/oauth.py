"""Sign-in with GitHub, the GitHub half: the authorize URL, the code exchange, and who the user is.

Implements clarity.signin_port.SignInPort for the dashboard's sign-in views. The one-time code is
exchanged for a user access token by a plain POST through githubkit to
`<GitHub web URL>/login/oauth/access_token`; then, as that user, `GET /user` says who they are and
`GET /user/installations` with each installation's repositories says what they reach. The role in an
installation is the best over its repositories (DESIGN §5). The token is used for these reads only and
never kept.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
from githubkit import GitHub, TokenAuthStrategy, UnauthAuthStrategy
from githubkit.exception import GitHubException, RequestFailed

from clarity import github_api
from clarity.settings import Settings
from clarity.signin_port import SignedIn, SignInError
from github_app.roles import best_role, role_for_flags

TIMEOUT = 15.0


class OAuthSignIn:
    """The app's OAuth client (`github_client_id` / `_secret` of the settings) signing people in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def authorize_url(self, state: str, redirect_uri: str) -> str:
        """GitHub's authorize page for this app, sending the browser back to `redirect_uri` with `state`."""
        query = urlencode({"client_id": self.settings.github_client_id, "redirect_uri": redirect_uri,
                           "state": state})
        return f"{self.settings.web_url.rstrip('/')}/login/oauth/authorize?{query}"

    def _client(self, auth: Any) -> GitHub[Any]:
        return github_api.client(auth, api_version=self.settings.github_api_version,
                                 base_url=self.settings.github_api_url.rstrip("/") + "/", timeout=TIMEOUT,
                                 http_cache=False)

    def exchange_code(self, code: str, redirect_uri: str) -> str:
        """The user access token for a web-flow code (GitHub answers failures with 200 and an `error`)."""
        settings = self.settings
        body = {"client_id": settings.github_client_id, "client_secret": settings.github_client_secret,
                "code": code, "redirect_uri": redirect_uri}
        try:
            with self._client(UnauthAuthStrategy()) as gh:
                data = gh.request("POST", f"{settings.web_url.rstrip('/')}/login/oauth/access_token", json=body,
                                  headers={"Accept": "application/json"}).json()
        except RequestFailed as err:
            raise SignInError(f"GitHub refused the sign-in (HTTP {err.response.status_code}). Start again.") from None
        except (GitHubException, httpx.HTTPError, ValueError) as err:
            raise SignInError(f"could not reach GitHub to finish the sign-in ({type(err).__name__}). "
                              "Start again.") from None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            error = data.get("error", "no token") if isinstance(data, dict) else "no token"
            why = data.get("error_description", "") if isinstance(data, dict) else ""
            raise SignInError(f"GitHub refused the sign-in code ({error}{': ' + why if why else ''}). "
                              "Codes work once and for ten minutes: start again.")
        return token

    def read_viewer(self, token: str) -> SignedIn:
        """Who the token's user is, and their role in each of the app's installations they reach."""
        try:
            with self._client(TokenAuthStrategy(token)) as gh:
                login = gh.rest.users.get_authenticated().parsed_data.login
                roles: dict[int, str] = {}
                installations = gh.rest.paginate(gh.rest.apps.list_installations_for_authenticated_user,
                                                 map_func=lambda r: r.parsed_data.installations)
                for installation in installations:
                    repos = gh.rest.paginate(gh.rest.apps.list_installation_repos_for_authenticated_user,
                                             installation_id=installation.id,
                                             map_func=lambda r: r.parsed_data.repositories)
                    roles[installation.id] = str(best_role([role_for_flags(_flags(repo)) for repo in repos]))
        except RequestFailed as err:
            raise SignInError(f"GitHub refused to say who you are (HTTP {err.response.status_code}). "
                              "Start again.") from None
        except (GitHubException, httpx.HTTPError) as err:
            raise SignInError(f"could not reach GitHub to finish the sign-in ({type(err).__name__}). "
                              "Start again.") from None
        return SignedIn(login, roles)


def _flags(repo: Any) -> dict[str, Any]:
    permissions = getattr(repo, "permissions", None)
    if permissions is None:
        return {}
    return {name: getattr(permissions, name, False) for name in ("admin", "maintain", "push", "triage", "pull")}
