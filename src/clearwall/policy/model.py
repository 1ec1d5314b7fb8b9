"""Policy records as plain immutable values: jurisdiction, authority, order, rule.

The store maps these to tables; the formats produce ``RuleSpec`` values; the compiler
turns records into a ``PolicySnapshot``. None of them does I/O.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

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


_KIND_OF = {kind.value: kind for kind in RuleKind}
_ACTION_OF = {action.value: action for action in Action}


# What the text form takes: printable ASCII values (a space to a tilde), one a line.
_PLAIN_TEXT = bytes(range(0x20, 0x7F)) + b"\n"


class RuleRows(Sequence[RuleSpec]):
    """An order's rules as the store holds them: (kind, value, action or None) text rows.

    Making a million ``RuleSpec`` objects takes about 1.4 s, which a whole compile does
    not need: the rules digest (``ledger.entries.rules_digest``) and the compiler
    (``policy.compiler.build``) read the rows as they are. Anything else sees RuleSpecs.
    Kinds and actions are checked when the rows are taken (ValueError, as the enums).

    An order whose rules all share one kind and one action can come as *one text* instead
    (``of_text``: the values, one a line, as the database joins them): no tuple per rule
    is made unless someone asks for ``rows``, and the digest and the compiler read
    ``text`` with string operations in C. ``kind``/``action`` then name the pair."""

    __slots__ = ("_rows", "action", "actions", "kind", "kinds", "size", "text")

    def __init__(self, rows: list[tuple[str, str, str | None]]) -> None:
        self.kinds = frozenset({row[0] for row in rows})  # the distinct kinds, checked
        self.actions = frozenset({row[2] for row in rows})  # the distinct actions, checked
        for kind in self.kinds:
            RuleKind(kind)
        for action in self.actions:
            if action is not None:
                Action(action)
        self._rows: list[tuple[str, str, str | None]] | None = rows
        self.size = len(rows)
        self.text: str | None = None
        self.kind = ""
        self.action: str | None = None

    @classmethod
    def of_text(cls, kind: str, action: str | None, text: str, count: int) -> RuleRows | None:
        """The ``count`` rules of kind ``kind`` and action ``action`` (None: the order's)
        whose values are the lines of ``text``, in any order; None when the text form does
        not apply (an IP kind; a value that is not printable ASCII, so that a newline or
        another control character could blur where values end): the caller reads rows.
        Unknown kinds and actions raise ValueError, as the enums do."""
        kind_of, action_of = RuleKind(kind), None if action is None else Action(action)
        if count < 1 or kind_of.is_ip:
            return None
        if text.count("\n") != count - 1 or not text.isascii():
            return None
        # bytes.translate deletes the plain bytes in C: anything left is an odd one
        # (a regular expression takes five times as long over a million names).
        if text.encode("ascii").translate(None, _PLAIN_TEXT):
            return None
        self = cls.__new__(cls)
        self.kinds = frozenset({kind})
        self.actions = frozenset({action})
        self._rows = None
        self.size = count
        self.text = text
        self.kind = kind_of.value
        self.action = None if action_of is None else action_of.value
        return self

    @property
    def rows(self) -> list[tuple[str, str, str | None]]:
        """The (kind, value, action) rows; made from ``text`` at the first call (in
        (kind, value) order, as the store reads rows: bytewise, the text being ASCII)."""
        if self._rows is None:
            assert self.text is not None
            kind, action = self.kind, self.action
            self._rows = [(kind, value, action) for value in sorted(self.text.split("\n"))]
        return self._rows

    def __len__(self) -> int:
        return self.size

    @staticmethod
    def _spec(row: tuple[str, str, str | None]) -> RuleSpec:
        kind, value, action = row
        return RuleSpec(_KIND_OF[kind], value, _ACTION_OF[action] if action else None)

    @overload
    def __getitem__(self, index: int) -> RuleSpec: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[RuleSpec]: ...

    def __getitem__(self, index: int | slice) -> RuleSpec | Sequence[RuleSpec]:
        if isinstance(index, slice):
            return RuleRows(self.rows[index])
        return self._spec(self.rows[index])

    def __iter__(self) -> Iterator[RuleSpec]:
        return map(self._spec, self.rows)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RuleRows):
            return self.rows == other.rows
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self.rows))

    def __repr__(self) -> str:
        return f"RuleRows({self.size} rules)"


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
    rules: Sequence[RuleSpec] = field(default=())

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
