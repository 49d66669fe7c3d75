"""Who is calling: the app's JWT, installation tokens and user tokens, checked the way GitHub does."""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

JWT_SKEW_SECONDS = 60
JWT_MAX_LIFETIME_SECONDS = 600
TOKEN_LIFETIME = timedelta(hours=1)
USER_TOKEN_LIFETIME = timedelta(hours=8)  # GitHub Apps' user access tokens (`ghu_`) expire after 8 hours
OAUTH_CODE_LIFETIME = timedelta(minutes=10)  # GitHub's web-flow codes work once, within ten minutes
INSTALLATION_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
    "workflows": "write",
}
_ALNUM = string.ascii_letters + string.digits


class AuthFailure(Exception):
    """Credentials were presented and rejected: answered with 401 and GitHub's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. `kind` is what the calls log records (never the credential)."""

    kind: str  # "jwt", "installation", "user" or "none"
    login: str | None = None  # the acting account: the app's bot for installation tokens
    installation_id: int | None = None
    repositories: frozenset[str] | None = None  # token narrowed to these repo names, None = all
    permissions: Mapping[str, str] | None = None  # an installation token's grants
    client_id: str | None = None  # a user access token (`ghu_`): the app the user authorized


ANONYMOUS = Principal("none")


@dataclass(frozen=True, slots=True)
class Grant:
    """What a token stands for, kept server-side."""

    kind: str  # "installation" or "user"
    login: str
    expires_at: datetime
    installation_id: int | None = None
    repositories: frozenset[str] | None = None
    permissions: Mapping[str, str] | None = None
    client_id: str | None = None  # user access tokens from the OAuth web flow: the app's client id


@dataclass(frozen=True, slots=True)
class OAuthCode:
    """A web-flow code: who authorized which app, for which redirect, until when."""

    login: str
    client_id: str
    redirect_uri: str
    expires_at: datetime


def public_key_from_pem(pem: str) -> RSAPublicKey:
    """Load the app's public key from a public or private PEM."""
    data = pem.encode()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        assert isinstance(private, RSAPrivateKey), "the app key must be an RSA key"
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    assert isinstance(public, RSAPublicKey), "the app key must be an RSA key"
    return public


def verify_app_jwt(token: str, public_key: RSAPublicKey, app_id: int, now: float | None = None) -> None:
    """Check an app JWT like GitHub (RS256, `iss` is the app, sane `iat`/`exp`); raise AuthFailure."""
    now = time.time() if now is None else now
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthFailure("A JSON web token could not be decoded") from exc
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not isinstance(iat, int | float) or iat > now + JWT_SKEW_SECONDS:
        raise AuthFailure(
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued."
        )
    if not isinstance(exp, int | float) or exp <= now:
        raise AuthFailure(
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires."
        )
    if (
        exp - iat > JWT_MAX_LIFETIME_SECONDS + JWT_SKEW_SECONDS
        or exp > now + JWT_MAX_LIFETIME_SECONDS + JWT_SKEW_SECONDS
    ):
        raise AuthFailure("'Expiration time' claim ('exp') is too far in the future.")
    if str(iss) != str(app_id):
        raise AuthFailure("A JSON web token could not be decoded")


def looks_like_jwt(credential: str) -> bool:
    """Tokens have no dots; JWTs have exactly two."""
    return credential.count(".") == 2


class TokenStore:
    """Issued installation and user tokens (in memory: a restarted forge forgets them, like a revocation)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, Grant] = {}
        self._codes: dict[str, OAuthCode] = {}

    def issue_installation_token(
        self,
        installation_id: int,
        bot_login: str,
        repositories: frozenset[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> tuple[str, Grant]:
        """A new `ghs_` token for the installation, valid one hour."""
        token = "ghs_" + "".join(secrets.choice(_ALNUM) for _ in range(36))
        granted = {"metadata": "read", **(permissions or INSTALLATION_PERMISSIONS)}
        grant = Grant(
            "installation", bot_login, _now() + TOKEN_LIFETIME, installation_id, repositories, granted
        )
        with self._lock:
            self._grants[token] = grant
        return token, grant

    def issue_user_token(self, login: str) -> str:
        """A new `ghp_` personal token acting as the user, valid until the forge stops."""
        token = "ghp_" + "".join(secrets.choice(_ALNUM) for _ in range(36))
        with self._lock:
            self._grants[token] = Grant("user", login, datetime.max.replace(tzinfo=UTC))
        return token

    def issue_user_access_token(self, login: str, client_id: str) -> tuple[str, Grant]:
        """A new `ghu_` token: the user acting through the app `client_id` (the OAuth web flow), 8 hours."""
        token = "ghu_" + "".join(secrets.choice(_ALNUM) for _ in range(36))
        grant = Grant("user", login, _now() + USER_TOKEN_LIFETIME, client_id=client_id)
        with self._lock:
            self._grants[token] = grant
        return token, grant

    def issue_oauth_code(self, login: str, client_id: str, redirect_uri: str) -> str:
        """A one-time web-flow code for the redirect back to the app."""
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = OAuthCode(login, client_id, redirect_uri, _now() + OAUTH_CODE_LIFETIME)
        return code

    def redeem_oauth_code(self, code: str) -> OAuthCode | None:
        """The code's grant, once; None when unknown, already used or expired."""
        with self._lock:
            found = self._codes.pop(code, None)
        if found is None or found.expires_at <= _now():
            return None
        return found

    def lookup(self, token: str) -> Grant | None:
        """The live grant for a token, or None when unknown or expired."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None or grant.expires_at <= _now():
            return None
        return grant

    def issued_tokens(self) -> list[str]:
        """Every token handed out, expired ones included (for tests proving no token leaks anywhere)."""
        with self._lock:
            return list(self._grants)

    def expire_all(self) -> int:
        """Expire every installation token at once (to exercise the app's token refresh)."""
        with self._lock:
            live = [t for t, g in self._grants.items() if g.kind == "installation" and g.expires_at > _now()]
            for token in live:
                self._grants[token] = replace(self._grants[token], expires_at=_now())
            return len(live)


def _now() -> datetime:
    return datetime.now(UTC)


def split_authorization(header: str | None) -> tuple[str, str] | None:
    """(scheme, credential) from an Authorization header, scheme lower-cased."""
    if not header or " " not in header.strip():
        return None
    scheme, credential = header.strip().split(None, 1)
    return scheme.lower(), credential.strip()


def authenticate(
    header: str | None, tokens: TokenStore, public_key: RSAPublicKey, app_id: int, bot_login: str
) -> Principal:
    """Resolve an Authorization header (`Bearer <jwt>`, `token <t>`, `Bearer <t>`) to a Principal."""
    parts = split_authorization(header)
    if parts is None:
        if header:
            raise AuthFailure("Bad credentials")
        return ANONYMOUS
    scheme, credential = parts
    if scheme not in ("bearer", "token"):
        raise AuthFailure("Bad credentials")
    if looks_like_jwt(credential):
        verify_app_jwt(credential, public_key, app_id)
        return Principal("jwt", bot_login)
    grant = tokens.lookup(credential)
    if grant is None:
        raise AuthFailure("Bad credentials")
    if grant.kind == "installation":
        return Principal(
            "installation", bot_login, grant.installation_id, grant.repositories, grant.permissions
        )
    return Principal("user", grant.login, client_id=grant.client_id)
