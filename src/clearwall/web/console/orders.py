"""Orders in the console: upload a list, preview it, publish; amend, revoke, read its proof.

Publishing, amending and revoking call the admin API's route functions with the
signed-in principal, so the scope checks (an authority acts only in its jurisdiction,
only operators issue all-jurisdiction orders) and the validation are the API's own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError

from clearwall.errors import ClearwallError
from clearwall.formats import ParseResult, parse_text
from clearwall.model import Action, Category
from clearwall.policy.model import Authority
from clearwall.store.records import TokenRole
from clearwall.web.api import orders as api
from clearwall.web.api.schemas import FORMATS, AmendIn, OrderIn, PathId, RevokeIn
from clearwall.web.auth import Principal, check_jurisdiction, require_writer
from clearwall.web.console.session import check_csrf, done, render, require
from clearwall.web.context import WebContext
from clearwall.web.portal.records import facts_of, order_history
from clearwall.web.queries import OrderFacts, order_facts

router = APIRouter()

MAX_UPLOAD = 50_000_000  # the API's limit on list text
PREVIEW_ISSUES = 200  # rejected lines listed in the preview (the count is exact)
PREVIEW_RULES = 30
COVERAGE_CHECKED = 5000  # parsed names checked against the orders in force
COVERAGE_SHOWN = 50


@dataclass
class OrderForm:
    """The fields of the new-order form, as typed (validated by the API's ``OrderIn``)."""

    authority: str = ""
    title: str = ""
    legal_basis: str = ""
    reference: str = ""
    category: str = Category.COURT_ORDER.value
    action: str = Action.NXDOMAIN.value
    effective_from: str = ""
    expires: str = ""
    document_url: str = ""
    all_jurisdictions: str = ""
    format: str = "auto"
    rules: str = ""

    def body(self) -> OrderIn:
        """The API request body (raises ``ValidationError`` with the API's messages)."""
        return OrderIn(
            authority=int(self.authority) if self.authority.isdigit() else 0,
            title=self.title,
            legal_basis=self.legal_basis,
            reference=self.reference,
            category=self.category,  # type: ignore[arg-type]
            action=self.action,  # type: ignore[arg-type]
            effective_from=_day(self.effective_from),
            expires=_day(self.expires),
            document_url=self.document_url,
            all_jurisdictions=bool(self.all_jurisdictions),
            rules=self.rules,
            format=self.format,
        )


def _day(text: str) -> dt.datetime | None:
    """A date field (YYYY-MM-DD) as midnight UTC; empty means none."""
    text = text.strip()
    if not text:
        return None
    return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)


def order_form(
    authority: str = Form("", max_length=20),
    title: str = Form("", max_length=2000),
    legal_basis: str = Form("", max_length=4000),
    reference: str = Form("", max_length=300),
    category: str = Form(Category.COURT_ORDER.value, max_length=40),
    action: str = Form(Action.NXDOMAIN.value, max_length=20),
    effective_from: str = Form("", max_length=20),
    expires: str = Form("", max_length=20),
    document_url: str = Form("", max_length=2000),
    all_jurisdictions: str = Form("", max_length=5),
    format: str = Form("auto", max_length=20),
    rules: str = Form("", max_length=MAX_UPLOAD),
) -> OrderForm:
    """The order form from a POST body."""
    return OrderForm(
        authority,
        title,
        legal_basis,
        reference,
        category,
        action,
        effective_from,
        expires,
        document_url,
        all_jurisdictions,
        format,
        rules,
    )


def _authorities(ctx: WebContext, who: Principal) -> list[Authority]:
    """The authorities the principal may issue orders as."""
    if who.authority is not None:
        return [who.authority]
    return ctx.reader.authorities()


def _visible(who: Principal, facts: list[OrderFacts]) -> list[OrderFacts]:
    """An authority sees its own jurisdiction's orders; operators and auditors all."""
    if who.jurisdiction is None:
        return facts
    return [f for f in facts if f.jurisdiction == who.jurisdiction]


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]


def _form_page(
    request: Request, who: Principal, form: OrderForm, errors: list[str], status: int = 200
) -> Response:
    ctx: WebContext = request.app.state.ctx
    return render(
        request,
        "console/order_new.html",
        {
            "nav": "orders",
            "form": form,
            "errors": errors,
            "authorities": _authorities(ctx, who),
            "categories": [c.value for c in Category],
            "actions": [a.value for a in Action],
            "formats": FORMATS,
        },
        who,
        status,
    )


