"""Every router of the app, included in one place."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

# Feature routers, each a module exposing ``router``; listed here and nowhere else.
ROUTER_MODULES = (
    "relance.contacts.endpoints",
    "relance.contacts.category_endpoints",
    "relance.campaigns.endpoints",
    "relance.providers.endpoints",
    "relance.web.pages",
)


def include_routes(app: FastAPI) -> None:
    from relance.api import ERROR_RESPONSES

    for name in ROUTER_MODULES:
        app.include_router(importlib.import_module(name).router, responses=ERROR_RESPONSES)
