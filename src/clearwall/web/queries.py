"""Read-side views shared by the API and the portal: lookups, order facts, statistics."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from clearwall.ledger import entries
from clearwall.ledger.entries import (
    EntryError,
    Family,
    OrderPublished,
)
from clearwall.ledger.logstate import LogState
from clearwall.model import Action, Citation, OrderStatus, Verdict
from clearwall.policy.model import Authority, Jurisdiction, Order
from clearwall.policy.names import normalize_name, to_unicode
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.store import repositories, schema
from clearwall.store.db import Store
from clearwall.store.records import AppealStatus

OTHER_NETWORKS = "*"
"""Pseudo-jurisdiction code for clients in no configured jurisdiction."""


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """An order with what a reader needs next to it: its authority and rule count."""

    order: Order
    authority: Authority
    rule_count: int

    @property
    def jurisdiction(self) -> str:
        """The jurisdiction the order applies to (``*`` for all-jurisdiction orders)."""
        return OTHER_NETWORKS if self.order.all_jurisdictions else self.authority.jurisdiction

    def state(self, now: dt.datetime | None = None) -> str:
        """active, scheduled, expired or revoked, as a reader would say it today."""
        now = now or dt.datetime.now(dt.UTC)
        o = self.order
        if o.status is not OrderStatus.ACTIVE:
            return o.status.value
        if now < o.effective_from:
            return "scheduled"
        if o.expires is not None and now >= o.expires:
            return "expired"
        return "active"


def order_facts(store: Store, order_ids: Iterable[int] | None = None) -> list[OrderFacts]:
    """Orders (all, or the given ids) with authority and rule count, newest first."""
    o = schema.orders
    with store.read() as conn:
        query = select(o).order_by(o.c.id.desc())
        if order_ids is not None:
            ids = list(order_ids)
            if not ids:
                return []
            query = query.where(o.c.id.in_(ids))
        rows = conn.execute(query).all()
        authorities = {a.id: a for a in repositories.list_authorities(conn)}
    return [
        OrderFacts(
            repositories.order_from_row(r), authorities[int(r.authority_id)], int(r.rule_count)
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class JurisdictionVerdict:
    """One row of a search result: the verdict for clients of one jurisdiction."""

    code: str
    name: str
    blocked: bool
    action: Action | None
    citations: tuple[Citation, ...]
    orders: tuple[OrderFacts, ...]

    @property
    def cited(self) -> tuple[tuple[Citation, OrderFacts], ...]:
        """Each citation with its order's facts (citations of unknown orders dropped)."""
        by_id = {f.order.id: f for f in self.orders}
        return tuple((c, by_id[c.order.id]) for c in self.citations if c.order.id in by_id)


@dataclass(frozen=True, slots=True)
class Lookup:
    """A search result: the canonical name and the verdict in every jurisdiction."""

    name: str
    unicode: str
    log_size: int
    verdicts: tuple[JurisdictionVerdict, ...]

    @property
    def blocked_in(self) -> tuple[JurisdictionVerdict, ...]:
        """The verdicts that block."""
        return tuple(v for v in self.verdicts if v.blocked)


def lookup(
    store: Store, snapshot: PolicySnapshot, jurisdictions: list[Jurisdiction], text: str
) -> Lookup:
    """Normalize ``text`` (raises InvalidName) and ask the snapshot for every jurisdiction.

    Clients outside every jurisdiction are shown as one more row, only when an
    all-jurisdiction (operator security) order blocks the name for them.
    """
    name = normalize_name(text)
    rows: list[tuple[str, str]] = [(j.code, j.name) for j in jurisdictions]
    known = {code for code, _ in rows}
    rows += [(code, code) for code in snapshot.jurisdictions() if code not in known]
    results: list[tuple[str, str, Verdict]] = []
    cited: set[int] = set()
    for code, label in rows:
        verdict = snapshot.match(name, code)
        results.append((code, label, verdict))
        cited.update(c.order.id for c in verdict.citations)
    other = snapshot.match(name, OTHER_NETWORKS)
    if other.blocked:
        results.append((OTHER_NETWORKS, "Any other network", other))
        cited.update(c.order.id for c in other.citations)
    facts = {f.order.id: f for f in order_facts(store, cited)}
    verdicts = []
    for code, label, v in results:
        verdicts.append(
            JurisdictionVerdict(
                code=code,
                name=label,
                blocked=v.blocked,
                action=v.action,
                citations=v.citations,
                orders=tuple(facts[c.order.id] for c in v.citations if c.order.id in facts),
            )
        )
    return Lookup(name, to_unicode(name), snapshot.tree_size, tuple(verdicts))