@router.get("/orders")
def orders(request: Request) -> Response:
    """The orders the principal may see, newest first."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    return render(
        request,
        "console/orders.html",
        {"nav": "orders", "facts": _visible(who, order_facts(ctx.store))},
        who,
    )


@router.get("/orders/new")
def new_order(request: Request) -> Response:
    """The upload form."""
    who = require(request)
    return _form_page(request, who, OrderForm(), [])


@dataclass(frozen=True)
class Coverage:
    """A parsed name that orders in force already block for the affected clients."""

    name: str
    jurisdiction: str
    orders: tuple[int, ...]


def _coverage(ctx: WebContext, parsed: ParseResult, codes: list[str]) -> tuple[int, list[Coverage]]:
    """How many of the first ``COVERAGE_CHECKED`` names other orders already block, and
    the first of them."""
    snapshot = ctx.snapshot()
    found: list[Coverage] = []
    count = 0
    for rule in parsed.rules[:COVERAGE_CHECKED]:
        if rule.kind.is_ip or rule.kind.is_allow:
            continue
        for code in codes:
            verdict = snapshot.match(rule.value, code)
            if verdict.blocked:
                count += 1
                if len(found) < COVERAGE_SHOWN:
                    found.append(
                        Coverage(rule.value, code, tuple(c.order.id for c in verdict.citations))
                    )
                break
    return count, found


@router.post("/orders/preview")
def preview(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    form: OrderForm = Depends(order_form),
    upload: UploadFile | None = File(None),
) -> Response:
    """Parse the uploaded (or pasted) list and show what publishing would do."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    if upload is not None and upload.filename:
        data = upload.file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            return _form_page(request, who, form, ["The file is larger than 50 MB."], 400)
        form.rules = data.decode("utf-8", errors="replace")
    errors: list[str] = []
    try:
        body = form.body()
    except ValidationError as exc:
        return _form_page(request, who, form, _errors(exc), 400)
    except ValueError as exc:
        return _form_page(request, who, form, [f"A date is not valid: {exc}"], 400)
    try:
        authority = ctx.reader.authority(body.authority)
    except ClearwallError as exc:
        return _form_page(request, who, form, [str(exc)], 400)
    if who.authority is not None and authority.id != who.authority.id:
        return _form_page(request, who, form, ["You may issue orders only as yourself."], 403)
    try:
        parsed = parse_text(body.rules, format=body.format, source="the uploaded list")
    except ClearwallError as exc:
        return _form_page(request, who, form, [str(exc)], 400)
    if not parsed.rules:
        errors.append("No rule was found in the list: nothing would be published.")
    if body.all_jurisdictions:
        codes = [j.code for j in ctx.reader.jurisdictions()] + ["*"]
        affected = "every jurisdiction (an all-jurisdiction order)"
    else:
        codes = [authority.jurisdiction]
        jurisdiction = ctx.reader.jurisdiction(authority.jurisdiction)
        affected = f"{jurisdiction.name} ({jurisdiction.code.upper()})"
    covered, coverage = _coverage(ctx, parsed, codes)
    return render(
        request,
        "console/order_preview.html",
        {
            "nav": "orders",
            "form": form,
            "fields": {k: v for k, v in asdict(form).items() if k != "rules"},
            "authority": authority,
            "parsed": parsed,
            "issues": parsed.issues[:PREVIEW_ISSUES],
            "sample": parsed.rules[:PREVIEW_RULES],
            "affected": affected,
            "covered": covered,
            "coverage": coverage,
            "checked": min(len(parsed.rules), COVERAGE_CHECKED),
            "errors": errors,
        },
        who,
    )


@router.post("/orders/publish")
def publish(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    form: OrderForm = Depends(order_form),
) -> Response:
    """Publish the previewed order through the API (order and log entry commit together)."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = form.body()
        out = api.create_order(body, request, ctx, who)
    except ValidationError as exc:
        return _form_page(request, who, form, _errors(exc), 400)
    except ValueError as exc:
        return _form_page(request, who, form, [f"A date is not valid: {exc}"], 400)
    except ClearwallError as exc:
        return _form_page(request, who, form, [str(exc)], 400)
    return done(f"/console/orders/{out.id}", f"Order #{out.id} published")


@router.get("/orders/{order_id}")
def order(request: Request, order_id: PathId) -> Response:
    """One order: its facts, rules, history on the log with proofs, amend and revoke."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    f = facts_of(ctx, order_id)
    if _visible(who, [f]) == []:
        check_jurisdiction(request, who, f.jurisdiction)  # counted, then a 403 page
    return render(
        request,
        "console/order.html",
        {
            "nav": "orders",
            "f": f,
            "rules": ctx.reader.order_rules(order_id)[:100],
            "history": order_history(ctx, order_id),
            "appeals": ctx.reader.appeals(order_id),
            "may_write": who.role is not TokenRole.AUDITOR,
            "formats": FORMATS,
        },
        who,
    )


def _act(request: Request, order_id: int, message: str, action: Any) -> Response:
    """Run an API write; a refused one (409, 400) is shown on the order's page."""
    path = f"/console/orders/{order_id}"
    try:
        action()
    except ValidationError as exc:
        return done(path, "Not done: " + "; ".join(_errors(exc)))
    except ClearwallError as exc:
        return done(path, f"Not done: {exc}")
    return done(path, message)


@router.post("/orders/{order_id}/revoke")
def revoke(
    request: Request,
    order_id: PathId,
    csrf_token: str = Form("", max_length=200),
    reason: str = Form("", max_length=4000),
) -> Response:
    """Revoke with a reason (published on the log)."""
    who = require(request)
    check_csrf(request, csrf_token)
    ctx: WebContext = request.app.state.ctx
    require_writer(request, who)
    return _act(
        request,
        order_id,
        "Order revoked",
        lambda: api.revoke_order(order_id, RevokeIn(reason=reason), request, ctx, who),
    )


@router.post("/orders/{order_id}/amend")
def amend(
    request: Request,
    order_id: PathId,
    csrf_token: str = Form("", max_length=200),
    add: str = Form("", max_length=MAX_UPLOAD),
    remove: str = Form("", max_length=MAX_UPLOAD),
    format: str = Form("auto", max_length=20),
    reason: str = Form("", max_length=4000),
) -> Response:
    """Add and/or remove rules (one ``order-amended`` log entry)."""
    who = require(request)
    check_csrf(request, csrf_token)
    ctx: WebContext = request.app.state.ctx
    require_writer(request, who)
    return _act(
        request,
        order_id,
        "Order amended",
        lambda: api.amend_order(
            order_id,
            AmendIn(add=add, remove=remove, format=format, reason=reason),
            request,
            ctx,
            who,
        ),
    )
