"""Small builders for matcher tests: orders from one-line rule texts, and three matchers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path

from clearwall.model import Action, AuthorityKind, Category, OrderStatus, RuleKind, Verdict
from clearwall.policy import reference
from clearwall.policy.model import Authority, CompiledOrder, Jurisdiction, Order, RuleSpec
from clearwall.policy.snapshot import PolicySnapshot

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = 86400.0
NOW = T0.timestamp() + 10 * DAY

JURISDICTIONS = (
    Jurisdiction("de", "Germany"),
    Jurisdiction("fr", "France"),
)


def rule(text: str) -> RuleSpec:
    """``"subtree example.com"`` or ``"exact a.example.com nodata"`` as a RuleSpec."""
    parts = text.split()
    action = Action(parts[2]) if len(parts) > 2 else None
    return RuleSpec(RuleKind(parts[0]), parts[1], action)


def order(
    id: int,
    jurisdiction: str = "de",
    rules: Sequence[str] = (),
    action: Action = Action.NXDOMAIN,
    start_day: float = 0,
    end_day: float | None = None,
    status: OrderStatus = OrderStatus.ACTIVE,
    everywhere: bool = False,
) -> CompiledOrder:
    """An order of authority ``jurisdiction`` with rules given as texts; days from T0."""
    start = T0 + dt.timedelta(days=start_day)
    end = None if end_day is None else T0 + dt.timedelta(days=end_day)
    return CompiledOrder(
        order=Order(
            id=id,
            authority_id=id,
            title=f"order {id}",
            legal_basis="test",
            reference=f"ref-{id}",
            category=Category.MALWARE,
            action=action,
            issued=start.date(),
            effective_from=start,
            expires=end,
            status=status,
            all_jurisdictions=everywhere,
        ),
        authority=Authority(id, f"authority {id}", AuthorityKind.CERT, jurisdiction),
        rules=tuple(rule(r) for r in rules),
    )


Summary = tuple[str, str | None, tuple[int, ...]]


def summary(verdict: Verdict) -> Summary:
    """Decision, action and cited order ids: what the tests compare."""
    return (
        verdict.decision.value,
        verdict.action.value if verdict.action else None,
        tuple(c.order.id for c in verdict.citations),
    )


Matcher = Callable[[str, str, float], Verdict]


def matchers(orders: Sequence[CompiledOrder], tmp: Path, ip: bool = False) -> dict[str, Matcher]:
    """The reference, a compiled snapshot and the same snapshot after save/load."""
    compiled = PolicySnapshot.compile(orders, JURISDICTIONS)
    compiled.save(tmp / "snap")
    loaded = PolicySnapshot.load(tmp / "snap")
    if ip:
        return {
            "reference": lambda a, j, t: reference.match_ip(orders, a, j, t),
            "compiled": compiled.match_ip,
            "loaded": loaded.match_ip,
        }
    return {
        "reference": lambda n, j, t: reference.match(orders, n, j, t),
        "compiled": compiled.match,
        "loaded": loaded.match,
    }
