"""Orders: list and read; publish, amend and revoke within the caller's jurisdiction."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from clearwall.formats.load import parse_rules
from clearwall.model import AuthorityKind, OrderStatus
from clearwall.policy.model import Authority, Order
from clearwall.web.api.common import issues_of
from clearwall.web.api.schemas import (
    AmendIn,
    OrderIn,
    OrderOut,
    ParseIssueOut,
    PathId,
    QueryId,
    RevokeIn,
    RuleOut,
)
from clearwall.web.auth import (
    Principal,
    check_jurisdiction,
    deny,
    require_reader,
    require_writer,
)
from clearwall.web.bodylimit import UPLOAD_LIMIT, body_limit
from clearwall.web.context import WebContext, get_ctx
from clearwall.web.queries import order_facts

router = APIRouter(tags=["orders"])


def _out(ctx: WebContext, order: Order, issues: list[ParseIssueOut] | None = None) -> OrderOut:
    facts = order_facts(ctx.store, [order.id])[0]
    return OrderOut.of(facts.order, facts.authority, facts.rule_count, ctx.base_url, issues)


def _owned(request: Request, ctx: WebContext, principal: Principal, order_id: int) -> Authority:
    """The authority of an order, after checking the caller may act on it."""
    order = ctx.reader.order(order_id)
    authority = ctx.reader.authority(order.authority_id)
    check_jurisdiction(request, principal, authority.jurisdiction)
    _as_itself(request, principal, authority)
    if order.all_jurisdictions and principal.authority is not None and not _is_cert(principal):
        raise deny(
            request,
            "jurisdiction",
            "only operators and the CERT that issued it may change an all-jurisdiction order",
        )
    return authority


def _is_cert(principal: Principal) -> bool:
    return principal.authority is not None and principal.authority.kind is AuthorityKind.CERT


def _as_itself(request: Request, principal: Principal, authority: Authority) -> None:
    """Refuse (403, counted) an authority token acting as another authority of its
    jurisdiction: the log names who ordered what, so an order is published, amended or
    revoked by its own authority (or an operator), never in another one's name."""
    if principal.authority is not None and principal.authority.id != authority.id:
        raise deny(
            request,
            "authority",
            f"this token acts as {principal.authority.name!r} only, not as {authority.name!r}",
        )


@router.get("/orders", response_model=list[OrderOut])
def list_orders(
    jurisdiction: str | None = None,
    authority: QueryId = None,
    status: OrderStatus | None = None,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_reader),
) -> list[OrderOut]:
    """Orders, newest first, filtered by jurisdiction, authority and/or stored status."""
    out = []
    for f in order_facts(ctx.store):
        if jurisdiction is not None and f.jurisdiction != jurisdiction:
            continue
        if authority is not None and f.authority.id != authority:
            continue
        if status is not None and f.order.status is not status:
            continue
        out.append(OrderOut.of(f.order, f.authority, f.rule_count, ctx.base_url))
    return out


@router.get("/orders/{order_id}", response_model=OrderOut)
def get_order(
    order_id: PathId, ctx: WebContext = Depends(get_ctx), _: Principal = Depends(require_reader)
) -> OrderOut:
    """One order."""
    return _out(ctx, ctx.reader.order(order_id))


@router.get("/orders/{order_id}/rules", response_model=list[RuleOut])
def get_rules(
    order_id: PathId, ctx: WebContext = Depends(get_ctx), _: Principal = Depends(require_reader)
) -> list[RuleOut]:
    """The rules of one order, sorted by kind then value."""
    return [
        RuleOut(kind=r.kind.value, value=r.value, action=r.action)
        for r in ctx.reader.order_rules(order_id)
    ]


@router.post("/orders", response_model=OrderOut, status_code=201)
@body_limit(UPLOAD_LIMIT)
def create_order(
    body: OrderIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> OrderOut:
    """Publish an order with its rules; the order and its log entry commit together.

    ``rules`` is list text in ``format`` (``auto`` detects it). Lines that are not rules
    are skipped and reported in ``issues``; a text that is no list at all is a 400.
    """
    authority = ctx.reader.authority(body.authority)
    check_jurisdiction(request, principal, authority.jurisdiction)
    _as_itself(request, principal, authority)
    # A CERT's security feed may bind every jurisdiction (each may opt out by an exception
    # order of its own); the write path refuses any other category or kind.
    if body.all_jurisdictions and principal.authority is not None and not _is_cert(principal):
        raise deny(
            request, "jurisdiction", "only operators and CERTs may issue all-jurisdiction orders"
        )
    parsed = parse_rules(body.rules, body.format, f"order {body.reference}")
    order = ctx.service.add_order(
        authority.id,
        body.title,
        body.legal_basis,
        body.reference,
        body.category,
        body.action,
        parsed.rules,
        issued=body.issued,
        effective_from=body.effective_from,
        expires=body.expires,
        document_url=body.document_url,
        all_jurisdictions=body.all_jurisdictions,
        actor_jurisdiction=principal.jurisdiction,
    )
    return _out(ctx, order, issues_of(parsed))


@router.post("/orders/{order_id}/amend", response_model=OrderOut)
@body_limit(UPLOAD_LIMIT)
def amend_order(
    order_id: PathId,
    body: AmendIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> OrderOut:
    """Add and/or remove rules of an active order (one ``order-amended`` log entry)."""
    _owned(request, ctx, principal, order_id)
    added = parse_rules(body.add, body.format, f"order {order_id} additions")
    removed = parse_rules(body.remove, body.format, f"order {order_id} removals")
    order = ctx.service.amend_order(
        order_id,
        add=added.rules,
        remove=removed.rules,
        reason=body.reason,
        actor_jurisdiction=principal.jurisdiction,
    )
    return _out(ctx, order, issues_of(added) + issues_of(removed))


@router.post("/orders/{order_id}/revoke", response_model=OrderOut)
def revoke_order(
    order_id: PathId,
    body: RevokeIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> OrderOut:
    """Withdraw an active order; the revocation and its reason are published on the log."""
    _owned(request, ctx, principal, order_id)
    order = ctx.service.revoke_order(order_id, body.reason, principal.jurisdiction)
    return _out(ctx, order)
