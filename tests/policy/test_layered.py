"""A layered policy (base with orders masked, under an overlay of changed orders) gives
exactly the verdicts of the merged policy compiled whole, and of the reference matcher."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matcher_builders import DAY, JURISDICTIONS, NOW, T0, order, summary
from test_snapshot_property import check, orders, queries

from clearwall.errors import SnapshotError
from clearwall.model import Decision
from clearwall.policy import layered
from clearwall.policy.layered import LayeredPolicy, save_overlay
from clearwall.policy.model import CompiledOrder, Jurisdiction
from clearwall.policy.snapshot import PolicySnapshot


@st.composite
def changes(draw: st.DrawFn) -> tuple[list[CompiledOrder], list[CompiledOrder], frozenset[int]]:
    """A base policy, the overlay's orders (some of them new versions of base orders,
    as an amendment makes), and the masked ids: every overlay id plus base orders ended
    (revoked or expired) by the change."""
    base = draw(orders())
    overlay = draw(orders())
    base_ids = [o.order.id for o in base]
    taken: set[int] = set()
    renamed = []
    for compiled in overlay:
        replaced = draw(st.sampled_from([None, *base_ids]))
        if replaced is not None and replaced not in taken:
            taken.add(replaced)
            compiled = CompiledOrder(
                dataclasses.replace(compiled.order, id=replaced), compiled.authority, compiled.rules
            )
        renamed.append(compiled)
    # A drawn id may equal a replaced one: one order per id, as in any policy.
    renamed = list({o.order.id: o for o in reversed(renamed)}.values())
    overlay_ids = {o.order.id for o in renamed}
    ended = draw(st.sets(st.sampled_from(base_ids))) if base_ids else set()
    return base, renamed, frozenset(overlay_ids | ended)


def merged(
    base: list[CompiledOrder], overlay: list[CompiledOrder], masked: frozenset[int]
) -> list[CompiledOrder]:
    return [o for o in base if o.order.id not in masked] + overlay


def layer(
    base: list[CompiledOrder],
    overlay: list[CompiledOrder],
    masked: frozenset[int],
    jurisdictions: tuple[Jurisdiction, ...] = JURISDICTIONS,
) -> LayeredPolicy:
    base_snapshot = PolicySnapshot.compile(base, jurisdictions, tree_size=5)
    compiled = PolicySnapshot(base_snapshot._tables, masked)
    return LayeredPolicy(compiled, PolicySnapshot.compile(overlay, jurisdictions, tree_size=9))


@settings(max_examples=300, deadline=None)
@given(change=changes(), queries=queries)
def test_layered_equals_the_merged_policy(change, queries: list) -> None:
    base, overlay, masked = change
    policy = merged(base, overlay, masked)
    check(layer(base, overlay, masked), policy, queries)  # against the reference
    whole = PolicySnapshot.compile(policy, JURISDICTIONS)
    layered_policy = layer(base, overlay, masked)
    for name, address, jurisdiction, now in queries:
        assert layered_policy.match(name, jurisdiction, now) == whole.match(name, jurisdiction, now)
        assert layered_policy.match_ip(address, jurisdiction, now) == whole.match_ip(
            address, jurisdiction, now
        )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change=changes(), queries=queries)
def test_saved_overlay_loads_with_its_base(change, queries: list) -> None:
    base, overlay, masked = change
    with tempfile.TemporaryDirectory() as tmp:
        PolicySnapshot.compile(base, JURISDICTIONS, tree_size=5).save(Path(tmp) / "base")
        save_overlay(
            PolicySnapshot.compile(overlay, JURISDICTIONS, tree_size=9),
            Path(tmp) / "over",
            Path(tmp) / "base",
            masked,
        )
        loaded = layered.load(Path(tmp) / "over")
        assert isinstance(loaded, LayeredPolicy)
        assert loaded.tree_size == 9
        check(loaded, merged(base, overlay, masked), queries)
        assert isinstance(layered.load(Path(tmp) / "base"), PolicySnapshot)


def test_an_amended_order_is_cited_once_with_its_new_rules() -> None:
    old = order(1, "de", ["subtree x.com", "subtree y.com"])
    new = order(1, "de", ["subtree y.com", "exact z.com"])
    policy = layer([old, order(2, "de", ["subtree x.com"])], [new], frozenset({1}))
    assert summary(policy.match("a.x.com", "de", NOW)) == ("block", "nxdomain", (2,))
    assert summary(policy.match("a.y.com", "de", NOW)) == ("block", "nxdomain", (1,))
    assert summary(policy.match("z.com", "de", NOW)) == ("block", "nxdomain", (1,))
    assert policy.match("z.com", "fr", NOW).decision is Decision.ALLOW
    assert [o.id for o in policy.orders()] == [2, 1]
    rules = sorted((spec.value, ref.id) for spec, ref in policy.rules_for("de", NOW))
    assert rules == [("x.com", 2), ("y.com", 1), ("z.com", 1)]


def test_an_allow_in_the_overlay_overrides_a_base_block_and_time_still_counts() -> None:
    base = [order(1, "de", ["subtree x.com"])]
    overlay = [order(2, "de", ["allow-subtree ok.x.com"], start_day=12, end_day=20)]
    policy = layer(base, overlay, frozenset())
    before, during, after = (T0.timestamp() + day * DAY for day in (11, 13, 21))
    assert policy.match("a.ok.x.com", "de", before).blocked
    assert not policy.match("a.ok.x.com", "de", during).blocked
    assert policy.match("a.ok.x.com", "de", after).blocked


def test_jurisdictions_come_from_the_overlay() -> None:
    import ipaddress

    newer = (*JURISDICTIONS, Jurisdiction("it", "Italy", (ipaddress.ip_network("10.9.0.0/16"),)))
    base = PolicySnapshot.compile([order(1, "de", ["subtree x.com"])], JURISDICTIONS)
    policy = LayeredPolicy(base, PolicySnapshot.compile([], newer, tree_size=3))
    assert policy.jurisdiction_of("10.9.1.1") == "it"
    assert "it" in policy.jurisdictions() and "de" in policy.jurisdictions()


def test_an_overlay_whose_base_changed_is_refused(tmp_path: Path) -> None:
    PolicySnapshot.compile([order(1, "de", ["subtree x.com"])], JURISDICTIONS).save(
        tmp_path / "base"
    )
    save_overlay(
        PolicySnapshot.compile([], JURISDICTIONS), tmp_path / "over", tmp_path / "base", frozenset()
    )
    PolicySnapshot.compile([order(2, "de", ["subtree y.com"])], JURISDICTIONS).save(
        tmp_path / "base"
    )
    with pytest.raises(SnapshotError, match="its base"):
        layered.load(tmp_path / "over")
    (tmp_path / "over" / layered.LAYER_FILE).write_text("{not json")
    with pytest.raises(SnapshotError, match="cannot load policy overlay"):
        layered.load(tmp_path / "over")
