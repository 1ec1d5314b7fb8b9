"""The matching rules stated as plainly as possible: a slow reference the snapshot must equal.

Nothing here is fast or compact; every rule of every order is looked at for every
question. Tests compare ``PolicySnapshot`` against these functions, and
``docs/matcher.md`` describes the same rules in prose.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from clearwall.model import (
    ACTION_PRECEDENCE,
    ALLOWED,
    Action,
    Citation,
    Decision,
    OrderStatus,
    RuleKind,
    Verdict,
)
from clearwall.policy.model import ALL_JURISDICTIONS, CompiledOrder, RuleSpec


@dataclass(frozen=True, slots=True)
class Match:
    """One rule of an applicable order that matches the question."""

    specificity: int
    order: CompiledOrder
    rule: RuleSpec

    @property
    def action(self) -> Action:
        """The action this rule asks for: its own override, else its order's."""
        return self.rule.action or self.order.order.action


def in_force(compiled: CompiledOrder, now: float) -> bool:
    """True when the order is active and ``now`` lies in [effective_from, expires).

    Naive datetimes on an order are read as UTC.
    """
    order = compiled.order
    if order.status is not OrderStatus.ACTIVE:
        return False
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    if order.effective_from.tzinfo is None:
        at = at.replace(tzinfo=None)
    return order.in_force(at)


def applies(compiled: CompiledOrder, jurisdiction: str, now: float) -> bool:
    """True when the order binds clients of ``jurisdiction`` at ``now``.

    An order binds its own jurisdiction's clients; an all-jurisdiction order binds every
    client, including clients of jurisdictions the policy does not know.
    """
    scope = compiled.ref().jurisdiction
    return scope in (jurisdiction, ALL_JURISDICTIONS) and in_force(compiled, now)


def name_specificity(rule: RuleSpec, name: str) -> int | None:
    """How specifically a name rule matches ``name``, or None when it does not match.

    Specificity is twice the number of labels of the rule's name, plus one for the
    exact kinds, so that at the same name an exact rule outranks a subtree rule.
    """
    kind, value = rule.kind, rule.value
    labels = 2 * len(value.split("."))
    below = name.endswith("." + value)
    if kind in (RuleKind.EXACT, RuleKind.ALLOW_EXACT):
        return labels + 1 if name == value else None
    if kind in (RuleKind.SUBTREE, RuleKind.ALLOW_SUBTREE):
        return labels if name == value or below else None
    if kind in (RuleKind.WILDCARD, RuleKind.ALLOW_WILDCARD):
        return labels if below else None
    return None


def ip_specificity(rule: RuleSpec, address: str) -> int | None:
    """The prefix length of a response-IP rule whose network holds ``address``, else None."""
    if not rule.kind.is_ip:
        return None
    network = ipaddress.ip_network(rule.value, strict=False)
    ip = ipaddress.ip_address(address)
    if ip.version != network.version or ip not in network:
        return None
    return network.prefixlen


def decide(matches: list[Match]) -> Verdict:
    """The verdict for every matching rule of the applicable orders.

    The most specific block and the most specific allow are compared; an allow at the
    same or a higher specificity wins. A block cites every order with a block rule more
    specific than the best allow; an allow that overrode a block cites every order with
    an allow rule at least as specific as the best block. Each order is cited once, with
    its most specific matching rule (ties: the smaller rule text), most specific first,
    then by order id. The block's action is the one of its most specific block rules,
    ties broken by ``ACTION_PRECEDENCE``.
    """
    blocks = [m for m in matches if not m.rule.kind.is_allow]
    allows = [m for m in matches if m.rule.kind.is_allow]
    if not blocks:
        return ALLOWED
    best_block = max(m.specificity for m in blocks)
    best_allow = max((m.specificity for m in allows), default=-1)
    if best_allow >= best_block:
        return Verdict(
            Decision.ALLOW,
            None,
            cite([m for m in allows if m.specificity >= best_block]),
        )
    top_actions = {m.action for m in blocks if m.specificity == best_block}
    action = next(a for a in ACTION_PRECEDENCE if a in top_actions)
    return Verdict(
        Decision.BLOCK,
        action,
        cite([m for m in blocks if m.specificity > best_allow]),
    )


def cite(matches: list[Match]) -> tuple[Citation, ...]:
    """One citation per order (its most specific rule), in citation order."""
    chosen: dict[int, Match] = {}
    for m in matches:
        key = m.order.order.id
        seen = chosen.get(key)
        if seen is None or (-m.specificity, m.rule.describe()) < (
            -seen.specificity,
            seen.rule.describe(),
        ):
            chosen[key] = m
    ranked = sorted(
        chosen.values(), key=lambda m: (-m.specificity, m.order.order.id, m.rule.describe())
    )
    return tuple(Citation(m.order.ref(base_url=""), m.rule.describe()) for m in ranked)


def match(orders: Iterable[CompiledOrder], name: str, jurisdiction: str, now: float) -> Verdict:
    """The verdict for a canonical name asked by a client of ``jurisdiction`` at ``now``."""
    found = []
    for compiled in orders:
        if not applies(compiled, jurisdiction, now):
            continue
        for rule in compiled.rules:
            spec = None if rule.kind.is_ip else name_specificity(rule, name)
            if spec is not None:
                found.append(Match(spec, compiled, rule))
    return decide(found)


def match_ip(
    orders: Iterable[CompiledOrder], address: str, jurisdiction: str, now: float
) -> Verdict:
    """The verdict for an answer address shown to a client of ``jurisdiction`` at ``now``."""
    found = []
    for compiled in orders:
        if not applies(compiled, jurisdiction, now):
            continue
        for rule in compiled.rules:
            spec = ip_specificity(rule, address)
            if spec is not None:
                found.append(Match(spec, compiled, rule))
    return decide(found)
