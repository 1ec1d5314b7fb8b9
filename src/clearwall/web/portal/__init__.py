"""The public transparency portal: server-rendered pages, no login, no JavaScript needed."""

from __future__ import annotations

from fastapi import APIRouter

from clearwall.web.portal import apidoc, appeals, logpage, records, requests, search, stats


def portal_router() -> APIRouter:
    """All portal pages (none of them appears in the API schema)."""
    router = APIRouter(include_in_schema=False)
    for module in (search, records, stats, logpage, appeals, requests, apidoc):
        router.include_router(module.router)
    return router
