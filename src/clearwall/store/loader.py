"""Read back the enforceable policy: only orders the log has published, with matching rules.

The log is the authority, not the tables: an order is enforced only when its publishing
entry lies inside the committed tree, no later entry revoked or expired it, its metadata
equals what the latest entry committed, and the Merkle digest recomputed over its stored
rules equals the digest on the log. Rules or orders changed behind the log's back are
therefore never enforced; each such order is named in a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from clearwall.ledger import entries
from clearwall.model import OrderStatus
from clearwall.policy.model import CompiledOrder, Jurisdiction
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store, utcnow

if TYPE_CHECKING:
    from clearwall.policy.snapshot import PolicySnapshot

log = logging.getLogger(__name__)


def policy_version(store: Store) -> int:
    """The policy version: the number of committed log entries (one cheap query)."""
    return store.log_size()


def _logged_state(conn: Any, size: int) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """Per order, the latest published/amended event inside the tree; and ended orders."""
    t = schema.log_entries
    latest: dict[int, dict[str, Any]] = {}
    ended: set[int] = set()
    query = (
        select(t.c.idx, t.c.data)
        .where(t.c.idx < size)
        .order_by(t.c.idx)
        .execution_options(yield_per=10_000)
    )
    for idx, data in conn.execute(query):
        try:
            event = json.loads(bytes(data))
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("log entry %d is not a clearwall entry; ignored", idx)
            continue
        if kind in (entries.ORDER_PUBLISHED, entries.ORDER_AMENDED):
            event["_index"] = int(idx)
            latest[int(event["order"]["id"])] = event
        elif kind in (entries.ORDER_REVOKED, entries.ORDER_EXPIRED):
            ended.add(int(event["order"]))
    return latest, ended


def load_policy(
    store: Store, now: dt.datetime | None = None
) -> tuple[list[CompiledOrder], list[Jurisdiction], int]:
    """The enforceable orders, every jurisdiction, and the tree size they were read at.

    Orders past their sunset at ``now`` (default: the current time) are left out; orders
    that take effect later are kept (the snapshot checks effective dates per query).
    """
    at = now or utcnow()
    compiled: list[CompiledOrder] = []
    with store.read() as conn:
        size = int(conn.execute(select(schema.log_head.c.size)).scalar() or 0)
        latest, ended = _logged_state(conn, size)
        jurisdictions = repo.list_jurisdictions(conn)
        authorities = {a.id: a for a in repo.list_authorities(conn)}
        for order in repo.list_orders(conn, status=OrderStatus.ACTIVE):
            if order.expires is not None and order.expires <= at:
                continue
            event = latest.get(order.id)
            if order.log_index is None or order.log_index >= size or event is None:
                log.warning("order %d is not on the log; not enforced", order.id)
                continue
            if order.id in ended:
                log.warning(
                    "order %d is active in the store but revoked/expired on the log; not enforced",
                    order.id,
                )
                continue
            authority = authorities[order.authority_id]
            if entries.order_metadata(order, authority) != event["order"]:
                log.warning(
                    "order %d: stored metadata differs from log entry %d; not enforced",
                    order.id,
                    event["_index"],
                )
                continue
            rules = repo.order_rules(conn, order.id)
            digest, count = entries.rules_digest(rules)
            if digest != event["rules"]["digest"] or count != event["rules"]["count"]:
                log.warning(
                    "order %d: its %d stored rules do not match the digest on log entry %d "
                    "(%d rules); not enforced",
                    order.id,
                    count,
                    event["_index"],
                    event["rules"]["count"],
                )
                continue
            compiled.append(CompiledOrder(order, authority, rules))
    return compiled, jurisdictions, size


def build_snapshot(
    store: Store, base_url: str = "", now: dt.datetime | None = None
) -> PolicySnapshot:
    """Compile the enforceable policy into a ``PolicySnapshot`` versioned by tree size."""
    from clearwall.policy.snapshot import PolicySnapshot

    orders, jurisdictions, size = load_policy(store, now)
    return PolicySnapshot.compile(orders, jurisdictions, tree_size=size, base_url=base_url)
