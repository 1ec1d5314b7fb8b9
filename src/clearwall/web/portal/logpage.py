"""The log page (checkpoint, verifier key, recent entries, how to verify) and the Atom feed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clearwall.errors import ClearwallError
from clearwall.store.records import LogEntry
from clearwall.web.context import WebContext
from clearwall.web.feed import FeedItem, atom_feed
from clearwall.web.portal.render import page

router = APIRouter()

RECENT = 30
FEED_SIZE = 50
FEED_TYPES = ("order-published", "order-amended", "order-revoked", "order-expired")


def describe(entry: LogEntry) -> dict[str, Any]:
    """The human summary of one log entry: type, time, order, appeal, jurisdiction,
    title, reason."""
    try:
        event = json.loads(entry.data)
    except ValueError:
        event = {}
    if not isinstance(event, dict):
        event = {}
    about = event.get("order")
    order = about.get("id") if isinstance(about, dict) else about
    title = about.get("title", "") if isinstance(about, dict) else ""
    place = event.get("jurisdiction")
    code = None
    if isinstance(place, dict) and isinstance(place.get("code"), str):
        code = place["code"]
        networks = place.get("networks")
        shown = ", ".join(str(n) for n in networks) if isinstance(networks, list) else ""
        title = f"{place.get('name', '')} (networks: {shown or 'none'})"
    return {
        "index": entry.index,
        "type": str(event.get("type", "unknown")),
        "time": str(event.get("time", "")),
        "order": order,
        "appeal": event.get("appeal"),
        "jurisdiction": code,
        "title": title,
        "reason": event.get("reason") or event.get("outcome") or "",
    }


def recent_entries(ctx: WebContext, count: int) -> list[dict[str, Any]]:
    """The newest ``count`` log entries, newest first."""
    size = ctx.store.log_size()
    return [describe(e) for e in reversed(ctx.store.log_entries(max(0, size - count), size))]


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
    """Atom feed of new, amended, revoked and expired orders, newest first."""
    ctx: WebContext = request.app.state.ctx
    items: list[FeedItem] = []
    for e in recent_entries(ctx, FEED_SIZE * 4):
        if e["type"] not in FEED_TYPES or e["order"] is None:
            continue
        verb = e["type"].removeprefix("order-")
        title = f"Order #{e['order']} {verb}" + (f": {e['title']}" if e["title"] else "")
        summary = e["reason"] or e["title"] or title

        try:
            updated = datetime.fromisoformat(e["time"])
        except ValueError:
            updated = datetime.now(UTC)
        items.append(
            FeedItem(
                log_index=e["index"],
                kind=e["type"],
                title=title,
                summary=str(summary),
                link=f"{ctx.base_url}/orders/{e['order']}",
                updated=updated,
            )
        )
        if len(items) >= FEED_SIZE:
            break
    body = atom_feed(
        items,
        base_url=ctx.base_url + "/",
        feed_url=ctx.base_url + "/feed.atom",
        title="clearwall: new and revoked orders",
        origin=ctx.config.ledger.origin.split("/")[0],
    )
    return Response(body, media_type="application/atom+xml; charset=utf-8")
