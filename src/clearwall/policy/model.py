"""Policy records as plain immutable values: jurisdiction, authority, order, rule.

The store maps these to tables; the formats produce ``RuleSpec`` values; the compiler
turns records into a ``PolicySnapshot``. None of them does I/O.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field

from clearwall.model import Action, AuthorityKind, Category, OrderRef, OrderStatus, RuleKind

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALL_JURISDICTIONS = "*"
"""The jurisdiction code of an all-jurisdiction (operator security) order in a snapshot."""


@dataclass(frozen=True, slots=True, order=True)
class RuleSpec:
    """One rule as a list file or an API request states it, before it belongs to an order.

    ``value`` is a canonical name (see ``policy.names``) or, for IP kinds, a CIDR in
    ``ipaddress`` canonical text form. ``action`` overrides the order's action when a
    format states a per-rule action (RPZ); ``None`` means "the order's action".
    """

    kind: RuleKind
    value: str
    action: Action | None = None

    def describe(self) -> str:
        """Human form used in citations and exports, e.g. ``subtree example.com``."""
        text = f"{self.kind.value} {self.value}"
        return f"{text} ({self.action.value})" if self.action else text


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """A legal area: its code, name and the client networks that belong to it."""

    code: str
    name: str
    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class Authority:
    """A body that issues orders in exactly one jurisdiction."""

    id: int
    name: str
    kind: AuthorityKind
    jurisdiction: str
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Order:
    """A legal instrument that carries rules; the unit that is published on the log."""

    id: int
    authority_id: int
    title: str
    legal_basis: str
    reference: str
    category: Category
    action: Action
    issued: dt.date
    effective_from: dt.datetime
    expires: dt.datetime | None = None
    document_url: str = ""
    status: OrderStatus = OrderStatus.ACTIVE
    all_jurisdictions: bool = False
    log_index: int | None = None  # index of the ledger entry that published it

    def in_force(self, at: dt.datetime) -> bool:
        """True when the order is active and ``at`` lies in [effective_from, expires)."""
        if self.status is not OrderStatus.ACTIVE:
            return False
        if at < self.effective_from:
            return False
        return self.expires is None or at < self.expires


@dataclass(frozen=True, slots=True)
class CompiledOrder:
    """An order together with what the compiler needs: its authority and its rules."""

    order: Order
    authority: Authority
    rules: tuple[RuleSpec, ...] = field(default=())

    def ref(self, base_url: str = "") -> OrderRef:
        """The citation value the data plane carries for this order."""
        o, a = self.order, self.authority
        return OrderRef(
            id=o.id,
            jurisdiction=ALL_JURISDICTIONS if o.all_jurisdictions else a.jurisdiction,
            authority=a.name,
            authority_kind=a.kind,
            category=o.category,
            action=o.action,
            title=o.title,
            legal_basis=o.legal_basis,
            reference=o.reference,
            contacts=a.contacts,
            url=f"{base_url.rstrip('/')}/orders/{o.id}" if base_url else "",
        )
