"""GitHub-style pagination: `per_page` (default 30, max 100), `page`, and a `Link` header."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Response, jsonify, request

T = TypeVar("T")


def _int_arg(name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError:
        return default


def paginate(
    items: Sequence[T],
    shape: Callable[[T], Any],
    wrap: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """One page of `items`, shaped; `wrap` puts the list under a key next to `total_count`."""
    per_page = min(max(_int_arg("per_page", 30), 1), 100)
    page = max(_int_arg("page", 1), 1)
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = [shape(item) for item in items[(page - 1) * per_page : page * per_page]]
    body: Any = {"total_count": len(items), wrap: chunk, **(extra or {})} if wrap else chunk
    resp = jsonify(body)
    links = []
    for rel, number in (("prev", page - 1), ("next", page + 1), ("first", 1), ("last", last)):
        if (rel in ("prev", "first") and page > 1) or (rel in ("next", "last") and page < last):
            query = urlencode({**request.args.to_dict(), "per_page": per_page, "page": number})
            links.append(f'<{request.base_url}?{query}>; rel="{rel}"')
    if links:
        resp.headers["Link"] = ", ".join(links)
    return resp