@dataclass(frozen=True, slots=True)
class Point:
    """A dated change of a counted quantity."""

    day: dt.date
    delta: float


@dataclass
class Stats:
    """Policy statistics derived from the public log and the order table."""

    log_size: int = 0
    orders_total: int = 0
    orders_active: int = 0
    rules_active: int = 0
    appeals_open: int = 0
    orders_by_category: Tally[str] = field(default_factory=Tally)
    orders_by_jurisdiction: Tally[str] = field(default_factory=Tally)
    orders_by_authority: Tally[str] = field(default_factory=Tally)
    rules_by_category: Tally[str] = field(default_factory=Tally)
    orders_over_time: dict[str, list[tuple[dt.date, float]]] = field(default_factory=dict)
    rules_over_time: list[tuple[dt.date, float]] = field(default_factory=list)
    blocked_queries: Tally[str] = field(default_factory=Tally)


def _replay_log(
    store: Store,
) -> tuple[dict[str, list[tuple[dt.date, float]]], list[tuple[dt.date, float]]]:
    """Active orders per jurisdiction and active rules, as dated increments, from the log:
    each entry folded into the log state (``ledger.logstate``) and the change it made to
    the orders in force counted on its day."""
    per_jurisdiction: dict[str, list[tuple[dt.date, float]]] = {}
    rules: list[tuple[dt.date, float]] = []
    state = LogState()
    for entry in store.log_entries():
        if entries.family(entry.data) is Family.APPEAL:
            continue
        try:
            event = entries.parse(entry.data)
        except EntryError:
            continue
        if not isinstance(event, entries.OrderVersion | entries.OrderEnd):
            continue
        before = state.order(event.order_id)
        was = before.version if before is not None and before.in_force else None
        state.apply(entry.index, event)
        after = state.order(event.order_id)
        assert after is not None
        day = event.time.date()
        if after.in_force and after.version is not None:
            version = after.version[1]
            if was is None:
                # an order counts from the day it takes effect, not the day it was filed
                published = isinstance(event, OrderPublished | entries.OrderAdopted)
                start = version.order.effective_from.date() if published else day
                per_jurisdiction.setdefault(version.scope, []).append((start, 1.0))
                rules.append((start, float(version.rules.count)))
            else:
                rules.append((day, float(version.rules.count - was[1].rules.count)))
        elif was is not None:
            per_jurisdiction.setdefault(was[1].scope, []).append((day, -1.0))
            rules.append((day, float(-was[1].rules.count)))
    return per_jurisdiction, rules


def blocked_query_counts(registry: CollectorRegistry | None) -> Tally[str]:
    """Blocked-query totals by category from the gateway's Prometheus counters.

    Any counter whose name mentions ``block`` and that carries a ``category`` label is
    summed per category across its other labels: only aggregates leave the gateway.
    """
    totals: Tally[str] = Tally()
    if registry is None:
        return totals
    for family in registry.collect():
        if family.type != "counter" or "block" not in family.name:
            continue
        for sample in family.samples:
            category = sample.labels.get("category")
            if category and sample.name.endswith("_total"):
                totals[category] += int(sample.value)
    return totals


class StatsCache:
    """Statistics recomputed only when the log grows (the log replay is the costly part)."""

    def __init__(self, store: Store) -> None:
        """Cache statistics of ``store``."""
        self.store = store
        self._lock = threading.Lock()
        self._size = -1
        self._stats: Stats | None = None

    def get(self, registry: CollectorRegistry | None) -> Stats:
        """Current statistics; blocked-query counts are always read fresh."""
        size = self.store.log_size()
        with self._lock:
            if self._stats is None or size != self._size:
                self._stats = compute_stats(self.store, size)
                self._size = size
            stats = self._stats
        stats.blocked_queries = blocked_query_counts(registry)
        return stats


def compute_stats(store: Store, log_size: int) -> Stats:
    """Aggregate counts from the order table and the log replay."""
    stats = Stats(log_size=log_size)
    now = dt.datetime.now(dt.UTC)
    for f in order_facts(store):
        stats.orders_total += 1
        if f.state(now) != "active":
            continue
        stats.orders_active += 1
        stats.rules_active += f.rule_count
        stats.orders_by_category[f.order.category.value] += 1
        stats.orders_by_jurisdiction[f.jurisdiction] += 1
        stats.orders_by_authority[f.authority.name] += 1
        stats.rules_by_category[f.order.category.value] += f.rule_count
    a = schema.appeals
    with store.read() as conn:
        stats.appeals_open = int(
            conn.execute(
                select(func.count()).select_from(a).where(a.c.status == AppealStatus.OPEN.value)
            ).scalar()
            or 0
        )
    stats.orders_over_time, stats.rules_over_time = _replay_log(store)
    return stats
