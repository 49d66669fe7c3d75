"""The REST API subset Clarity uses, one module per GitHub API area, all under ``/api/v3``."""

from __future__ import annotations

from flask import Blueprint

from forge.rest import apps, checks, hook_deliveries, issues, pulls, repos, users

BLUEPRINTS: tuple[Blueprint, ...] = (
    apps.blueprint,
    hook_deliveries.blueprint,
    repos.blueprint,
    issues.blueprint,
    pulls.blueprint,
    checks.blueprint,
    users.blueprint,
)
