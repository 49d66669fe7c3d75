"""Fixtures of the API and dashboard tests: the app, its test client, API tokens (a pytest plugin of conftest).

A test module that needs another app (signed in, against the forge) defines its own `app` or `client`.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from clarity.apitokens import ApiTokens
from clarity.settings import Settings
from clarity.store import Store


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def tokens(store: Store, namespace: str) -> ApiTokens:
    return ApiTokens(store.r, namespace)


def bearer(tokens: ApiTokens, role: str, *installations: int, everything: bool = False) -> dict[str, str]:
    """The Authorization header of a new token of `role` for these installations (or every one)."""
    token, _ = tokens.create(role, installations, everything=everything)
    return {"Authorization": f"Bearer {token}"}
