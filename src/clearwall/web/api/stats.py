"""Statistics (token required) and the public name lookup."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Depends, Query

from clearwall.web.api.schemas import CountOut, JurisdictionVerdictOut, LookupOut, StatsOut
from clearwall.web.auth import Principal, require_reader
from clearwall.web.context import WebContext, get_ctx
from clearwall.web.queries import lookup

router = APIRouter(tags=["statistics"])


def _counts(tally: Counter[str]) -> list[CountOut]:
    return [
        CountOut(key=k, count=int(v))
        for k, v in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


@router.get("/stats", response_model=StatsOut)
def stats(ctx: WebContext = Depends(get_ctx), _: Principal = Depends(require_reader)) -> StatsOut:
    """Policy counts and the gateway's blocked-query totals by category (aggregates only)."""
    s = ctx.stats.get(ctx.registry if ctx.gateway_metrics else None)
    return StatsOut(
        log_size=s.log_size,
        orders_active=s.orders_active,
        orders_total=s.orders_total,
        rules_active=s.rules_active,
        appeals_open=s.appeals_open,
        orders_by_category=_counts(s.orders_by_category),
        orders_by_jurisdiction=_counts(s.orders_by_jurisdiction),
        orders_by_authority=_counts(s.orders_by_authority),
        rules_by_category=_counts(s.rules_by_category),
        blocked_queries_by_category=_counts(s.blocked_queries),
    )


@router.get("/lookup", response_model=LookupOut, openapi_extra={"security": []})
def lookup_name(
    name: str = Query(min_length=1, max_length=300, description="a domain name (IDN allowed)"),
    ctx: WebContext = Depends(get_ctx),
) -> LookupOut:
    """Public: whether ``name`` is blocked for the clients of each jurisdiction, and by what."""
    result = lookup(ctx.store, ctx.snapshot(), ctx.reader.jurisdictions(), name)
    return LookupOut(
        name=result.name,
        unicode=result.unicode,
        log_size=result.log_size,
        verdicts=[
            JurisdictionVerdictOut(
                jurisdiction=v.code,
                blocked=v.blocked,
                action=v.action,
                orders=[c.order.id for c in v.citations],
                rules=[c.rule for c in v.citations],
            )
            for v in result.verdicts
        ],
    )
