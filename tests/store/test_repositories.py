"""``repositories.rule_rows`` on both databases: an order whose rules share one kind and
one action comes as one text, anything else as rows, and either is the same rules."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from clearwall.ledger.entries import rules_digest
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, schema
from clearwall.store import repositories as repo

from .test_service import REGULATOR, add

# Names whose bytewise order is not a linguistic collation's (hyphens, digits, case of
# nothing: names are lower-case), shuffled, so the database sorts them.
NAMES = [
    "b.example",
    "a-b.example",
    "ab.example",
    "a.example",
    "a0.example",
    "a9-z.example",
    "z.example",
    "0.example",
    "a.b.example",
    "a-.example",
]


def uniform(kind: RuleKind = RuleKind.SUBTREE, action: Action | None = None) -> list[RuleSpec]:
    """Rules of one kind and one action over NAMES."""
    return [RuleSpec(kind, n, action) for n in NAMES]


def read(service: PolicyService, order_id: int) -> repo.RuleRows:
    with service.store.read() as conn:
        return repo.rule_rows(conn, order_id)


@pytest.mark.parametrize(
    "rules, as_text",
    [
        (uniform(), True),
        (uniform(RuleKind.EXACT, Action.REFUSED), True),
        (uniform(RuleKind.WILDCARD, Action.SINKHOLE), True),
        # Mixed actions, mixed kinds, NULL beside an action, CIDRs: rows.
        (uniform()[:5] + uniform(action=Action.REFUSED)[5:], False),
        (uniform()[:5] + uniform(RuleKind.EXACT)[5:], False),
        (uniform(action=Action.REFUSED)[:1] + uniform()[1:], False),
        ([RuleSpec(RuleKind.RESPONSE_IP, "192.0.2.0/24")], False),
    ],
)
def test_an_order_reads_as_its_rules(
    service: PolicyService, rules: list[RuleSpec], as_text: bool
) -> None:
    """Text or rows, the rules as stored, in (kind, value) order, with their digest."""
    order = add(service, authority=REGULATOR, rules=rules)
    found = read(service, order.id)
    assert (found.text is not None) is as_text
    if found.text is not None:  # in bytewise order, whatever the database's collation
        assert found.text.split("\n") == sorted(NAMES)
    key = lambda r: (r.kind.value, r.value)  # noqa: E731 - the store's order
    assert list(found) == sorted(rules, key=key) and len(found) == len(rules)
    assert rules_digest(found) == rules_digest(rules)


def test_an_amended_order_reads_as_its_rules(service: PolicyService) -> None:
    """Rules added and removed later lie outside the order's first run of ids: read the
    other way, to the same rules and digest."""
    order = add(service, authority=REGULATOR, rules=uniform()[:6])
    add(service, reference="OTHER")  # ids in between
    service.amend_order(order.id, add=uniform()[6:], remove=uniform()[:1], reason="r")
    found = read(service, order.id)
    assert found.text is not None
    assert list(found) == sorted(uniform()[1:], key=lambda r: r.value)
    assert rules_digest(found) == rules_digest(uniform()[1:])


@pytest.mark.parametrize("value", ["a.exa\tmple", "a.exa\x01mple", "bücher.example"])
def test_values_that_are_not_plain_ascii_read_as_rows(service: PolicyService, value: str) -> None:
    """A control character or a non-ASCII value (written behind the service's back):
    rows, which keep it as it is."""
    order = add(service, authority=REGULATOR, rules=uniform())
    with service.store.write() as conn:
        r = schema.rules
        conn.execute(update(r).where(r.c.value == "z.example").values(value=value))
    found = read(service, order.id)
    assert found.text is None and value in {rule.value for rule in found}
