"""Shared values: the EDE table chosen by basis, rule kinds, and order time windows."""

from __future__ import annotations

import datetime as dt

import pytest

from clearwall.model import Action, AuthorityKind, Category, EDECode, RuleKind, ede_for
from clearwall.policy.model import Order

UTC = dt.UTC


@pytest.mark.parametrize(
    ("category", "kind", "code"),
    [
        (Category.COURT_ORDER, AuthorityKind.COURT, EDECode.CENSORED),
        (Category.REGULATORY, AuthorityKind.REGULATOR, EDECode.CENSORED),
        (Category.MALWARE, AuthorityKind.COURT, EDECode.CENSORED),
        (Category.MALWARE, AuthorityKind.OPERATOR, EDECode.BLOCKED),
        (Category.PHISHING, AuthorityKind.CERT, EDECode.BLOCKED),
        (Category.OPERATOR_POLICY, AuthorityKind.OPERATOR, EDECode.BLOCKED),
        (Category.SUBSCRIBER_FILTER, AuthorityKind.OPERATOR, EDECode.FILTERED),
        (Category.COURT_ORDER, AuthorityKind.OPERATOR, EDECode.CENSORED),
    ],
)
def test_ede_by_basis(category: Category, kind: AuthorityKind, code: EDECode) -> None:
    assert ede_for(category, kind) is code


def test_rule_kind_flags() -> None:
    assert {k for k in RuleKind if k.is_allow} == {
        RuleKind.ALLOW_EXACT,
        RuleKind.ALLOW_SUBTREE,
        RuleKind.ALLOW_WILDCARD,
        RuleKind.ALLOW_RESPONSE_IP,
    }
    assert {k for k in RuleKind if k.is_ip} == {RuleKind.RESPONSE_IP, RuleKind.ALLOW_RESPONSE_IP}


def _order(**kw: object) -> Order:
    base: dict[str, object] = dict(
        id=1,
        authority_id=1,
        title="t",
        legal_basis="b",
        reference="r",
        category=Category.COURT_ORDER,
        action=Action.NXDOMAIN,
        issued=dt.date(2026, 1, 1),
        effective_from=dt.datetime(2026, 1, 2, tzinfo=UTC),
        expires=dt.datetime(2026, 6, 1, tzinfo=UTC),
    )
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("at", "in_force"),
    [
        (dt.datetime(2026, 1, 1, tzinfo=UTC), False),
        (dt.datetime(2026, 1, 2, tzinfo=UTC), True),
        (dt.datetime(2026, 5, 31, 23, 59, tzinfo=UTC), True),
        (dt.datetime(2026, 6, 1, tzinfo=UTC), False),
    ],
)
def test_order_window(at: dt.datetime, in_force: bool) -> None:
    assert _order().in_force(at) is in_force


def test_revoked_order_is_never_in_force() -> None:
    from clearwall.model import OrderStatus

    order = _order(status=OrderStatus.REVOKED)
    assert not order.in_force(dt.datetime(2026, 3, 1, tzinfo=UTC))
