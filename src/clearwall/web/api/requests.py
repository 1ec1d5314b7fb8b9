"""Cross-border requests: filed by an authority of one jurisdiction, decided by another's.

A request blocks nothing: accepting it is the receiving jurisdiction's own order, by its
own authority. Every write checks the token against the side that may take the step
(the sender files and withdraws, the receiver accepts and refuses); a refused scope is
a counted 403 and changes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from clearwall.formats.load import parse_rules
from clearwall.store.records import RequestStatus
from clearwall.web.api.schemas import (
    AcceptIn,
    AcceptOut,
    CloseIn,
    OrderOut,
    PathId,
    RequestIn,
    RequestOut,
)
from clearwall.web.auth import Principal, check_jurisdiction, deny, require_reader, require_writer
from clearwall.web.bodylimit import UPLOAD_LIMIT, body_limit
from clearwall.web.context import WebContext, get_ctx
from clearwall.web.queries import order_facts

router = APIRouter(tags=["requests"])


@router.get("/requests", response_model=list[RequestOut])
def list_requests(
    jurisdiction: str | None = None,
    status: RequestStatus | None = None,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_reader),
) -> list[RequestOut]:
    """Requests by id: those sent by or to ``jurisdiction``, optionally of one status."""
    code = jurisdiction.strip().lower() if jurisdiction else None
    found = ctx.reader.requests(jurisdiction=code)
    return [RequestOut.of(r) for r in found if status is None or r.status is status]


@router.get("/requests/{request_id}", response_model=RequestOut)
def get_request(
    request_id: PathId,
    ctx: WebContext = Depends(get_ctx),
    _: Principal = Depends(require_reader),
) -> RequestOut:
    """One request."""
    return RequestOut.of(ctx.reader.request(request_id))


def _acting(
    request: Request, ctx: WebContext, principal: Principal, authority_id: int, side: str
) -> None:
    """403 unless the token may act for ``authority_id`` and it belongs to ``side``."""
    authority = ctx.reader.authority(authority_id)
    check_jurisdiction(request, principal, authority.jurisdiction)
    if authority.jurisdiction != side:
        raise deny(
            request,
            "jurisdiction",
            f"authority {authority_id} is of {authority.jurisdiction!r}, not {side!r}",
        )


@router.post("/requests", response_model=RequestOut, status_code=201)
@body_limit(UPLOAD_LIMIT)
def file_request(
    body: RequestIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> RequestOut:
    """File a request to another jurisdiction; the filing is a log entry. ``names`` is
    list text in ``format`` (any list format, ``auto`` detects it)."""
    authority = ctx.reader.authority(body.authority)
    check_jurisdiction(request, principal, authority.jurisdiction)
    parsed = parse_rules(body.names, body.format, f"request {body.reference}")
    filed = ctx.service.file_request(
        authority.id,
        body.to,
        body.ask,
        body.category,
        body.legal_basis,
        body.reference,
        parsed.rules,
        actor_jurisdiction=principal.jurisdiction,
    )
    return RequestOut.of(filed)


@router.post("/requests/{request_id}/accept", response_model=AcceptOut)
def accept_request(
    request_id: PathId,
    body: AcceptIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> AcceptOut:
    """Accept a request: the receiving jurisdiction's own order (its authority, its legal
    basis) that cites the request, and the acceptance entry, in one transaction."""
    found = ctx.reader.request(request_id)
    _acting(request, ctx, principal, body.authority, found.to_jurisdiction)
    closed, order = ctx.service.accept_request(
        request_id,
        body.authority,
        body.legal_basis,
        body.reference,
        title=body.title,
        action=body.action,
        expires=body.expires,
        document_url=body.document_url,
        reason=body.reason,
        actor_jurisdiction=principal.jurisdiction,
    )
    facts = order_facts(ctx.store, [order.id])[0]
    out = OrderOut.of(facts.order, facts.authority, facts.rule_count, ctx.base_url)
    return AcceptOut(request=RequestOut.of(closed), order=out)


@router.post("/requests/{request_id}/refuse", response_model=RequestOut)
def refuse_request(
    request_id: PathId,
    body: CloseIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> RequestOut:
    """Refuse a request with a reason (receiving side); the refusal is a log entry."""
    found = ctx.reader.request(request_id)
    if body.authority is None:
        if principal.authority is None:
            raise deny(request, "jurisdiction", "name the deciding authority")
        authority_id = principal.authority.id
    else:
        authority_id = body.authority
    _acting(request, ctx, principal, authority_id, found.to_jurisdiction)
    return RequestOut.of(
        ctx.service.refuse_request(request_id, authority_id, body.reason, principal.jurisdiction)
    )


@router.post("/requests/{request_id}/withdraw", response_model=RequestOut)
def withdraw_request(
    request_id: PathId,
    body: CloseIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> RequestOut:
    """Withdraw a request (requesting side); the withdrawal is a log entry."""
    found = ctx.reader.request(request_id)
    authority_id = body.authority or found.authority_id
    _acting(request, ctx, principal, authority_id, found.from_jurisdiction)
    return RequestOut.of(
        ctx.service.withdraw_request(
            request_id, body.reason, authority_id, actor_jurisdiction=principal.jurisdiction
        )
    )
