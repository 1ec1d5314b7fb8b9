"""Subscriptions: keep an order's rules in step with a list file or URL (``jobs.subscriptions``
refreshes them when due; this API subscribes, lists and refreshes on demand)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from clearwall.errors import NotFound
from clearwall.jobs.subscriptions import is_internal, is_url, refresh
from clearwall.store.records import Subscription, TokenRole
from clearwall.web.api.common import issues_of
from clearwall.web.api.schemas import PathId, QueryId, RefreshOut, SubscriptionIn, SubscriptionOut
from clearwall.web.auth import (
    Principal,
    check_jurisdiction,
    deny,
    require_reader,
    require_writer,
)
from clearwall.web.context import WebContext, get_ctx

router = APIRouter(tags=["subscriptions"])


def _check(request: Request, ctx: WebContext, principal: Principal, order_id: int) -> None:
    order = ctx.reader.order(order_id)
    check_jurisdiction(request, principal, ctx.reader.authority(order.authority_id).jurisdiction)
    if order.all_jurisdictions and principal.authority is not None:
        raise deny(request, "jurisdiction", "only operators may change all-jurisdiction orders")


def _subscription(ctx: WebContext, subscription_id: int) -> Subscription:
    for s in ctx.reader.subscriptions():
        if s.id == subscription_id:
            return s
    raise NotFound(f"no subscription {subscription_id}")


@router.get("/subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(
    order_id: QueryId = None,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_reader),
) -> list[SubscriptionOut]:
    """Subscriptions, optionally of one order."""
    return [SubscriptionOut.of(s) for s in ctx.reader.subscriptions(order_id)]


@router.post("/subscriptions", response_model=SubscriptionOut, status_code=201)
def create_subscription(
    body: SubscriptionIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> SubscriptionOut:
    """Subscribe an order to a list. File paths on the gateway host are for operators only."""
    _check(request, ctx, principal, body.order_id)
    if principal.role is not TokenRole.OPERATOR:
        # Authorities are outside parties: they must not make the gateway read its own
        # files or reach services on its internal networks (SSRF).
        if not is_url(body.source):
            raise deny(request, "operator-only", "only operators may subscribe to local files")
        if is_internal(body.source):
            raise deny(request, "operator-only", "only operators may subscribe to internal URLs")
    sub = ctx.service.add_subscription(
        body.order_id, body.source, body.format, body.refresh_seconds, principal.jurisdiction
    )
    return SubscriptionOut.of(sub)


@router.post("/subscriptions/{subscription_id}/refresh", response_model=RefreshOut)
def refresh_subscription(
    subscription_id: PathId,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> RefreshOut:
    """Fetch the list now and make the order's rules equal to it (one amendment entry)."""
    sub = _subscription(ctx, subscription_id)
    _check(request, ctx, principal, sub.order_id)
    if principal.role is not TokenRole.OPERATOR and (
        not is_url(sub.source) or is_internal(sub.source)
    ):
        raise deny(request, "operator-only", "only operators may refresh from internal sources")
    done = refresh(ctx.service, sub, principal.jurisdiction)
    return RefreshOut(
        subscription=SubscriptionOut.of(done.subscription),
        added=done.added,
        removed=done.removed,
        rule_count=done.rule_count,
        issues=issues_of(done.parsed),
    )
