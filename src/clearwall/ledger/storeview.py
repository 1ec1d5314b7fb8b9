"""The ledger's read-only view of the policy store: orders, rule lines, the latest entries.

The only module of the ledger that imports the store; everything here is a query, so
``ledger verify`` and ``ledger prove`` can run against a copy of a database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from clearwall.ledger.entries import sorted_rule_lines


def rule_lines_from_store(store: Any, order_id: int) -> list[bytes] | None:
    """The sorted canonical rule lines an order holds in the store now (None if no order)."""
    from clearwall.errors import NotFound
    from clearwall.store import repositories

    with store.read() as conn:
        try:
            repositories.get_order(conn, order_id)
        except NotFound:
            return None
        return sorted_rule_lines(repositories.iter_rules(conn, order_id))


def iter_log_rows(store: Any, batch: int = 20_000) -> Iterator[tuple[int, bytes, bytes]]:
    """Every stored ``(index, data, leaf hash)`` in index order, streamed in one read.

    Reads the three columns the audit needs through the driver's own cursor (no row
    objects, no timestamp decoding), so a million entries stream in a few seconds.
    """
    with store.read() as conn:
        driver = conn.connection.driver_connection
        cur = driver.cursor()
        try:
            cur.execute("SELECT idx, data, leaf_hash FROM log_entries ORDER BY idx")
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                for idx, data, lh in rows:
                    yield int(idx), bytes(data), bytes(lh)
        finally:
            cur.close()


def log_rows(store: Any, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
    """Stored ``(index, data, leaf hash)`` with ``start <= index < end`` (one query)."""
    from sqlalchemy import select

    from clearwall.store import schema

    t = schema.log_entries
    query = (
        select(t.c.idx, t.c.data, t.c.leaf_hash)
        .where(t.c.idx >= start, t.c.idx < end)
        .order_by(t.c.idx)
    )
    with store.read() as conn:
        return [(int(i), bytes(d), bytes(h)) for i, d, h in conn.execute(query)]
