"""``repositories.rule_rows`` on both databases: an order whose rules share one kind and
one action comes as one text, anything else as rows, and either is the same rules."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

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


def test_a_policy_read_as_texts_compiles_to_the_tables_of_its_rulespecs(
    service: PolicyService,
) -> None:
    """Orders read as one text beside orders read as rows (mixed actions, mixed kinds,
    CIDRs, an amended one), names listed by several of them: the loader's tables are
    the tables of the same orders' RuleSpecs, to the content hash."""
    from clearwall.policy.compiler import build, content_hash
    from clearwall.policy.model import CompiledOrder
    from clearwall.store.loader import load_policy

    shared = uniform()[:4]
    add(service, reference="TEXT", rules=uniform())
    add(service, reference="REFUSED", rules=uniform(RuleKind.EXACT, Action.REFUSED)[3:])
    add(service, reference="MIXED", rules=shared[:2] + uniform(action=Action.SINKHOLE)[2:6])
    add(service, reference="KINDS", rules=shared[:2] + uniform(RuleKind.EXACT)[5:])
    cidr = [RuleSpec(RuleKind.RESPONSE_IP, "192.0.2.0/24", Action.REFUSED)]
    add(service, reference="CIDR", rules=cidr + uniform(RuleKind.WILDCARD)[:3])
    amended = add(service, authority=REGULATOR, reference="AMENDED", rules=shared)
    service.amend_order(amended.id, add=uniform()[6:], remove=shared[:1], reason="r")

    orders, jurisdictions, size = load_policy(service.store)
    assert sum(c.rules.text is not None for c in orders) == 3  # type: ignore[attr-defined]
    with service.store.read() as conn:
        as_specs = [
            CompiledOrder(c.order, c.authority, repo.order_rules(conn, c.order.id)) for c in orders
        ]
    a = build(orders, jurisdictions, size, now=1.0)
    b = build(as_specs, jurisdictions, size, now=1.0)
    assert len(a.groups) > 2 and content_hash(a) == content_hash(b) and a.version == b.version


def test_postgresql_joins_the_values_in_bytewise_order_whatever_the_collation(
    pg_service: PolicyService,
) -> None:
    """A column in a linguistic collation (ICU's English puts ``_`` before ``-``, bytes
    the other way round): the text comes in bytewise order all the same, so its digest
    is computed from the text and equals the rules'."""
    from sqlalchemy import text

    service = pg_service

    with service.store.write() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu'")).first():
            pytest.skip("PostgreSQL built without ICU")
        conn.execute(
            text('ALTER TABLE rules ALTER COLUMN value TYPE varchar(255) COLLATE "en-x-icu"')
        )
    names = ["a_b.example", "a-b.example", "a.example", "a0.example"]
    order = add(service, authority=REGULATOR, rules=[RuleSpec(RuleKind.EXACT, n) for n in names])
    with service.store.read() as conn:
        linguistic = list(
            conn.execute(select(schema.rules.c.value).order_by(schema.rules.c.value)).scalars()
        )
    assert linguistic != sorted(names)  # the column's own order is not the bytes'
    found = read(service, order.id)
    assert found.text is not None and found.text.split("\n") == sorted(names)
    assert rules_digest(found) == rules_digest([RuleSpec(RuleKind.EXACT, n) for n in names])
