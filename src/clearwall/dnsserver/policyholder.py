"""What the data plane needs from a compiled policy, its in-memory twin, and the swap point.

``PolicyView`` is the slice of ``clearwall.policy.snapshot.PolicySnapshot`` the DNS chain
uses; ``StaticPolicy`` is a tiny dictionary-backed twin for tests and docs; ``PolicyHolder``
is the one mutable reference the control plane swaps atomically (a single attribute
store, so a query sees either the old or the new snapshot, never a mix).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from clearwall.model import ALLOWED, Action, Citation, Decision, OrderRef, Verdict


class PolicyView(Protocol):
    """The compiled policy as the DNS chain reads it (immutable)."""

    @property
    def version(self) -> object:
        """An identifier of this compiled policy; compared for equality only."""
        ...

    @property
    def tree_size(self) -> int:
        """The ledger size this snapshot was compiled from (the public policy version)."""
        ...

    def match(self, name: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """Verdict for a canonical name (lowercase, no trailing dot) in a jurisdiction at
        ``now`` (epoch seconds; None: the current time)."""
        ...

    def match_ip(self, address: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """Verdict for an answer address (response-IP rules) at ``now``."""
        ...

    def jurisdiction_of(self, client_ip: str) -> str | None:
        """The jurisdiction whose configured networks contain the client, if any."""
        ...

    def next_change(self, now: float) -> float:
        """The first instant (epoch seconds) after ``now`` at which a verdict may change
        with time alone (an order takes effect or expires); ``math.inf`` if none."""
        ...


@dataclass
class StaticPolicy:
    """A dictionary-backed ``PolicyView`` for tests and docs: subtree name rules and CIDRs.

    ``names`` maps a name to the orders blocking it and everything below it; ``ips`` maps
    a CIDR to orders; ``networks`` maps a client CIDR to a jurisdiction code. An order
    applies to clients of its jurisdiction, or to all when its jurisdiction is ``"*"``.
    """

    names: dict[str, list[OrderRef]] = field(default_factory=dict)
    ips: dict[str, list[OrderRef]] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)
    version: int = 1
    tree_size: int = 1
    _memo: dict[tuple[str, int], Verdict] = field(default_factory=dict, repr=False)

    def _verdict(self, orders: Iterable[OrderRef], rule: str, jurisdiction: str) -> Verdict:
        applying = tuple(o for o in orders if o.jurisdiction in ("*", jurisdiction))
        if not applying:
            return ALLOWED
        key = (rule, hash((jurisdiction, tuple(o.id for o in applying))))
        verdict = self._memo.get(key)
        if verdict is None:
            verdict = Verdict(
                Decision.BLOCK,
                applying[0].action if applying else Action.NXDOMAIN,
                tuple(Citation(o, rule) for o in applying),
            )
            self._memo[key] = verdict
        return verdict

    def match(self, name: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """Most specific subtree rule wins (at any time: no effective dates)."""
        labels = name.split(".")
        for i in range(len(labels)):
            suffix = ".".join(labels[i:])
            orders = self.names.get(suffix)
            if orders:
                verdict = self._verdict(orders, f"subtree {suffix}", jurisdiction)
                if verdict.blocked:
                    return verdict
        return ALLOWED

    def match_ip(self, address: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """First CIDR containing the address wins."""
        ip = ipaddress.ip_address(address)
        for cidr, orders in self.ips.items():
            if ip in ipaddress.ip_network(cidr):
                verdict = self._verdict(orders, f"response-ip {cidr}", jurisdiction)
                if verdict.blocked:
                    return verdict
        return ALLOWED

    def next_change(self, now: float) -> float:
        """Never: a static policy has no effective dates."""
        return math.inf

    def jurisdiction_of(self, client_ip: str) -> str | None:
        """Longest matching client network."""
        ip = ipaddress.ip_address(client_ip)
        best: tuple[int, str] | None = None
        for cidr, code in self.networks.items():
            net = ipaddress.ip_network(cidr)
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, code)
        return best[1] if best else None


EMPTY_POLICY = StaticPolicy(version=0, tree_size=0)
"""The policy before the first snapshot is loaded: blocks nothing."""


class PolicyHolder:
    """The swap point: handlers read ``current`` per query; the control plane replaces it.

    Listeners run after each swap in the data plane's thread, e.g. to drop memoized block
    templates that cite orders of the old snapshot.
    """

    __slots__ = ("_listeners", "current", "equivalent", "token")

    def __init__(self, initial: PolicyView = EMPTY_POLICY) -> None:
        self.current: PolicyView = initial
        # Whether the last swap kept every verdict (a consolidated snapshot replacing the
        # overlay it merges): listeners may then keep what they derived from verdicts.
        self.equivalent = False
        # A fresh object per swap: caches tag entries with it rather than with the
        # snapshot, so entries never keep an old (large) snapshot alive.
        self.token = object()
        self._listeners: list[Callable[[PolicyView], None]] = []

    def on_swap(self, listener: Callable[[PolicyView], None]) -> None:
        """Call ``listener(new)`` after every swap."""
        self._listeners.append(listener)

    def clear_listeners(self) -> None:
        """Forget every listener (before the handlers that registered them are rebuilt)."""
        self._listeners.clear()

    def swap(self, new: PolicyView, equivalent: bool = False) -> None:
        """Make ``new`` the policy of every query that starts from now on; ``equivalent``
        says it gives the same verdicts as the policy it replaces."""
        self.token = object()
        self.current = new
        self.equivalent = equivalent
        for listener in self._listeners:
            listener(new)
