"""Subscriptions, jurisdictions and networks, authorities, tokens, witnesses and log health.

Writes go through the admin API's route functions (and its role checks: operators
redraw borders and name authorities; tokens are for operators only, as on the CLI).
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from clearwall.errors import ClearwallError
from clearwall.model import AuthorityKind
from clearwall.store.records import TokenRole
from clearwall.web.api import authorities as api_authorities
from clearwall.web.api import jurisdictions as api_jurisdictions
from clearwall.web.api import subscriptions as api_subscriptions
from clearwall.web.api.schemas import FORMATS, AuthorityIn, JurisdictionIn, PathId, SubscriptionIn
from clearwall.web.auth import require_operator, require_writer
from clearwall.web.console.session import check_csrf, done, render, require
from clearwall.web.context import WebContext
from clearwall.web.queries import order_facts

router = APIRouter()


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


@router.get("/subscriptions")
def subscriptions(request: Request) -> Response:
    """Subscriptions with their last result; add one, refresh one."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    facts = {f.order.id: f for f in order_facts(ctx.store)}
    rows = [
        (s, facts.get(s.order_id))
        for s in ctx.reader.subscriptions()
        if who.jurisdiction is None
        or (s.order_id in facts and facts[s.order_id].jurisdiction == who.jurisdiction)
    ]
    orders = [
        f
        for f in facts.values()
        if f.state() == "active" and (who.jurisdiction in (None, f.jurisdiction))
    ]
    return render(
        request,
        "console/subscriptions.html",
        {
            "nav": "subscriptions",
            "rows": rows,
            "orders": orders,
            "formats": FORMATS,
            "may_write": who.role is not TokenRole.AUDITOR,
        },
        who,
    )


@router.post("/subscriptions")
def add_subscription(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    order_id: str = Form("", max_length=20),
    source: str = Form("", max_length=2000),
    format: str = Form("auto", max_length=20),
    refresh_seconds: str = Form("86400", max_length=20),
) -> Response:
    """Subscribe an order to a list URL (operators: or a file on the gateway host)."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = SubscriptionIn(
            order_id=int(order_id) if order_id.isdigit() else 0,
            source=source,
            format=format,
            refresh_seconds=int(refresh_seconds) if refresh_seconds.isdigit() else 0,
        )
        sub = api_subscriptions.create_subscription(body, request, ctx, who)
    except (ValidationError, ClearwallError) as exc:
        return done("/console/subscriptions", f"Not added: {_problem(exc)}")
    return done("/console/subscriptions", f"Subscription #{sub.id} added")


@router.post("/subscriptions/{subscription_id}/refresh")
def refresh_subscription(
    request: Request, subscription_id: PathId, csrf_token: str = Form("", max_length=200)
) -> Response:
    """Fetch the list now and make the order's rules equal to it."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_writer(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        out = api_subscriptions.refresh_subscription(subscription_id, request, ctx, who)
    except ClearwallError as exc:
        return done("/console/subscriptions", f"Refresh failed: {exc}")
    return done(
        "/console/subscriptions",
        f"Refreshed: {out.rule_count} rules, +{out.added} -{out.removed}",
    )


@router.get("/jurisdictions")
def jurisdictions(request: Request) -> Response:
    """Jurisdictions and their client networks; operators add new ones."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    rows = [j for j in ctx.reader.jurisdictions() if who.jurisdiction in (None, j.code)]
    return render(
        request,
        "console/jurisdictions.html",
        {"nav": "jurisdictions", "rows": rows, "operator": who.role is TokenRole.OPERATOR},
        who,
    )


@router.post("/jurisdictions")
def add_jurisdiction(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    code: str = Form("", max_length=20),
    name: str = Form("", max_length=200),
    networks: str = Form("", max_length=100_000),
) -> Response:
    """Create a jurisdiction (operators only)."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_operator(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = JurisdictionIn(code=code.strip(), name=name.strip(), networks=networks.split())
        api_jurisdictions.create_jurisdiction(body, ctx, who)
    except (ValidationError, ClearwallError) as exc:
        return done("/console/jurisdictions", f"Not added: {_problem(exc)}")
    return done("/console/jurisdictions", f"Jurisdiction {code.strip().upper()} added")


