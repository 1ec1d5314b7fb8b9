"""Appeal filing (CSRF-protected, rate-limited per client prefix) and appeal status pages."""

from __future__ import annotations

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from clearwall.errors import ClearwallError, InvalidName
from clearwall.policy.names import normalize_name
from clearwall.web.api.schemas import PathId
from clearwall.web.context import WebContext
from clearwall.web.portal.records import facts_of
from clearwall.web.portal.render import page
from clearwall.web.security import client_prefix

router = APIRouter()

MAX_CONTACT = 300
MAX_REASON = 4000


def _form(
    request: Request, order_id: int, values: dict[str, str], errors: list[str], status: int
) -> Response:
    """The appeal form with a fresh CSRF token bound to the browser's cookie."""
    ctx: WebContext = request.app.state.ctx
    cookie, new = ctx.csrf.cookie_value(request)
    response = page(
        request,
        "appeal_form.html",
        {
            "nav": "appeals",
            "f": facts_of(ctx, order_id),
            "form": values,
            "errors": errors,
            "csrf_token": ctx.csrf.form_token(cookie),
        },
        status,
    )
    if new:
        ctx.csrf.set_cookie(response, cookie, secure=request.url.scheme == "https")
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/orders/{order_id}/appeal")
def appeal_form(
    request: Request, order_id: PathId, name: str = Query("", max_length=300)
) -> Response:
    """The form to appeal an order, pre-filled with the blocked name when known."""
    return _form(request, order_id, {"name": name, "contact": "", "reason": ""}, [], 200)


@router.post("/orders/{order_id}/appeal")
def file_appeal(
    request: Request,
    order_id: PathId,
    csrf_token: str = Form("", max_length=200),
    name: str = Form("", max_length=300),
    contact: str = Form("", max_length=MAX_CONTACT),
    reason: str = Form("", max_length=MAX_REASON),
) -> Response:
    """File the appeal; it is published on the log, then the status page is shown."""
    ctx: WebContext = request.app.state.ctx
    values = {"name": name, "contact": contact, "reason": reason}
    if not ctx.csrf.verify(request, csrf_token):
        return _form(
            request,
            order_id,
            values,
            ["Your session expired or the form came from another site. Please submit again."],
            403,
        )
    if not ctx.appeal_limiter.allow(client_prefix(request.client.host if request.client else None)):
        response = _form(
            request,
            order_id,
            values,
            ["Too many appeals from your network. Please try again in an hour."],
            429,
        )
        response.headers["Retry-After"] = "3600"
        return response
    errors: list[str] = []
    try:
        normalize_name(name)
    except InvalidName as exc:
        errors.append(f"The domain name is not valid: {exc}")
    if not contact.strip():
        errors.append("Please say how we can reach you (it is never published).")
    if not reason.strip():
        errors.append("Please give a reason for your appeal.")
    if errors:
        return _form(request, order_id, values, errors, 400)
    try:
        appeal = ctx.service.file_appeal(order_id, name, contact, reason)
    except (InvalidName, ClearwallError) as exc:
        return _form(request, order_id, values, [str(exc)], 400)
    return RedirectResponse(f"/appeals/{appeal.id}?filed=1", status_code=303)


@router.get("/appeals")
def appeals(request: Request) -> Response:
    """Every appeal and its status (contacts are never shown)."""
    ctx: WebContext = request.app.state.ctx
    return page(
        request,
        "appeals.html",
        {"nav": "appeals", "appeals": list(reversed(ctx.reader.appeals()))},
    )


@router.get("/appeals/{appeal_id}")
def appeal(request: Request, appeal_id: PathId, filed: int = Query(0, ge=0, le=1)) -> Response:
    """One appeal: the order, the name, the reason, and the decision once made."""
    ctx: WebContext = request.app.state.ctx
    a = ctx.reader.appeal(appeal_id)
    return page(
        request,
        "appeal.html",
        {"nav": "appeals", "appeal": a, "f": facts_of(ctx, a.order_id), "just_filed": bool(filed)},
    )
