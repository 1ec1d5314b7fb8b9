"""The appeals queue: open appeals first, with their filings; decide with a reason."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from clearwall.errors import ClearwallError
from clearwall.store.records import AppealStatus, TokenRole
from clearwall.web.api import appeals as api
from clearwall.web.api.schemas import DecideIn, PathId
from clearwall.web.auth import require_writer
from clearwall.web.console.session import check_csrf, done, render, require
from clearwall.web.context import WebContext
from clearwall.web.queries import order_facts

router = APIRouter()


@router.get("/appeals")
def appeals(request: Request) -> Response:
    """Open appeals first (oldest first), then decided ones; an authority sees its own."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    facts = {f.order.id: f for f in order_facts(ctx.store)}
    rows = []
    for a in ctx.reader.appeals():
        f = facts.get(a.order_id)
        if f is None or (who.jurisdiction is not None and f.jurisdiction != who.jurisdiction):
            continue
        rows.append((a, f, api._may_see_contact(ctx, who, a)))
    rows.sort(key=lambda r: (r[0].status is not AppealStatus.OPEN, r[0].filed_at))
    return render(
        request,
        "console/appeals.html",
        {"nav": "appeals", "rows": rows, "may_write": who.role is not TokenRole.AUDITOR},
        who,
    )


@router.post("/appeals/{appeal_id}/decide")
def decide(
    request: Request,
    appeal_id: PathId,
    csrf_token: str = Form("", max_length=200),
    outcome: str = Form("", max_length=20),
    explanation: str = Form("", max_length=4000),
) -> Response:
    """Decide through the API (the decision is a log entry)."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = DecideIn(outcome=outcome, explanation=explanation)  # type: ignore[arg-type]
        api.decide_appeal(appeal_id, body, request, ctx, who)
    except ValidationError:
        return done("/console/appeals", "Not decided: choose upheld or rejected, give a reason")
    except ClearwallError as exc:
        return done("/console/appeals", f"Not decided: {exc}")
    return done("/console/appeals", f"Appeal #{appeal_id} {outcome}")
