"""Orders for zone tests: one-line rule texts, an authority kind per order (its basis)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from clearwall.model import Action, AuthorityKind, Category, OrderStatus, RuleKind
from clearwall.policy.model import Authority, CompiledOrder, Jurisdiction, Order, RuleSpec

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY = 86400.0
NOW = T0.timestamp() + 10 * DAY
JURISDICTIONS = (Jurisdiction("de", "Germany"), Jurisdiction("fr", "France"))


def rule(text: str) -> RuleSpec:
    """``"subtree example.com"`` or ``"exact a.example.com nodata"`` as a RuleSpec."""
    parts = text.split()
    action = Action(parts[2]) if len(parts) > 2 else None
    return RuleSpec(RuleKind(parts[0]), parts[1], action)


def order(
    id: int,
    rules: Sequence[str | RuleSpec] = (),
    jurisdiction: str = "de",
    kind: AuthorityKind = AuthorityKind.COURT,
    action: Action = Action.NXDOMAIN,
    start_day: float = 0,
    end_day: float | None = None,
    status: OrderStatus = OrderStatus.ACTIVE,
    everywhere: bool = False,
) -> CompiledOrder:
    """An order by an authority of ``kind`` in ``jurisdiction``; days count from T0.

    A court's order is censorship (EDE 16), a CERT's or operator's a block (EDE 15).
    """
    start = T0 + dt.timedelta(days=start_day)
    end = None if end_day is None else T0 + dt.timedelta(days=end_day)
    category = Category.COURT_ORDER if kind is AuthorityKind.COURT else Category.MALWARE
    return CompiledOrder(
        order=Order(
            id=id,
            authority_id=id,
            title=f"order {id}",
            legal_basis="test",
            reference=f"ref-{id}",
            category=category,
            action=action,
            issued=start.date(),
            effective_from=start,
            expires=end,
            status=status,
            all_jurisdictions=everywhere,
        ),
        authority=Authority(id, f"authority {id}", kind, jurisdiction),
        rules=tuple(r if isinstance(r, RuleSpec) else rule(r) for r in rules),
    )
