"""The admin API under ``/api/v1``: one router per resource, assembled here."""

from __future__ import annotations

from fastapi import APIRouter

from clearwall.web.api import (
    appeals,
    authorities,
    jurisdictions,
    orders,
    requests,
    stats,
    subscriptions,
)
from clearwall.web.api.schemas import Error

ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": Error, "description": "The request is well-formed but invalid."},
    401: {"model": Error, "description": "Missing, unknown or revoked token."},
    403: {"model": Error, "description": "The token's role or jurisdiction does not allow it."},
    404: {"model": Error, "description": "No such record."},
    409: {"model": Error, "description": "The record exists or its state forbids this."},
    413: {"model": Error, "description": "The request body is larger than the endpoint takes."},
}


def api_router() -> APIRouter:
    """All admin API routes under ``/api/v1``."""
    router = APIRouter(prefix="/api/v1")
    for module in (jurisdictions, authorities, orders, subscriptions, appeals, stats, requests):
        router.include_router(module.router, responses=ERRORS)
    return router
