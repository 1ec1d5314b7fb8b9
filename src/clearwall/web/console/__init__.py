"""The operator and authority console at ``/console``: server-rendered, no JavaScript needed.

Signing in exchanges an API token for a session cookie (``session``); every page then
acts as that token's ``Principal`` and every write goes through the admin API's own
route functions, so each role sees and may do exactly what the API allows it.
"""

from __future__ import annotations

from fastapi import FastAPI

from clearwall.web.console import admin, appeals, dashboard, orders, queries, requests, session


def install(app: FastAPI) -> None:
    """Add the console's routes, its session store and its sign-in redirect to ``app``."""
    session.install(app)
    for module in (session, dashboard, orders, appeals, admin, queries, requests):
        app.include_router(module.router, prefix="/console", include_in_schema=False)
