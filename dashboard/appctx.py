"""What every dashboard view reads from the app: the store and the engine port (set by `app.create_app`)."""

from __future__ import annotations

from flask import Flask, current_app

from clarity.engine_port import EnginePort
from clarity.store import Store

STORE = "clarity.store"
PORT = "clarity.engine_port"


def store(app: Flask | None = None) -> Store:
    """The app's store (the current app's by default)."""
    found: Store = (app or current_app).extensions[STORE]
    return found


def port() -> EnginePort:
    """The current app's engine port: what the API and the pages act through."""
    found: EnginePort = current_app.extensions[PORT]
    return found
