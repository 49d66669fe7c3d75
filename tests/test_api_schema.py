"""The REST API against its own OpenAPI document: schemathesis generates requests from /api/openapi.json
and sends them to the app over WSGI, as an admin who sees everything (GitHub is the forge, on loopback). No answer may be a
5xx, and every answer must be one the document declares, shaped as declared. Bounded: a few examples
per operation (the budget of the whole run is seconds, not minutes)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from clarity.apitokens import ApiTokens
from clarity.models import Execution
from clarity.settings import Settings
from clarity.status import ExecutionStatus
from clarity.store import Store

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def admin_headers(store: Store, namespace: str) -> dict[str, str]:
    token, _ = ApiTokens(store.r, namespace).create("admin", everything=True)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api_schema(settings: Settings, store: Store, admin_headers: dict[str, str], forge: Any) -> Any:
    # GitHub answers (the forge, where Clarity is installed nowhere): initialize gets as far as a 404.
    settings = dataclasses.replace(settings, app_id=forge.app_id, private_key=forge.private_key_pem,
                                   github_api_url=forge.api_url)
    for status in (ExecutionStatus.QUEUED, ExecutionStatus.PAUSED, ExecutionStatus.COMPLETED):
        store.create(Execution(id="", installation_id=7, repo="acme/widgets", account="acme", issue_number=1,
                               is_pull_request=False, branch="clarity/issue-1", base_branch="main",
                               requester="ada", status=status), actor="ada")
    return schemathesis.openapi.from_wsgi("/api/openapi.json", create_app(settings), headers=admin_headers)


@pytest.mark.slow
def test_every_answer_is_declared_and_none_is_a_server_error(api_schema: Any, admin_headers: dict[str, str]) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 17
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def answers_as_declared(case: Any) -> None:
            case.call_and_validate(headers=admin_headers, checks=CHECKS)

        answers_as_declared()
