"""Block pages: HTTP 451 (RFC 7725) for legal orders, an explanatory 403 for security blocks.

A request whose ``Host`` is a name blocked for the client's jurisdiction gets a page that
names the authority, legal basis, reference and dates, links the order with
``Link: <order URL>; rel="blocked-by"`` and explains how to appeal. Portal host names and
IP literals are never treated as blocked hosts on the main listener.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request
from fastapi.responses import Response

from clearwall.errors import ClearwallError, InvalidName
from clearwall.model import EDECode, Verdict
from clearwall.policy.model import Order
from clearwall.policy.names import normalize_name, to_unicode
from clearwall.web.context import WebContext
from clearwall.web.i18n import Translator, negotiate, translator
from clearwall.web.queries import OTHER_NETWORKS

LEGAL_CODES = frozenset({EDECode.CENSORED, EDECode.PROHIBITED})
"""Blocks by court or regulator order: answered with 451 Unavailable For Legal Reasons."""


def host_name(request: Request) -> str:
    """The request's Host header without port, lowercased ("" when absent)."""
    host = request.headers.get("host", "").strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_jurisdiction(request: Request, ctx: WebContext) -> str:
    """The jurisdiction of the client's address, else the configured default, else none."""
    snapshot = ctx.snapshot()
    address = request.client.host if request.client else ""
    code = snapshot.jurisdiction_of(address) if address else None
    return code or ctx.config.dns.default_jurisdiction or OTHER_NETWORKS


def maybe_block(request: Request, ctx: WebContext, *, dedicated: bool) -> Response | None:
    """The block page for this request, or None when the portal should answer it.

    On the dedicated listener every request gets an answer: a block page, or a page
    saying the name is not blocked (404).
    """
    host = host_name(request)
    if not dedicated and (
        host in ctx.portal_hosts or _is_ip(host) or request.url.path.startswith("/static/")
    ):
        return None
    lang = negotiate(request.headers.get("accept-language"), ctx.config.dns.block.language)
    t = translator(lang)
    try:
        name = normalize_name(host)
    except InvalidName:
        if not dedicated:
            return None
        return _render(
            request,
            ctx,
            "blockpage.html",
            400,
            {"t": t, "lang": lang, "name": host, "kind": "none"},
        )
    verdict = ctx.snapshot().match(name, client_jurisdiction(request, ctx))
    if not verdict.blocked or not verdict.citations:
        if not dedicated:
            return None
        return _render(
            request,
            ctx,
            "blockpage.html",
            404,
            {"t": t, "lang": lang, "name": to_unicode(name), "kind": "none"},
        )
    return block_response(request, ctx, name, verdict, t, lang)


def block_response(
    request: Request,
    ctx: WebContext,
    name: str,
    verdict: Verdict,
    t: Translator,
    lang: str = "en",
) -> Response:
    """Render the 451 or 403 page for a blocked ``name`` and attach the Link header."""
    ref = verdict.citations[0].order
    legal = ref.ede in LEGAL_CODES
    order: Order | None
    try:
        order = ctx.reader.order(ref.id)
    except ClearwallError:
        order = None
    order_url = f"{ctx.base_url}/orders/{ref.id}"
    response = _render(
        request,
        ctx,
        "blockpage.html",
        451 if legal else 403,
        {
            "t": t,
            "lang": lang,
            "name": to_unicode(name),
            "kind": "legal" if legal else "security",
            "ref": ref,
            "order": order,
            "order_url": order_url,
            "appeal_url": f"{ctx.base_url}/orders/{ref.id}/appeal?name={name}",
            "portal_url": ctx.base_url + "/",
            "others": verdict.citations[1:],
        },
    )
    response.headers["Link"] = f'<{order_url}>; rel="blocked-by"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language"
    return response


def _render(
    request: Request, ctx: WebContext, template: str, status: int, values: dict[str, object]
) -> Response:
    values.setdefault("lang", "en")
    return ctx.templates.TemplateResponse(request, template, values, status_code=status)
