"""The log's state at a tree size: every order and jurisdiction, folded from the entries.

One fold for every reader: the gateway's loader (what to enforce), ``ledger verify``
(what the store must equal), the name prover and its verifier (which orders bind a
jurisdiction), the portal's history and statistics. ``LogState`` takes entries in index
order, parses them with ``entries.parse`` and keeps, per order, its latest version
(published or amended) and whether an entry ended it (revoked or expired: for good), and
per jurisdiction code its latest record, and per cross-border request its filing and
its decision (which change no order by themselves). A fold may start at a later index (``since``):
it then says what the entries from there on changed.

``LogState.check_order`` is the one statement of when a stored order is enforceable:
on the log, not ended, and stored exactly as its latest version commits it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clearwall.errors import VerificationError
from clearwall.ledger import entries
from clearwall.policy.model import Authority, Jurisdiction, Order

OnError = Callable[[int, entries.EntryError], None]
"""Told of each entry (its index and why) that is not a clearwall entry; the fold skips it."""


@dataclass(slots=True)
class OrderState:
    """What the log says of one order: its latest version and, once ended, the entry
    that ended it."""

    version: tuple[int, entries.OrderVersion] | None = None  # (entry index, published/amended)
    ended: int | None = None  # index of the first revoking or expiring entry

    @property
    def in_force(self) -> bool:
        """Published and not ended (its dates are its version's ``binds`` to check)."""
        return self.version is not None and self.ended is None


@dataclass(slots=True)
class RequestState:
    """What the log says of one cross-border request: its filing and, once closed, the
    decision (acceptance, refusal or withdrawal), each with its entry index."""

    filed: tuple[int, entries.RequestFiled] | None = None
    decided: tuple[int, entries.RequestDecided] | None = None


class Finding(enum.Enum):
    """Why a stored order is not enforceable as the log stands (``LogState.check_order``)."""

    NOT_ON_LOG = "not on the log"  # no logged index, or one past the tree size
    ENDED = "ended on the log"  # revoked or expired by an entry
    UNPUBLISHED = "no publishing entry"  # the log never states a version of it
    METADATA = "metadata differs"  # stored otherwise than its latest version states
    RULES = "rules differ"  # its stored rules do not hash to the logged digest


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """A stored order held against the log: ``finding`` is None when it is enforceable;
    ``index`` is the entry concerned (the ending or the latest version), ``logged`` the
    rule set that entry commits."""

    finding: Finding | None
    index: int | None = None
    logged: entries.RuleSet | None = None

    @property
    def ok(self) -> bool:
        """True when the order is enforceable as stored."""
        return self.finding is None


@dataclass
class PolicyMatch:
    """A store's policy records held against the log (``ledger verify``'s checks 4 and
    5): the problems, and how many orders, jurisdictions and requests matched."""

    problems: list[str] = field(default_factory=list)
    orders: int = 0
    jurisdictions: int = 0
    requests: int = 0  # cross-border requests stored as their entries state them


PolicyCheck = Callable[["LogState"], PolicyMatch]
"""Holds a store's records against a fold of its whole log (the store provides it)."""


class LogState:
    """The fold of entries ``since <= index < size`` (see the module docstring)."""

    def __init__(self, since: int = 0) -> None:
        """An empty fold that expects entry ``since`` next."""
        self.since = since
        self.size = since
        self.orders: dict[int, OrderState] = {}
        self.jurisdictions: dict[str, tuple[int, Jurisdiction]] = {}
        self.requests: dict[int, RequestState] = {}

    # -- folding ---------------------------------------------------------------------

    def apply(self, index: int, event: entries.Event) -> None:
        """Fold one event, stated by entry ``index`` (the next one, or a later one when
        the caller reports a gap itself)."""
        self.size = index + 1
        match event:
            case entries.OrderPublished() | entries.OrderAmended():
                state = self.orders.setdefault(event.order.id, OrderState())
                state.version = (index, event)
            case entries.OrderRevoked() | entries.OrderExpired():
                state = self.orders.setdefault(event.order_id, OrderState())
                if state.ended is None:
                    state.ended = index
            case entries.JurisdictionSet():
                self.jurisdictions[event.jurisdiction.code] = (index, event.jurisdiction)
            case entries.RequestFiled():
                self.requests.setdefault(event.request_id, RequestState()).filed = (index, event)
            case entries.RequestDecided():
                request = self.requests.setdefault(event.request_id, RequestState())
                if request.decided is None:  # a request is closed once, for good
                    request.decided = (index, event)
            case entries.OrderAdopted():
                # A mirror's adoption is a version of its local order like any other:
                # the source it cites is checked against the registry by ``ledger verify``.
                state = self.orders.setdefault(event.order.id, OrderState())
                state.version = (index, event)
            case entries.AdoptionWithdrawn():
                state = self.orders.setdefault(event.order_id, OrderState())
                if state.ended is None:
                    state.ended = index
            case _:
                pass  # appeals and unknown types change no order or jurisdiction

    def extend(self, items: Iterable[tuple[int, bytes]], on_error: OnError | None = None) -> None:
        """Fold entries ``(index, data)`` in index order, starting at ``size``.

        Entries that cannot change an order or a jurisdiction (appeals) are skipped
        without decoding (``entries.family``); one that is not a clearwall entry is
        reported to ``on_error`` and skipped. VerificationError when an index is not
        the next one.
        """
        for index, data in items:
            if index != self.size:
                raise VerificationError(f"log entries out of order at index {index}")
            self.size = index + 1
            if entries.family(data) is entries.Family.APPEAL:
                continue
            try:
                event = entries.parse(data)
            except entries.EntryError as exc:
                if on_error is not None:
                    on_error(index, exc)
                continue
            self.apply(index, event)

    # -- reading ---------------------------------------------------------------------

    def order(self, order_id: int) -> OrderState | None:
        """What the folded entries say of an order (None: nothing)."""
        return self.orders.get(order_id)

    def named(self) -> frozenset[int]:
        """Every order some folded entry publishes, amends or ends."""
        return frozenset(self.orders)

    def versions(self) -> list[tuple[int, entries.OrderVersion]]:
        """Each order's latest version (entry index, event), by order id."""
        return [s.version for _, s in sorted(self.orders.items()) if s.version is not None]

    def in_force(
        self, jurisdiction: str, at: dt.datetime
    ) -> list[tuple[int, entries.OrderVersion]]:
        """The (entry index, latest version) of every order binding ``jurisdiction``'s
        clients at ``at``: published, not ended, in scope and in its dates."""
        return [
            s.version
            for _, s in sorted(self.orders.items())
            if s.version is not None and s.ended is None and s.version[1].binds(jurisdiction, at)
        ]

    def check_jurisdiction(self, jurisdiction: Jurisdiction) -> tuple[Finding | None, int | None]:
        """Whether a stored jurisdiction is as its latest entry states it: None, or
        ``NOT_ON_LOG`` or ``METADATA`` (name or networks differ), with the entry's index."""
        logged = self.jurisdictions.get(jurisdiction.code)
        if logged is None:
            return Finding.NOT_ON_LOG, None
        if entries.canonical_jurisdiction(jurisdiction) != logged[1]:
            return Finding.METADATA, logged[0]
        return None, logged[0]

    def jurisdictions_in_force(self) -> list[Jurisdiction]:
        """Every jurisdiction as its latest entry states it, by code."""
        return [self.jurisdictions[code][1] for code in sorted(self.jurisdictions)]

    def orders_in_force(self) -> frozenset[int]:
        """Every order the folded entries publish (or amend) and do not end."""
        return frozenset(oid for oid, s in self.orders.items() if s.in_force)

    def check_order(
        self, order: Order, authority: Authority, rules: Callable[[], entries.RuleSet]
    ) -> OrderCheck:
        """Whether a stored order (with its authority, and ``rules`` giving the rule set
        its stored rules make) is enforceable as the log stands: on the log inside this
        fold's size, not ended, and equal to what its latest version commits. The first
        failing check is the finding; ``rules`` is called only when all else matches
        (a million rules take seconds to hash)."""
        check = self.check_stored(order, authority)
        if check.finding is None and rules() != check.logged:
            return OrderCheck(Finding.RULES, check.index, check.logged)
        return check

    def check_stored(self, order: Order, authority: Authority) -> OrderCheck:
        """``check_order`` but for the rules: the caller compares the rule set it finds
        with ``logged`` itself (a compile hashes every order's rules at once, in
        another process, while it builds the tables)."""
        if order.log_index is None or order.log_index >= self.size:
            return OrderCheck(Finding.NOT_ON_LOG)
        state = self.orders.get(order.id)
        if state is not None and state.ended is not None:
            return OrderCheck(Finding.ENDED, state.ended)
        if state is None or state.version is None:
            return OrderCheck(Finding.UNPUBLISHED)
        index, version = state.version
        if (
            entries.logged_order(order, authority) != version.order
            or authority != version.authority
        ):
            return OrderCheck(Finding.METADATA, index, version.rules)
        return OrderCheck(None, index, version.rules)


def fold(items: Iterable[tuple[int, bytes]], on_error: OnError | None = None) -> LogState:
    """The state entries ``(index, data)`` from index 0 commit (``LogState.extend``)."""
    state = LogState()
    state.extend(items, on_error)
    return state
