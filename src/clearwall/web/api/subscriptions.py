"""Subscriptions: keep an order's rules in step with a list file or URL, refreshed on demand."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Depends, Request

from clearwall.errors import ClearwallError, FormatError, NotFound
from clearwall.model import OrderStatus
from clearwall.store.records import Subscription, TokenRole
from clearwall.web.api.common import issues_of, parse_rules
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
log = logging.getLogger(__name__)

MAX_LIST_BYTES = 256 * 1024 * 1024  # larger downloads are refused, not truncated
FETCH_TIMEOUT = 30.0


def is_url(source: str) -> bool:
    """True for http(s) URLs; anything else is a file path on the gateway host."""
    return source.startswith(("http://", "https://"))


def is_internal(url: str) -> bool:
    """True when a URL's host is, or resolves to, a non-public address (loopback, private,
    link-local, reserved) — or does not resolve at all."""
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return True
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            return True
    return False


def fetch(source: str, public_only: bool = False) -> str:
    """The text of a list file or URL; FormatError (a 400) when it cannot be read.

    With ``public_only`` every request, redirects included, must go to a public address.
    """
    if not is_url(source):
        try:
            return Path(source).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FormatError(f"cannot read {source}: {exc.strerror or exc}") from exc
    chunks: list[bytes] = []
    size = 0
    try:

        def guard(request: httpx.Request) -> None:
            if public_only and is_internal(str(request.url)):
                raise FormatError(f"{request.url} is not a public address")

        with (
            httpx.Client(
                timeout=FETCH_TIMEOUT, follow_redirects=True, event_hooks={"request": [guard]}
            ) as client,
            client.stream("GET", source) as response,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_LIST_BYTES:
                    raise FormatError(f"{source} is larger than {MAX_LIST_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise FormatError(f"cannot fetch {source}: {exc}") from exc
    return b"".join(chunks).decode("utf-8", errors="replace")


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


def refresh(
    ctx: WebContext,
    sub: Subscription,
    actor_jurisdiction: str | None,
    public_only: bool | None = None,
) -> RefreshOut:
    """Fetch a subscription's list and make its order's rules equal to it (one amendment).

    An authority's refresh (``actor_jurisdiction`` set) may reach public addresses only,
    as may any refresh with ``public_only``. A failed fetch or parse is recorded as the
    subscription's status and re-raised.
    """
    if public_only is None:
        public_only = actor_jurisdiction is not None
    try:
        text = fetch(sub.source, public_only=public_only)
        parsed = parse_rules(text, sub.format, sub.source)
    except FormatError as exc:
        ctx.service.record_refresh(sub.id, f"failed: {exc}")
        raise
    current = set(ctx.reader.order_rules(sub.order_id))
    wanted = set(parsed.rules)
    key = {(r.kind, r.value) for r in wanted}
    add = wanted - current
    remove = {r for r in current if (r.kind, r.value) not in key}
    ctx.service.amend_order(
        sub.order_id,
        add=sorted(add),
        remove=sorted(remove),
        reason=f"subscription {sub.id} refresh from {sub.source}",
        actor_jurisdiction=actor_jurisdiction,
    )
    ctx.service.record_refresh(sub.id, f"ok: {len(wanted)} rules, +{len(add)} -{len(remove)}")
    return RefreshOut(
        subscription=SubscriptionOut.of(_subscription(ctx, sub.id)),
        added=len(add),
        removed=len(remove),
        rule_count=len(wanted),
        issues=issues_of(parsed),
    )


def refresh_due(ctx: WebContext, now: dt.datetime | None = None) -> list[int]:
    """Refresh every subscription of an active order whose interval has passed; their ids.

    Failures are recorded on the subscription and do not stop the others. URLs are
    fetched from public addresses only unless ``[web] subscriptions_fetch_internal``.
    """
    now = now or dt.datetime.now(dt.UTC)
    public_only = not ctx.config.web.subscriptions_fetch_internal
    done: list[int] = []
    for sub in ctx.reader.subscriptions():
        if (
            sub.last_refresh is not None
            and (now - sub.last_refresh).total_seconds() < sub.refresh_seconds
        ):
            continue
        if ctx.reader.order(sub.order_id).status is not OrderStatus.ACTIVE:
            continue
        try:
            refresh(ctx, sub, None, public_only=public_only)
        except ClearwallError as exc:
            log.warning("subscription %d refresh failed: %s", sub.id, exc)
        done.append(sub.id)
    return done


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
    return refresh(ctx, sub, principal.jurisdiction)
