"""The log page (checkpoint, verifier key, recent entries, how to verify) and the Atom feed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clearwall.errors import ClearwallError
from clearwall.ledger import entries
from clearwall.ledger.entries import (
    AppealDecided,
    AppealFiled,
    EntryError,
    Event,
    JurisdictionSet,
    OrderAmended,
    OrderExpired,
    OrderPublished,
    OrderRevoked,
    RequestDecided,
    RequestFiled,
    UnknownEntry,
)
from clearwall.web.context import WebContext
from clearwall.web.feed import FeedItem, atom_feed
from clearwall.web.portal.render import page

router = APIRouter()

RECENT = 30
FEED_SIZE = 50
FEED_EVENTS = (
    OrderPublished,
    OrderAmended,
    OrderRevoked,
    OrderExpired,
    entries.OrderAdopted,
    entries.AdoptionWithdrawn,
)


@dataclass(frozen=True, slots=True)
class EntrySummary:
    """The human summary of one log entry: what happened, when, and what it is about."""

    index: int
    type: str  # the entry's type, or "unknown" for an entry that is none of ours
    time: dt.datetime | None
    event: Event | None
    order: int | None = None
    appeal: int | None = None
    jurisdiction: str | None = None
    title: str = ""
    reason: str = ""
    request: int | None = None  # the cross-border request the entry is about


def describe(index: int, data: bytes) -> EntrySummary:
    """Summarize entry ``index`` (``data``) for the log page and the feed."""
    try:
        event = entries.parse(data)
    except EntryError:
        return EntrySummary(index, "unknown", None, None)
    if isinstance(event, UnknownEntry):
        return EntrySummary(index, event.type, None, event)
    summary = EntrySummary(index, event.TYPE, event.time, event, order=event.order_id)
    match event:
        case OrderPublished() | OrderAmended():
            reason = event.reason if isinstance(event, OrderAmended) else ""
            return replace(summary, title=event.order.title, reason=reason)
        case OrderRevoked():
            return replace(summary, reason=event.reason)
        case JurisdictionSet():
            j = event.jurisdiction
            shown = ", ".join(str(n) for n in j.networks) or "none"
            return replace(summary, jurisdiction=j.code, title=f"{j.name} (networks: {shown})")
        case AppealFiled():
            return replace(summary, appeal=event.appeal_id, reason=event.reason)
        case AppealDecided():
            return replace(summary, appeal=event.appeal_id, reason=event.outcome)
        case RequestFiled():
            sender = event.authority.jurisdiction
            title = (
                f"{sender.upper()} asks {event.to.upper()} to {event.ask.value} "
                f"{event.rules.count} name(s): {event.reference}"
            )
            return replace(summary, request=event.request_id, jurisdiction=event.to, title=title)
        case RequestDecided():
            by = event.authority
            title = f"Request #{event.request_id} {event.outcome.value} by {by.name}"
            return replace(
                summary,
                request=event.request_id,
                jurisdiction=by.jurisdiction,
                title=title,
                reason=event.reason,
            )
        case entries.OrderAdopted():
            s = event.source
            cited = f"adopted from {s.origin}, entry {s.index} (its order {s.order_id})"
            return replace(summary, title=event.order.title, reason=cited)
        case entries.AdoptionWithdrawn():
            s = event.source
            return replace(summary, reason=f"{event.reason} ({s.origin}, entry {s.index})")
    return summary


def recent_entries(ctx: WebContext, count: int) -> list[EntrySummary]:
    """The newest ``count`` log entries, newest first."""
    size = ctx.store.log_size()
    found = ctx.store.log_entries(max(0, size - count), size)
    return [describe(e.index, e.data) for e in reversed(found)]


def checkpoint_text(ctx: WebContext) -> str:
    """The latest signed checkpoint note, from the published tiles or the store."""
    try:
        return ctx.tlog.checkpoint_note()
    except (ClearwallError, OSError):
        latest = ctx.store.latest_checkpoint()
        return latest.note if latest else ""


def verifier_key(ctx: WebContext) -> str:
    """The log's verifier key (C2SP vkey), or '' when the key is not available here."""
    try:
        return ctx.tlog.verifier.vkey
    except (ClearwallError, OSError, ValueError):
        return ""


def verify_command(ctx: WebContext, vkey: str) -> str:
    """The command a reader copies to check the log from anywhere."""
    return f"clearwall ledger verify --url {ctx.base_url}/log --vkey '{vkey or '<verifier key>'}'"


def witnesses(ctx: WebContext) -> dict[str, Any] | None:
    """Each configured witness, its cosignature on the published checkpoint, and who lags."""
    if not ctx.config.ledger.witnesses:
        return None
    from clearwall.ledger.witnessing import status

    st = status(ctx.tlog)
    rows = []
    for w in st.witnesses:
        when = (
            datetime.fromtimestamp(w.timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            if w.timestamp
            else ""
        )
        rows.append({**vars(w), "time": when})
    return {
        "quorum": st.quorum,
        "cosignatures": st.cosignatures,
        "witnessed": st.witnessed,
        "size": st.checkpoint.size if st.checkpoint else 0,
        "rows": rows,
        "flags": " ".join(f"--witness '{w.vkey}'" for w in st.witnesses) + f" --quorum {st.quorum}",
    }


@router.get("/log")
def log_page(request: Request) -> Response:
    """Checkpoint, verifier key, witnesses, the verify command and the recent entries."""
    ctx: WebContext = request.app.state.ctx
    vkey = verifier_key(ctx)
    return page(
        request,
        "log.html",
        {
            "nav": "log",
            "checkpoint": checkpoint_text(ctx),
            "vkey": vkey,
            "verify_command": verify_command(ctx, vkey),
            "entries": recent_entries(ctx, RECENT),
            "log_size": ctx.store.log_size(),
            "witnesses": witnesses(ctx),
        },
    )


@router.get("/feed.atom")
def feed(request: Request) -> Response:
    """Atom feed of new, amended, revoked and expired orders, and of cross-border requests
    filed and decided, newest first."""
    ctx: WebContext = request.app.state.ctx
    items: list[FeedItem] = []
    for e in recent_entries(ctx, FEED_SIZE * 4):
        if isinstance(e.event, RequestFiled | RequestDecided) and e.time is not None:
            items.append(
                FeedItem(
                    log_index=e.index,
                    kind=e.type,
                    title=e.title,
                    summary=e.reason or e.title,
                    link=f"{ctx.base_url}/requests/{e.request}",
                    updated=e.time,
                )
            )
            if len(items) >= FEED_SIZE:
                break
            continue
        if not isinstance(e.event, FEED_EVENTS) or e.order is None or e.time is None:
            continue
        verb = e.type.removeprefix("order-")
        title = f"Order #{e.order} {verb}" + (f": {e.title}" if e.title else "")
        items.append(
            FeedItem(
                log_index=e.index,
                kind=e.type,
                title=title,
                summary=e.reason or e.title or title,
                link=f"{ctx.base_url}/orders/{e.order}",
                updated=e.time,
            )
        )
        if len(items) >= FEED_SIZE:
            break
    body = atom_feed(
        items,
        base_url=ctx.base_url + "/",
        feed_url=ctx.base_url + "/feed.atom",
        title="clearwall: new and revoked orders, and requests between jurisdictions",
        origin=ctx.config.ledger.origin.split("/")[0],
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8")
