"""Cross-border requests in the console: the incoming ones to decide (accept with an
order of one's own, or refuse with a reason), and the outgoing ones to withdraw.

Every decision goes through the admin API's route functions, so the console refuses
exactly what the API refuses: a sender cannot accept or refuse, a receiver cannot
withdraw (403, nothing written)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from clearwall.errors import ClearwallError
from clearwall.store.records import RequestStatus, TokenRole
from clearwall.web.api import requests as api
from clearwall.web.api.schemas import AcceptIn, CloseIn, PathId
from clearwall.web.auth import require_writer
from clearwall.web.console.session import check_csrf, done, render, require
from clearwall.web.context import WebContext
from clearwall.web.portal.requests import took

router = APIRouter()

PAGE = "/console/requests"


@router.get("/requests")
def requests(request: Request) -> Response:
    """Incoming requests (open first) with decide forms, and outgoing ones; an authority
    sees those of its own jurisdiction, an operator or auditor all of them."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    found = ctx.reader.requests(jurisdiction=who.jurisdiction)
    found.sort(key=lambda r: (r.status is not RequestStatus.OPEN, r.filed_at))
    mine = who.jurisdiction
    incoming = [r for r in found if mine is None or r.to_jurisdiction == mine]
    outgoing = [r for r in found if mine is not None and r.from_jurisdiction == mine]
    deciders = {
        r.to_jurisdiction: ctx.reader.authorities(r.to_jurisdiction)
        for r in incoming
        if r.status is RequestStatus.OPEN
    }
    if who.authority is not None:
        deciders = {who.authority.jurisdiction: [who.authority]}
    return render(
        request,
        "console/requests.html",
        {
            "nav": "requests",
            "incoming": incoming,
            "outgoing": outgoing,
            "deciders": deciders,
            "took": took,
            "may_write": who.role is not TokenRole.AUDITOR,
        },
        who,
    )


@router.post("/requests/{request_id}/accept")
def accept(
    request: Request,
    request_id: PathId,
    csrf_token: str = Form("", max_length=200),
    authority: int = Form(0, ge=0),
    legal_basis: str = Form("", max_length=4000),
    reference: str = Form("", max_length=300),
    action: str = Form("nxdomain", max_length=20),
    reason: str = Form("", max_length=4000),
) -> Response:
    """Accept through the API: an order of the receiving jurisdiction citing the request."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = AcceptIn(
            authority=authority,
            legal_basis=legal_basis,
            reference=reference,
            action=action,  # type: ignore[arg-type]
            reason=reason,
        )
        out = api.accept_request(request_id, body, request, ctx, who)
    except ValidationError:
        return done(PAGE, "Not accepted: name the authority, its legal basis and reference")
    except ClearwallError as exc:
        return done(PAGE, f"Not accepted: {exc}")
    return done(PAGE, f"Request #{request_id} accepted as order #{out.order.id}")


def _close(request: Request, request_id: int, verb: str, authority: int, reason: str) -> Response:
    who = require(request)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = CloseIn(authority=authority or None, reason=reason)
        if verb == "refused":
            api.refuse_request(request_id, body, request, ctx, who)
        else:
            api.withdraw_request(request_id, body, request, ctx, who)
    except ValidationError:
        return done(PAGE, f"Not {verb}: give a reason")
    except ClearwallError as exc:
        return done(PAGE, f"Not {verb}: {exc}")
    return done(PAGE, f"Request #{request_id} {verb}")


@router.post("/requests/{request_id}/refuse")
def refuse(
    request: Request,
    request_id: PathId,
    csrf_token: str = Form("", max_length=200),
    authority: int = Form(0, ge=0),
    reason: str = Form("", max_length=4000),
) -> Response:
    """Refuse through the API, with a published reason."""
    check_csrf(request, csrf_token)
    return _close(request, request_id, "refused", authority, reason)


@router.post("/requests/{request_id}/withdraw")
def withdraw(
    request: Request,
    request_id: PathId,
    csrf_token: str = Form("", max_length=200),
    reason: str = Form("", max_length=4000),
) -> Response:
    """Withdraw one's own request through the API, with a published reason."""
    check_csrf(request, csrf_token)
    return _close(request, request_id, "withdrawn", 0, reason)
