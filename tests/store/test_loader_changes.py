"""Overlays read from the store: a base compiled at one log size, layered under the orders
changed since, enforces exactly what a whole compile at the new size enforces."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearwall.errors import Conflict
from clearwall.model import RuleKind
from clearwall.policy.layered import LayeredPolicy
from clearwall.policy.model import RuleSpec
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.store import PolicyService, open_store
from clearwall.store.loader import build_overlay, build_snapshot, load_changes

from .test_service import COURT, OPERATOR, REGULATOR, add

NAMES = ["a.example", "b.a.example", "c.example", "d.c.example", "e.example"]
QUERIES = [*NAMES, "x.b.a.example", "y.d.c.example", "z.example", "e.example.org"]
CLIENTS = ["xa", "xb", "zz"]  # zz: a client of no known jurisdiction
KINDS = [RuleKind.SUBTREE, RuleKind.EXACT, RuleKind.ALLOW_SUBTREE, RuleKind.WILDCARD]


def layered(service: PolicyService, base: PolicySnapshot) -> LayeredPolicy:
    overlay, masked = build_overlay(service.store, base.tree_size)
    return LayeredPolicy(PolicySnapshot(base._tables, masked), overlay)


def same_verdicts(one: Any, other: Any) -> None:
    for name in QUERIES:
        for client in CLIENTS:
            assert one.match(name, client) == other.match(name, client), (name, client)


@functools.cache
def template() -> Path:
    """A migrated, seeded SQLite store, made once; each example works on a copy."""
    path = Path(tempfile.mkdtemp(prefix="cw-changes-")) / "template.db"
    svc = PolicyService(open_store(f"sqlite:///{path}", migrate=True))
    svc.add_jurisdiction("xa", "Demo Republic A", ["127.0.0.0/8", "::1/128"])
    svc.add_jurisdiction("xb", "Demo Republic B", ["127.77.0.0/16"])
    svc.add_authority("Court A", "court", "xa", ["mailto:court@a.example"])
    svc.add_authority("Regulator B", "regulator", "xb", ["https://reg.b.example"])
    svc.add_authority("Operator security", "operator", "xa", ["tel:+10000000000"])
    svc.store.dispose()
    return path


def seeded(directory: Path) -> PolicyService:
    shutil.copy(template(), directory / "cw.db")
    return PolicyService(open_store(f"sqlite:///{directory / 'cw.db'}"))


rule_specs = st.lists(
    st.builds(RuleSpec, st.sampled_from(KINDS), st.sampled_from(NAMES)), min_size=1, max_size=3
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from([COURT, REGULATOR, OPERATOR]),
            rule_specs,
            st.booleans(),
        ),
        st.tuples(st.just("amend"), st.integers(0, 9), rule_specs, rule_specs),
        st.tuples(st.just("revoke"), st.integers(0, 9)),
        st.tuples(st.just("appeal"), st.integers(0, 9)),
    ),
    max_size=6,
)


def apply(service: PolicyService, op: tuple[Any, ...], made: list[int]) -> None:
    kind = op[0]
    if kind == "add":
        order = add(
            service,
            authority=op[1],
            reference=f"R{len(made)}",
            rules=op[2],
            all_jurisdictions=op[3] and op[1] == OPERATOR,  # only operators may
        )
        made.append(order.id)
        return
    if not made:
        return
    order_id = made[op[1] % len(made)]
    # A random operation the store refuses (amending or revoking an order revoked
    # before) changes nothing, which is what the test needs of it.
    with contextlib.suppress(Conflict):
        if kind == "amend":
            service.amend_order(order_id, add=op[2], remove=op[3], reason="change")
        elif kind == "revoke":
            service.revoke_order(order_id, "withdrawn")
        else:
            service.file_appeal(order_id, NAMES[0], "mailto:me@example.org", "wrong")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=operations, after=operations)
def test_overlay_over_base_equals_a_whole_compile(before: list, after: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service = seeded(Path(tmp))
        try:
            made: list[int] = []
            for op in before:
                apply(service, op, made)
            base = build_snapshot(service.store)
            for op in after:
                apply(service, op, made)
            policy = layered(service, base)
            whole = build_snapshot(service.store)
            assert policy.tree_size == whole.tree_size
            same_verdicts(policy, whole)
        finally:
            service.store.dispose()


def test_changes_name_only_the_orders_the_new_entries_touch(service: PolicyService) -> None:
    kept = add(service, reference="KEPT")
    amended = add(service, reference="AMENDED")
    revoked = add(service, reference="REVOKED")
    since = service.store.log_size()
    service.amend_order(amended.id, add=[RuleSpec(RuleKind.SUBTREE, "new.example")], reason="x")
    service.revoke_order(revoked.id, "withdrawn")
    service.file_appeal(kept.id, "blocked.example", "mailto:me@example.org", "wrong")
    new = add(service, reference="NEW")
    change = load_changes(service.store, since)
    assert change.since == since and change.size == service.store.log_size() == since + 4
    assert change.changed == {amended.id, revoked.id, new.id}  # an appeal changes no rule
    assert [c.order.id for c in change.orders] == [amended.id, new.id]
    assert {r.value for r in change.orders[0].rules} >= {"new.example", "blocked.example"}
    with pytest.raises(ValueError, match="fewer than"):
        load_changes(service.store, since + 10)


def test_an_order_past_its_sunset_is_masked_not_carried(service: PolicyService) -> None:
    order = add(service, reference="SOON", expires="2030-01-01")
    base = build_snapshot(service.store)
    service.amend_order(order.id, add=[RuleSpec(RuleKind.SUBTREE, "late.example")], reason="x")
    later = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    change = load_changes(service.store, base.tree_size, later)
    assert change.changed == {order.id} and change.orders == []
