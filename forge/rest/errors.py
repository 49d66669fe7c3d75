"""GitHub's error bodies: `message`, `documentation_url`, `status`, and `errors` for 422s."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flask import Response, jsonify

DOCS_URL = "https://docs.github.com/rest"


class ApiError(Exception):
    """An error response the way GitHub words it."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        documentation_url: str = DOCS_URL,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.documentation_url = documentation_url

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        body: dict[str, Any] = {"message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        body["documentation_url"] = self.documentation_url
        body["status"] = str(self.status)
        return body

    def response(self) -> Response:
        """The Flask response."""
        resp = jsonify(self.body())
        resp.status_code = self.status
        resp.headers.update(self.headers)
        return resp


def not_found() -> ApiError:
    """404 Not Found: also GitHub's answer for things the caller may not see."""
    return ApiError(404, "Not Found")


def unauthorized(message: str = "Requires authentication") -> ApiError:
    """401 with GitHub's message."""
    return ApiError(401, message)


def forbidden(message: str = "Resource not accessible by integration") -> ApiError:
    """403 with GitHub's message."""
    return ApiError(403, message)


def validation_failed(*errors: Mapping[str, Any], message: str = "Validation Failed") -> ApiError:
    """422 Validation Failed with an `errors` list."""
    return ApiError(422, message, errors)


def invalid_request(detail: str) -> ApiError:
    """422 from GitHub's request-schema validator: ``Invalid request.\\n\\n<detail>``."""
    return ApiError(422, f"Invalid request.\n\n{detail}")
