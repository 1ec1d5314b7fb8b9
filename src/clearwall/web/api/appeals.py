"""Appeals: read (contacts only for the deciding side) and decide within jurisdiction."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from clearwall.store.records import Appeal, TokenRole
from clearwall.web.api.schemas import AppealOut, DecideIn, PathId, QueryId
from clearwall.web.auth import Principal, check_jurisdiction, require_reader, require_writer
from clearwall.web.context import WebContext, get_ctx

router = APIRouter(tags=["appeals"])


def _may_see_contact(ctx: WebContext, principal: Principal, appeal: Appeal) -> bool:
    """Operators and auditors see every contact; an authority only its own appeals'."""
    if principal.role is not TokenRole.AUTHORITY:
        return True
    order = ctx.reader.order(appeal.order_id)
    return ctx.reader.authority(order.authority_id).jurisdiction == principal.jurisdiction


@router.get("/appeals", response_model=list[AppealOut])
def list_appeals(
    order_id: QueryId = None,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_reader),
) -> list[AppealOut]:
    """Appeals, optionally of one order."""
    return [
        AppealOut.of(a, _may_see_contact(ctx, principal, a)) for a in ctx.reader.appeals(order_id)
    ]


@router.get("/appeals/{appeal_id}", response_model=AppealOut)
def get_appeal(
    appeal_id: PathId,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_reader),
) -> AppealOut:
    """One appeal."""
    appeal = ctx.reader.appeal(appeal_id)
    return AppealOut.of(appeal, _may_see_contact(ctx, principal, appeal))


@router.post("/appeals/{appeal_id}/decide", response_model=AppealOut)
def decide_appeal(
    appeal_id: PathId,
    body: DecideIn,
    request: Request,
    ctx: WebContext = Depends(get_ctx),
    principal: Principal = Depends(require_writer),
) -> AppealOut:
    """Decide an open appeal as ``upheld`` or ``rejected``; the decision is a log entry.

    Upholding an appeal records the decision; amending or revoking the order is a
    separate, equally logged step.
    """
    appeal = ctx.reader.appeal(appeal_id)
    order = ctx.reader.order(appeal.order_id)
    check_jurisdiction(request, principal, ctx.reader.authority(order.authority_id).jurisdiction)
    decided = ctx.service.decide_appeal(
        appeal_id, body.outcome, body.explanation, principal.jurisdiction
    )
    return AppealOut.of(decided, True)