@router.get("/authorities")
def authorities(request: Request) -> Response:
    """Authorities by jurisdiction; operators add new ones."""
    who = require(request)
    ctx: WebContext = request.app.state.ctx
    return render(
        request,
        "console/authorities.html",
        {
            "nav": "authorities",
            "rows": ctx.reader.authorities(who.jurisdiction),
            "jurisdictions": ctx.reader.jurisdictions(),
            "kinds": [k.value for k in AuthorityKind],
            "operator": who.role is TokenRole.OPERATOR,
        },
        who,
    )


@router.post("/authorities")
def add_authority(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    name: str = Form("", max_length=300),
    kind: str = Form("", max_length=20),
    jurisdiction: str = Form("", max_length=20),
    contacts: str = Form("", max_length=10_000),
) -> Response:
    """Create an authority bound to one jurisdiction (operators only)."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_operator(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        body = AuthorityIn(
            name=name.strip(),
            kind=kind,  # type: ignore[arg-type]
            jurisdiction=jurisdiction,
            contacts=contacts.split(),
        )
        out = api_authorities.create_authority(body, ctx, who)
    except (ValidationError, ClearwallError) as exc:
        return done("/console/authorities", f"Not added: {_problem(exc)}")
    return done("/console/authorities", f"Authority #{out.id} added")


@router.get("/tokens")
def tokens(request: Request) -> Response:
    """API tokens (operators only): never their secrets, which are not stored."""
    who = require(request)
    require_operator(request, who)
    ctx: WebContext = request.app.state.ctx
    return render(
        request,
        "console/tokens.html",
        {
            "nav": "tokens",
            "rows": ctx.tokens.list(),
            "authorities": {a.id: a for a in ctx.reader.authorities()},
            "roles": [r.value for r in TokenRole],
            "secret": None,
        },
        who,
    )


@router.post("/tokens")
def create_token(
    request: Request,
    csrf_token: str = Form("", max_length=200),
    role: str = Form("", max_length=20),
    authority: str = Form("", max_length=20),
    label: str = Form("", max_length=200),
) -> Response:
    """Create a token and show its secret on this one response (never again)."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_operator(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        secret, info = ctx.tokens.create(
            role, int(authority) if authority.isdigit() else None, label.strip()
        )
    except (ClearwallError, ValueError) as exc:
        return done("/console/tokens", f"Not created: {exc}")
    return render(
        request,
        "console/tokens.html",
        {
            "nav": "tokens",
            "rows": ctx.tokens.list(),
            "authorities": {a.id: a for a in ctx.reader.authorities()},
            "roles": [r.value for r in TokenRole],
            "secret": secret,
            "created": info,
        },
        who,
        201,
    )


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: PathId, csrf_token: str = Form("", max_length=200)
) -> Response:
    """Revoke a token: it stops working at once, console sessions included."""
    who = require(request)
    check_csrf(request, csrf_token)
    require_operator(request, who)
    ctx: WebContext = request.app.state.ctx
    try:
        ctx.tokens.revoke(token_id)
    except ClearwallError as exc:
        return done("/console/tokens", f"Not revoked: {exc}")
    return done("/console/tokens", f"Token #{token_id} revoked")


@router.get("/witnesses")
def witnesses(request: Request) -> Response:
    """The log's health: the published checkpoint, its witnesses, their lag."""
    from clearwall.ledger import witnessing

    who = require(request)
    ctx: WebContext = request.app.state.ctx
    try:
        state = witnessing.status(ctx.tlog)
        problem = ""
    except ClearwallError as exc:
        state, problem = None, str(exc)
    return render(
        request,
        "console/witnesses.html",
        {
            "nav": "witnesses",
            "state": state,
            "problem": problem,
            "log_size": ctx.store.log_size(),
            "config": ctx.config.ledger,
        },
        who,
    )
