"""Order, authority and jurisdiction pages, and the downloadable rule file of an order."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.exc import SQLAlchemyError

from clearwall.errors import ClearwallError, NotFound
from clearwall.federation import records
from clearwall.ledger import entries
from clearwall.ledger.entries import rule_line
from clearwall.model import OrderStatus
from clearwall.store import repositories
from clearwall.web.api.schemas import PathId
from clearwall.web.context import WebContext
from clearwall.web.portal.logpage import EntrySummary, describe
from clearwall.web.portal.render import page
from clearwall.web.queries import OrderFacts, order_facts

router = APIRouter()

SAMPLE_RULES = 12
STATES = ("active", "scheduled", "revoked", "expired")


def facts_of(ctx: WebContext, order_id: int) -> OrderFacts:
    """One order's facts; NotFound (a 404 page) when there is no such order."""
    found = order_facts(ctx.store, [order_id])
    if not found:
        raise NotFound(f"there is no order #{order_id}")
    return found[0]


def order_history(ctx: WebContext, order_id: int) -> list[EntrySummary]:
    """The log entries about one order (its versions, its end, its appeals), oldest
    first: its public history."""
    summaries = (describe(e.index, e.data) for e in ctx.store.log_entries())
    return [s for s in summaries if s.order == order_id]


@dataclass(frozen=True, slots=True)
class Adoption:
    """Where an adopted order comes from: the registry's log entry its latest adoption or
    withdrawal cites, and the registry's address when this installation still mirrors it."""

    origin: str
    index: int
    leaf_hash: str
    order: int  # the registry's id of the order
    url: str  # the registry's base URL ("" when no mirror of it is kept)


def adoption_of(ctx: WebContext, history: list[EntrySummary]) -> Adoption | None:
    """The source of an order adopted from a registry (None: an order of this installation)."""
    cited = [
        s.event
        for s in history
        if isinstance(s.event, entries.OrderAdopted | entries.AdoptionWithdrawn)
    ]
    if not cited:
        return None
    source = cited[-1].source
    url = ""
    with contextlib.suppress(ClearwallError, SQLAlchemyError):
        found = records.source_of(ctx.store, cited[-1].order_id)
        if found is not None and found[0].origin == source.origin:
            url = found[0].url
    return Adoption(source.origin, source.index, source.leaf_hash, source.order_id, url)


@router.get("/orders")
def orders(request: Request, state: str = Query("", max_length=20)) -> Response:
    """Every order, newest first, optionally only those in one state."""
    ctx: WebContext = request.app.state.ctx
    facts = order_facts(ctx.store)
    if state in STATES:
        facts = [f for f in facts if f.state() == state]
    return page(
        request,
        "orders.html",
        {"nav": "orders", "facts": facts, "state": state if state in STATES else ""},
    )


@router.get("/orders/{order_id}")
def order(request: Request, order_id: PathId) -> Response:
    """An order: who, why, reference, dates, document, rules, log entry and appeals."""
    ctx: WebContext = request.app.state.ctx
    f = facts_of(ctx, order_id)
    with ctx.store.read() as conn:
        sample = [
            rule_line(r).decode()
            for r in islice(repositories.iter_rules(conn, order_id), SAMPLE_RULES)
        ]
    proof = getattr(request.app.state, "inclusion_url", lambda i: "")
    # An all-jurisdiction order lists the jurisdictions that opted out of names of it;
    # a single jurisdiction's order lists the feeds it opts its clients out of.
    if f.order.all_jurisdictions:
        exceptions = ctx.reader.feed_exceptions(order_id)
        excepts: list[tuple[int, int]] = []
    else:
        exceptions = []
        excepts = [
            (feed.id, n)
            for feed in ctx.reader.orders(status=OrderStatus.ACTIVE)
            if feed.all_jurisdictions
            for oid, _, n in ctx.reader.feed_exceptions(feed.id)
            if oid == order_id
        ]
    history = order_history(ctx, order_id)
    return page(
        request,
        "order.html",
        {
            "nav": "orders",
            "f": f,
            "sample": sample,
            "history": history,
            "adoption": adoption_of(ctx, history),
            "appeals": ctx.reader.appeals(order_id),
            "answers": ctx.reader.requests(order_id=order_id),
            "exceptions": exceptions,
            "excepts": excepts,
            "revoked_reason": ctx.reader.order_revoked_reason(order_id),
            "inclusion_url": proof(f.order.log_index) if f.order.log_index is not None else "",
        },
    )


@router.get("/orders/{order_id}/rules.txt")
def order_rules_file(request: Request, order_id: PathId) -> Response:
    """The order's rules as sorted canonical lines; their Merkle root is the logged digest."""
    ctx: WebContext = request.app.state.ctx
    rules = ctx.reader.order_rules(order_id)

    def lines() -> Iterator[bytes]:
        for line in sorted({rule_line(r) for r in rules}):
            yield line + b"\n"

    return StreamingResponse(
        lines(),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="order-{order_id}-rules.txt"'},
    )


@router.get("/authorities/{authority_id}")
def authority(request: Request, authority_id: PathId) -> Response:
    """An authority, its jurisdiction and every order it issued."""
    ctx: WebContext = request.app.state.ctx
    a = ctx.reader.authority(authority_id)
    facts = [f for f in order_facts(ctx.store) if f.authority.id == authority_id]
    return page(request, "authority.html", {"nav": "jurisdictions", "authority": a, "facts": facts})


@router.get("/jurisdictions")
def jurisdictions(request: Request) -> Response:
    """Every jurisdiction with its networks, authorities and orders in force."""
    ctx: WebContext = request.app.state.ctx
    active: Counter[str] = Counter(
        f.jurisdiction for f in order_facts(ctx.store) if f.state() == "active"
    )
    authority_count: Counter[str] = Counter(a.jurisdiction for a in ctx.reader.authorities())
    return page(
        request,
        "jurisdictions.html",
        {
            "nav": "jurisdictions",
            "jurisdictions": ctx.reader.jurisdictions(),
            "active": active,
            "authority_count": authority_count,
        },
    )


@router.get("/jurisdictions/{code}")
def jurisdiction(request: Request, code: str) -> Response:
    """A jurisdiction: its networks, authorities and their orders."""
    ctx: WebContext = request.app.state.ctx
    j = ctx.reader.jurisdiction(code)
    facts = [f for f in order_facts(ctx.store) if f.jurisdiction == j.code]
    return page(
        request,
        "jurisdiction.html",
        {
            "nav": "jurisdictions",
            "jurisdiction": j,
            "authorities": ctx.reader.authorities(j.code),
            "facts": facts,
        },
    )
