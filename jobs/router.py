"""A small event registry in the style of gidgethub's Router: one handler per event/action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from github_app import routes
from jobs.context import Engine

Handler = Callable[[Engine, str, dict[str, Any]], str]  # (engine, delivery id, payload) -> what was done


class Router:
    """Maps (event, action) to handlers; a handler registered without an action takes every action."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str | None], Handler] = {}

    def register(self, event: str, action: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: `@router.register("pull_request", action="closed")`."""
        if (event, action) not in routes.HANDLED:  # else the webhook endpoint would answer 204, never queue it
            raise ValueError(f"{event}.{action or '*'} is not in github_app.routes.HANDLED: add it there")

        def add(handler: Handler) -> Handler:
            key = (event, action)
            if key in self._routes:
                raise ValueError(f"two handlers for {event}.{action}")
            self._routes[key] = handler
            return handler
        return add

    def handler_for(self, event: str, action: str | None) -> Handler | None:
        """The handler of `event.action`, else of `event` without action, else None."""
        return self._routes.get((event, action)) or self._routes.get((event, None))

    def routes(self) -> set[tuple[str, str | None]]:
        """Every (event, action) with a handler; action None takes every action of the event."""
        return set(self._routes)

    def events(self) -> set[str]:
        """Every event name with at least one handler."""
        return {event for event, _ in self._routes}

    def dispatch(self, engine: Engine, event: str, delivery: str, payload: dict[str, Any]) -> str:
        """Run the matching handler; unknown events and actions are ignored and say so."""
        action = payload.get("action") if isinstance(payload.get("action"), str) else None
        handler = self.handler_for(event, action)
        if handler is None:
            return f"ignored: no handler for {event}" + (f".{action[:40]}" if action else "")
        return handler(engine, delivery, payload)


def compose(*routers: Router) -> Router:
    """One router holding every route of `routers` (a duplicate route is an error)."""
    combined = Router()
    for part in routers:
        for (event, action), handler in part._routes.items():
            combined.register(event, action)(handler)
    return combined
