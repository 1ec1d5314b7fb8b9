"""PolicyReader: the store's policy as values (jurisdictions, authorities, orders,
appeals, subscriptions), each read in one read transaction.

What is stored, not what is enforced: the enforceable policy is what the log commits
(``loader``); the admin API, the CLI and the portal show the records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select

from clearwall.errors import NotFound
from clearwall.model import OrderStatus
from clearwall.policy.model import Authority, CompiledOrder, Jurisdiction, Order, RuleSpec
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store
from clearwall.store.records import Appeal, CrossBorderRequest, Subscription

T = TypeVar("T")


class PolicyReader:
    """Read-only views of one store (the write path is ``PolicyService``)."""

    def __init__(self, store: Store) -> None:
        """Read from ``store``."""
        self.store = store

    def _read(self, query: Callable[..., T], *args: Any) -> T:
        """``query(conn, *args)`` in one read transaction."""
        with self.store.read() as conn:
            return query(conn, *args)

    def jurisdictions(self) -> list[Jurisdiction]:
        """Every jurisdiction, by code."""
        return self._read(repo.list_jurisdictions)

    def jurisdiction(self, code: str) -> Jurisdiction:
        """One jurisdiction; NotFound if absent."""
        return self._read(repo.get_jurisdiction, code.strip().lower())

    def authorities(self, jurisdiction: str | None = None) -> list[Authority]:
        """Authorities by id, optionally of one jurisdiction."""
        return self._read(repo.list_authorities, jurisdiction)

    def authority(self, authority_id: int) -> Authority:
        """One authority; NotFound if absent."""
        return self._read(repo.get_authority, authority_id)

    def orders(
        self,
        *,
        authority_id: int | None = None,
        jurisdiction: str | None = None,
        status: OrderStatus | None = None,
    ) -> list[Order]:
        """Orders by id, filtered by authority, jurisdiction and/or status."""
        with self.store.read() as conn:
            return repo.list_orders(
                conn, authority_id=authority_id, jurisdiction=jurisdiction, status=status
            )

    def order(self, order_id: int) -> Order:
        """One order; NotFound if absent."""
        return self._read(repo.get_order, order_id)

    def order_rules(self, order_id: int) -> tuple[RuleSpec, ...]:
        """The rules of one order, sorted by kind then value."""
        with self.store.read() as conn:
            repo.get_order(conn, order_id)
            return repo.order_rules(conn, order_id)

    def compiled_order(self, order_id: int) -> CompiledOrder:
        """One order with its authority and rules."""
        return self._read(repo.compiled_order, order_id)

    def order_revoked_reason(self, order_id: int) -> str | None:
        """Why an order was revoked, if it was."""
        o = schema.orders
        with self.store.read() as conn:
            row = conn.execute(select(o.c.revoked_reason).where(o.c.id == order_id)).first()
        if row is None:
            raise NotFound(f"no order {order_id}")
        return row.revoked_reason  # type: ignore[no-any-return]

    def appeals(self, order_id: int | None = None) -> list[Appeal]:
        """Appeals by id, optionally of one order."""
        return self._read(repo.list_appeals, order_id)

    def appeal(self, appeal_id: int) -> Appeal:
        """One appeal; NotFound if absent."""
        return self._read(repo.get_appeal, appeal_id)

    def requests(
        self, *, jurisdiction: str | None = None, order_id: int | None = None
    ) -> list[CrossBorderRequest]:
        """Cross-border requests by id: sent by or to a jurisdiction, or answered by an
        order."""
        with self.store.read() as conn:
            return repo.list_requests(conn, jurisdiction=jurisdiction, order_id=order_id)

    def request(self, request_id: int) -> CrossBorderRequest:
        """One cross-border request; NotFound if absent."""
        return self._read(repo.get_request, request_id)

    def feed_exceptions(self, feed_id: int) -> list[tuple[int, str, int]]:
        """The single-jurisdiction orders excepting names of an all-jurisdiction order for
        their clients: (order id, jurisdiction, names), by order id."""
        return self._read(repo.feed_exceptions, feed_id)

    def subscriptions(self, order_id: int | None = None) -> list[Subscription]:
        """Subscriptions by id, optionally of one order."""
        return self._read(repo.list_subscriptions, order_id)
