"""The ledger's read-only view of the policy store: orders, rule lines, the latest entries.

The only module of the ledger that imports the store; everything here is a query, so
``ledger verify`` and ``ledger prove`` can run against a copy of a database.
"""

from __future__ import annotations

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
