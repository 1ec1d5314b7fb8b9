"""Read back the enforceable policy: only orders the log has published, with matching rules.

The log is the authority, not the tables: an order is enforced only when its publishing
entry lies inside the committed tree, no later entry revoked or expired it, its metadata
equals what the latest entry committed, and the Merkle digest recomputed over its stored
rules equals the digest on the log. Rules or orders changed behind the log's back are
therefore never enforced; each such order is named in a warning.

The same holds for jurisdictions: their client networks decide whose orders apply to a
client (and the gateway serves clients of every jurisdiction), so the jurisdictions in
force are the records their latest ``jurisdiction-set`` entries commit. A jurisdiction
stored but not on the log, or stored otherwise than logged, is named in a warning.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from clearwall.ledger.entries import EntryError, RuleSet
from clearwall.ledger.logstate import Finding, LogState
from clearwall.model import OrderStatus
from clearwall.policy.model import Authority, CompiledOrder, Jurisdiction, Order, RuleSpec
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store, utcnow

if TYPE_CHECKING:
    from clearwall.policy.snapshot import PolicySnapshot

log = logging.getLogger(__name__)


def policy_version(store: Store) -> int:
    """The policy version: the number of committed log entries (one cheap query)."""
    return store.log_size()


def _logged_state(conn: Any, size: int, since: int = 0) -> LogState:
    """The fold of entries ``since <= idx < size`` (``ledger.logstate``); each entry that
    is not a clearwall entry is named in a warning and ignored."""
    t = schema.log_entries
    query = (
        select(t.c.idx, t.c.data)
        .where(t.c.idx >= since, t.c.idx < size)
        .order_by(t.c.idx)
        .execution_options(yield_per=10_000)
    )

    def ignored(index: int, exc: EntryError) -> None:
        log.warning("log entry %d is not a clearwall entry (%s); ignored", index, exc)

    state = LogState(since)
    state.extend(((int(i), bytes(d)) for i, d in conn.execute(query)), ignored)
    return state


def _jurisdictions_in_force(stored: list[Jurisdiction], state: LogState) -> list[Jurisdiction]:
    """The jurisdictions as the log commits them, by code; each stored one that is not
    on the log, or differs from its latest entry, is named in a warning."""
    for jurisdiction in stored:
        finding, index = state.check_jurisdiction(jurisdiction)
        if finding is Finding.NOT_ON_LOG:
            log.warning(
                "jurisdiction %r is not on the log (a store from before jurisdictions were "
                "logged: run `clearwall init` on it); its networks are not enforced",
                jurisdiction.code,
            )
        elif finding is not None:
            log.warning(
                "jurisdiction %r: stored record differs from log entry %d; the logged one "
                "is enforced",
                jurisdiction.code,
                index,
            )
    return state.jurisdictions_in_force()


_WARNINGS = {
    Finding.NOT_ON_LOG: "order %d is not on the log; not enforced",
    Finding.ENDED: "order %d is active in the store but revoked/expired on the log; not enforced",
    Finding.UNPUBLISHED: "order %d has no publishing entry on the log; not enforced",
    Finding.METADATA: "order %d: stored metadata differs from log entry %d; not enforced",
}


def _enforceable(
    conn: Any, order: Order, authority: Authority, state: LogState
) -> CompiledOrder | None:
    """The order with its rules when the log says it is in force as stored, else None
    (the reason, ``LogState.check_order``'s finding, is logged as a warning)."""
    read: list[tuple[tuple[RuleSpec, ...], RuleSet]] = []

    def rule_set() -> RuleSet:
        rules = repo.order_rules(conn, order.id)
        read.append((rules, RuleSet.of(rules)))
        return read[0][1]

    check = state.check_order(order, authority, rule_set)
    if check.finding is None:
        return CompiledOrder(order, authority, read[0][0])
    if check.finding is Finding.RULES:
        assert check.logged is not None
        log.warning(
            "order %d: its %d stored rules do not match the digest on log entry %d "
            "(%d rules); not enforced",
            order.id,
            read[0][1].count,
            check.index,
            check.logged.count,
        )
    elif check.finding is Finding.METADATA:
        log.warning(_WARNINGS[check.finding], order.id, check.index)
    else:
        log.warning(_WARNINGS[check.finding], order.id)
    return None


def _tree_size(conn: Any, limit: int | None) -> int:
    """The committed log size, or ``limit`` when that is smaller (the size of the log a
    gateway has published: it enforces nothing the public log does not show yet)."""
    size = int(conn.execute(select(schema.log_head.c.size)).scalar() or 0)
    return size if limit is None else min(size, limit)


def load_policy(
    store: Store, now: dt.datetime | None = None, *, size: int | None = None
) -> tuple[list[CompiledOrder], list[Jurisdiction], int]:
    """The enforceable orders, every jurisdiction, and the tree size they were read at.

    Orders past their sunset at ``now`` (default: the current time) are left out; orders
    that take effect later are kept (the snapshot checks effective dates per query).
    With ``size``, the policy as the log's first ``size`` entries state it.
    """
    at = now or utcnow()
    compiled: list[CompiledOrder] = []
    with store.read() as conn:
        size = _tree_size(conn, size)
        state = _logged_state(conn, size)
        jurisdictions = _jurisdictions_in_force(repo.list_jurisdictions(conn), state)
        authorities = {a.id: a for a in repo.list_authorities(conn)}
        for order in repo.list_orders(conn, status=OrderStatus.ACTIVE):
            if order.expires is not None and order.expires <= at:
                continue
            enforced = _enforceable(conn, order, authorities[order.authority_id], state)
            if enforced is not None:
                compiled.append(enforced)
    return compiled, jurisdictions, size


@dataclass(frozen=True)
class PolicyChange:
    """What the log says changed since a tree size: the orders to mask in a snapshot
    compiled at ``since`` and the enforceable orders that replace them."""

    since: int
    size: int
    changed: frozenset[int]  # every order a log entry in [since, size) publishes or ends
    orders: list[CompiledOrder]  # the enforceable ones among them, as they now stand
    jurisdictions: list[Jurisdiction]  # every jurisdiction in force at ``size``


def load_changes(
    store: Store,
    since: int,
    now: dt.datetime | None = None,
    base_jurisdictions: list[Jurisdiction] | None = None,
    *,
    size: int | None = None,
) -> PolicyChange:
    """The policy change between tree size ``since`` and the store's current one (or
    ``size``, when smaller).

    An order's state on the log is decided by its own entries: an order no entry in
    [since, size) names is as it was at ``since``; one that is named has its latest
    publishing or amending entry there, or was revoked or expired there. Only the named
    orders' rules are read and checked against their digests. Jurisdictions likewise:
    ``base_jurisdictions`` (those in force at ``since``, as the base snapshot holds
    them) with the records entries in [since, size) set; without it the whole log is
    read for them. Raises ValueError when the log is shorter than ``since`` (not the
    log the base was compiled from).
    """
    at = now or utcnow()
    compiled: list[CompiledOrder] = []
    with store.read() as conn:
        size = _tree_size(conn, size)
        if size < since:
            raise ValueError(f"the log has {size} entries, fewer than the base's {since}")
        state = _logged_state(conn, size, since)
        named = state.named()
        if base_jurisdictions is None:
            in_force = _logged_state(conn, size).jurisdictions
        else:
            in_force = {j.code: (-1, j) for j in base_jurisdictions}
            in_force.update(state.jurisdictions)
        jurisdictions = [in_force[code][1] for code in sorted(in_force)]
        authorities = {a.id: a for a in repo.list_authorities(conn)}
        for order_id in sorted(named):
            order = repo.get_order(conn, order_id)
            if order.status is not OrderStatus.ACTIVE:
                continue
            if order.expires is not None and order.expires <= at:
                continue
            enforced = _enforceable(conn, order, authorities[order.authority_id], state)
            if enforced is not None:
                compiled.append(enforced)
    return PolicyChange(since, size, named, compiled, jurisdictions)


def build_snapshot(
    store: Store, base_url: str = "", now: dt.datetime | None = None, *, size: int | None = None
) -> PolicySnapshot:
    """Compile the enforceable policy (at most ``size`` log entries of it) into a
    ``PolicySnapshot`` versioned by tree size."""
    from clearwall.policy.snapshot import PolicySnapshot

    orders, jurisdictions, size = load_policy(store, now, size=size)
    return PolicySnapshot.compile(orders, jurisdictions, tree_size=size, base_url=base_url)


def build_overlay(
    store: Store,
    since: int,
    base_url: str = "",
    now: dt.datetime | None = None,
    base_jurisdictions: list[Jurisdiction] | None = None,
    *,
    size: int | None = None,
) -> tuple[PolicySnapshot, frozenset[int]]:
    """Compile the orders changed since tree size ``since`` into an overlay snapshot
    versioned by the current tree size (or ``size``), with the order ids it masks in the
    base (and every jurisdiction in force: see ``load_changes``)."""
    from clearwall.policy.snapshot import PolicySnapshot

    change = load_changes(store, since, now, base_jurisdictions, size=size)
    overlay = PolicySnapshot.compile(
        change.orders, change.jurisdictions, tree_size=change.size, base_url=base_url
    )
    return overlay, change.changed
