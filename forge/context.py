"""The per-app bundle of forge services, reachable from any view as ``forge_context()``."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from forge.api_versions import ApiVersions
from forge.app_identity import AppIdentity, AppRegistry
from forge.auth import TokenStore
from forge.calls import CallLog, RateMeter
from forge.code_shapes import CodeShapes
from forge.config import ForgeConfig
from forge.faults import FaultList
from forge.hooks import WebhookSender
from forge.shapes import Shapes
from forge.state import ForgeState

EXTENSION_KEY = "forge"


@dataclass(frozen=True, slots=True)
class ForgeContext:
    """Config plus the forge's stateful services (each one thread-safe)."""

    config: ForgeConfig
    state: ForgeState
    shapes: Shapes
    code: CodeShapes
    tokens: TokenStore
    apps: AppRegistry
    calls: CallLog
    rate: RateMeter
    hooks: WebhookSender
    faults: FaultList
    api_versions: ApiVersions

    @property
    def bot_login(self) -> str:
        """The app's bot account login."""
        return self.shapes.bot_login

    @property
    def app(self) -> AppIdentity:
        """The app the forge serves now (a manifest conversion can replace it)."""
        return self.apps.current()


def forge_context() -> ForgeContext:
    """The context of the app handling the current request."""
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]
