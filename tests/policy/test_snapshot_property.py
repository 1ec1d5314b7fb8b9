"""Property: for random rule sets, names, jurisdictions and times, the compiled snapshot
(fresh and after save/load) gives exactly the reference matcher's verdicts."""

from __future__ import annotations

import ipaddress
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matcher_builders import DAY, JURISDICTIONS, T0, order

from clearwall.model import Action, OrderStatus, RuleKind, Verdict
from clearwall.policy import reference
from clearwall.policy.model import CompiledOrder, RuleSpec
from clearwall.policy.snapshot import PolicySnapshot

# A tiny label alphabet, so that random rules and random names overlap often. Now and
# then a label that is not ASCII or so long that the name exceeds 253 characters: the
# name index covers neither, and such queries must reach the same verdicts through the
# trie alone.
rule_names = st.lists(st.sampled_from(["a", "b"] * 4 + ["ü"]), min_size=1, max_size=3).map(".".join)
names = st.lists(st.sampled_from(["a", "b"] * 8 + ["ü", "l" * 126]), min_size=1, max_size=4).map(
    ".".join
)
NAME_KINDS = [k for k in RuleKind if not k.is_ip]
actions = st.none() | st.sampled_from(list(Action))

addresses = st.one_of(
    st.tuples(st.sampled_from([0, 1]), st.sampled_from([0, 1]), st.sampled_from([0, 1, 255])).map(
        lambda t: f"10.{t[0]}.{t[1]}.{t[2]}"
    ),
    st.tuples(st.sampled_from([0, 1]), st.sampled_from([0, 1])).map(
        lambda t: f"2001:db8:{t[0]}::{t[1]}"
    ),
)


@st.composite
def ip_rules(draw: st.DrawFn) -> RuleSpec:
    address = draw(addresses)
    length = draw(st.sampled_from([8, 16, 24, 32] if "." in address else [32, 48, 64, 128]))
    network = ipaddress.ip_network(f"{address}/{length}", strict=False)
    kind = draw(st.sampled_from([RuleKind.RESPONSE_IP, RuleKind.ALLOW_RESPONSE_IP]))
    return RuleSpec(kind, str(network), draw(actions))


name_rules = st.builds(RuleSpec, st.sampled_from(NAME_KINDS), rule_names, actions)


@st.composite
def orders(draw: st.DrawFn) -> list[CompiledOrder]:
    result = []
    for index in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, 3))
        end = draw(st.none() | st.integers(start + 1, 6))
        built = order(
            draw(st.integers(1, 50)) * 10 + index,  # unique ids, not in list order
            jurisdiction=draw(st.sampled_from(["de", "fr"])),
            action=draw(st.sampled_from(list(Action))),
            start_day=start,
            end_day=end,
            status=draw(st.sampled_from([OrderStatus.ACTIVE] * 4 + [OrderStatus.REVOKED])),
            everywhere=draw(st.booleans()),
        )
        rules = draw(st.lists(name_rules | ip_rules(), max_size=8))
        result.append(CompiledOrder(built.order, built.authority, tuple(rules)))
    return result


times = st.sampled_from([0, 0.5, 1, 2, 2.5, 3, 4, 5, 6, 7]).map(
    lambda day: T0.timestamp() + day * DAY
)
jurisdictions = st.sampled_from(["de", "fr", "zz"])


def full(verdict: Verdict) -> tuple[object, ...]:
    return (
        verdict.decision,
        verdict.action,
        tuple((c.order.id, c.rule) for c in verdict.citations),
    )


def check(snapshot: PolicySnapshot, policy: list[CompiledOrder], queries: list) -> None:
    for name, address, jurisdiction, now in queries:
        expected = full(reference.match(policy, name, jurisdiction, now))
        assert full(snapshot.match(name, jurisdiction, now)) == expected, name
        expected = full(reference.match_ip(policy, address, jurisdiction, now))
        assert full(snapshot.match_ip(address, jurisdiction, now)) == expected, address


queries = st.lists(st.tuples(names, addresses, jurisdictions, times), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(policy=orders(), queries=queries)
def test_compiled_equals_reference(policy: list[CompiledOrder], queries: list) -> None:
    check(PolicySnapshot.compile(policy, JURISDICTIONS), policy, queries)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=orders(), queries=queries)
def test_loaded_equals_reference(policy: list[CompiledOrder], queries: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        PolicySnapshot.compile(policy, JURISDICTIONS).save(Path(tmp) / "snap")
        check(PolicySnapshot.load(Path(tmp) / "snap"), policy, queries)
