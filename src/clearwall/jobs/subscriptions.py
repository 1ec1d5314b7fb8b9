"""Subscriptions: fetch a list file or URL and make its order's rules equal to it."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from clearwall.errors import ClearwallError, FormatError
from clearwall.formats import ParseResult
from clearwall.formats.load import parse_rules
from clearwall.model import OrderStatus
from clearwall.store.reader import PolicyReader
from clearwall.store.records import Subscription
from clearwall.store.service import PolicyService

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


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What a refresh changed: rules added and removed, the list's size, its parse."""

    subscription: Subscription
    added: int
    removed: int
    rule_count: int
    parsed: ParseResult


def refresh(
    service: PolicyService,
    sub: Subscription,
    actor_jurisdiction: str | None,
    public_only: bool | None = None,
) -> Refreshed:
    """Fetch a subscription's list and make its order's rules equal to it (one amendment).

    An authority's refresh (``actor_jurisdiction`` set) may reach public addresses only,
    as may any refresh with ``public_only``. A failed fetch or parse is recorded as the
    subscription's status and re-raised.
    """
    if public_only is None:
        public_only = actor_jurisdiction is not None
    reader = PolicyReader(service.store)
    try:
        text = fetch(sub.source, public_only=public_only)
        parsed = parse_rules(text, sub.format, sub.source)
    except FormatError as exc:
        service.record_refresh(sub.id, f"failed: {exc}")
        raise
    current = set(reader.order_rules(sub.order_id))
    wanted = set(parsed.rules)
    key = {(r.kind, r.value) for r in wanted}
    add = wanted - current
    remove = {r for r in current if (r.kind, r.value) not in key}
    service.amend_order(
        sub.order_id,
        add=sorted(add),
        remove=sorted(remove),
        reason=f"subscription {sub.id} refresh from {sub.source}",
        actor_jurisdiction=actor_jurisdiction,
    )
    service.record_refresh(sub.id, f"ok: {len(wanted)} rules, +{len(add)} -{len(remove)}")
    [after] = [s for s in reader.subscriptions(sub.order_id) if s.id == sub.id]
    return Refreshed(after, len(add), len(remove), len(wanted), parsed)


def refresh_due(
    service: PolicyService, public_only: bool, now: dt.datetime | None = None
) -> list[int]:
    """Refresh every subscription of an active order whose interval has passed; their ids.

    Failures are recorded on the subscription and do not stop the others.
    """
    now = now or dt.datetime.now(dt.UTC)
    reader = PolicyReader(service.store)
    done: list[int] = []
    for sub in reader.subscriptions():
        if (
            sub.last_refresh is not None
            and (now - sub.last_refresh).total_seconds() < sub.refresh_seconds
        ):
            continue
        if reader.order(sub.order_id).status is not OrderStatus.ACTIVE:
            continue
        try:
            refresh(service, sub, None, public_only=public_only)
        except ClearwallError as exc:
            log.warning("subscription %d refresh failed: %s", sub.id, exc)
        done.append(sub.id)
    return done
