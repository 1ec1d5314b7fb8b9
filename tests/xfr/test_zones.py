"""The zones state the matcher's verdicts: for random policies, names, addresses,
jurisdictions and times, both ways resolvers read RPZ give the compiled snapshot's
decision and action, and the zone that decides signals the verdict's EDE unless the
zone says (in its notes) that it serves triggers of another basis."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearwall.model import Action, AuthorityKind, EDECode, OrderStatus, RuleKind, Verdict
from clearwall.policy.model import CompiledOrder, RuleSpec
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.xfr.zones import (
    ABSENT,
    BASES,
    Basis,
    RuleIndex,
    Zone,
    ZoneSet,
    jurisdiction_zones,
    zone_name,
)

from .builders import DAY, JURISDICTIONS, NOW, T0, order
from .rpz_eval import NO_MATCH, closest_encloser, longest_wildcard, response_ip

labels = st.sampled_from(["a", "b", "c"])
rule_names = st.lists(labels, min_size=1, max_size=3).map(".".join)
query_names = st.lists(labels, min_size=1, max_size=5).map(".".join)
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
def policies(draw: st.DrawFn) -> list[CompiledOrder]:
    result = []
    for index in range(draw(st.integers(1, 5))):
        start = draw(st.integers(0, 3))
        result.append(
            order(
                draw(st.integers(1, 50)) * 10 + index,
                draw(st.lists(name_rules | ip_rules(), max_size=8)),
                jurisdiction=draw(st.sampled_from(["de", "fr"])),
                kind=draw(st.sampled_from(list(AuthorityKind))),
                action=draw(st.sampled_from(list(Action))),
                start_day=start,
                end_day=draw(st.none() | st.integers(start + 1, 6)),
                status=draw(st.sampled_from([OrderStatus.ACTIVE] * 4 + [OrderStatus.REVOKED])),
                everywhere=draw(st.booleans()),
            )
        )
    return result


times = st.sampled_from([0, 0.5, 1, 2, 3, 4, 5, 6, 7]).map(lambda d: T0.timestamp() + d * DAY)


def assert_same(verdict: Verdict, found: object, zone: Zone | None, what: str) -> None:
    """The zones' answer agrees with the matcher's verdict."""
    if not verdict.blocked:
        assert found is NO_MATCH or found is None, f"{what}: allowed, zones say {found}"
        return
    assert found == verdict.action, f"{what}: {verdict.action} expected, zones say {found}"
    assert zone is not None
    if zone.basis.ede is not verdict.ede:
        assert verdict.ede is EDECode.FILTERED or any("another basis" in n for n in zone.notes), (
            f"{what}: EDE {verdict.ede} but zone {zone.name} ({zone.basis}) answers, "
            f"notes {zone.notes}"
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    names=st.lists(query_names, min_size=1, max_size=12),
    ips=st.lists(addresses, max_size=6),
    jurisdiction=st.sampled_from(["de", "fr", "zz"]),
    at=times,
)
def test_zones_decide_as_the_matcher(
    policy: list[CompiledOrder], names: list[str], ips: list[str], jurisdiction: str, at: float
) -> None:
    snapshot = PolicySnapshot.compile(policy, JURISDICTIONS)
    zones = jurisdiction_zones(RuleIndex(policy), jurisdiction, at)
    # Every name rules list, and a name below each, besides the random ones.
    listed = {r.value for o in policy for r in o.rules if not r.kind.is_ip}
    for name in [*names, *listed, *(f"x.{n}" for n in listed)]:
        verdict = snapshot.match(name, jurisdiction, at)
        for read in (longest_wildcard, closest_encloser):
            found, zone = read(zones, name)
            assert_same(verdict, found, zone, f"{read.__name__} {name} for {jurisdiction}")
    for address in ips:
        verdict = snapshot.match_ip(address, jurisdiction, at)
        found, zone = response_ip(zones, address)
        assert_same(verdict, found, zone, f"address {address} for {jurisdiction}")


def test_zone_names_and_load_order() -> None:
    assert BASES == (Basis.CENSORED, Basis.BLOCKED)
    assert zone_name("xa", Basis.CENSORED) == "xa.censored.rpz.clearwall."
    assert zone_name("xa", Basis.BLOCKED, "rpz.example.net") == "xa.blocked.rpz.example.net."
    zones = jurisdiction_zones(RuleIndex([]), "xa", NOW)
    assert [z.name for z in zones] == ["xa.censored.rpz.clearwall.", "xa.blocked.rpz.clearwall."]
    assert all(not z.policies and not z.notes for z in zones)


COURT, CERT = AuthorityKind.COURT, AuthorityKind.CERT


@pytest.mark.parametrize(
    ("orders", "censored", "blocked"),
    [
        # One court subtree: the name and its wildcard, censored.
        ([order(1, ["subtree x.com"])], {"x.com": Action.NXDOMAIN, "*.x.com": Action.NXDOMAIN}, {}),
        # A CERT's exact block: blocked zone, no wildcard.
        ([order(1, ["exact m.net"], kind=CERT)], {}, {"m.net": Action.NXDOMAIN}),
        # An exception under a court subtree: passthru in the censored zone, both halves.
        (
            [order(1, ["subtree x.com"]), order(2, ["allow-exact ok.x.com"], kind=CERT)],
            {
                "x.com": Action.NXDOMAIN,
                "*.x.com": Action.NXDOMAIN,
                "ok.x.com": None,
                "*.ok.x.com": Action.NXDOMAIN,
            },
            {},
        ),
        # A CERT block under a court subtree: copied into the censored zone (it must
        # answer before the court's wildcard), kept in its own.
        (
            [
                order(1, ["subtree x.com"]),
                order(2, ["exact m.x.com"], kind=CERT, action=Action.NODATA),
            ],
            {
                "x.com": Action.NXDOMAIN,
                "*.x.com": Action.NXDOMAIN,
                "m.x.com": Action.NODATA,
                "*.m.x.com": Action.NXDOMAIN,
            },
            {"m.x.com": Action.NODATA},
        ),
        # An exact rule outranks a subtree at the same name; the action of the most
        # specific block wins.
        (
            [
                order(1, ["subtree x.com"]),
                order(2, ["allow-subtree x.com", "exact x.com sinkhole"]),
            ],
            {"x.com": Action.SINKHOLE},
            {},
        ),
        # Response-IP: the longest prefix, exceptions only under a block.
        (
            [order(1, ["response-ip 10.0.0.0/8", "allow-response-ip 10.1.0.0/16"], kind=CERT)],
            {},
            {"8.0.0.0.10.rpz-ip": Action.NXDOMAIN, "16.0.0.1.10.rpz-ip": None},
        ),
    ],
)
def test_zone_contents(
    orders: list[CompiledOrder],
    censored: dict[str, Action | None],
    blocked: dict[str, Action | None],
) -> None:
    zones = jurisdiction_zones(RuleIndex(orders), "de", NOW)
    assert [dict(z.policies) for z in zones] == [censored, blocked]


def test_inexact_triggers_are_counted() -> None:
    orders = [
        order(1, ["subtree x.com"]),
        order(2, ["exact m.x.com", "exact a.rpz-ip", "exact r.net"], kind=CERT),
        order(3, ["exact q.net"], kind=CERT, action=Action.REFUSED),
        order(4, ["response-ip 192.0.2.0/24", "allow-exact ok.x.com"], kind=CERT),
    ]
    censored, blocked = jurisdiction_zones(RuleIndex(orders), "de", NOW)
    assert censored.notes == (
        "1 triggers decided by orders of another basis are served here because a wildcard "
        "of this zone covers them: resolvers signal EDE 16 for them",
        "1 name exceptions (rpz-passthru) also exempt their names from response-IP triggers "
        "on RPZ resolvers; the gateway checks answer addresses of every allowed name",
        "1 names ending in an RPZ trigger label (rpz-ip, rpz-nsdname, ...) cannot be QNAME "
        "triggers: omitted",
    )
    assert blocked.notes == (
        "1 triggers are refused by the gateway; RPZ has no REFUSED: rpz-drop makes a "
        "resolver not answer",
    )


def test_orders_apply_by_jurisdiction_and_time() -> None:
    orders = [
        order(1, ["exact de.com"], jurisdiction="de"),
        order(2, ["exact all.com"], jurisdiction="de", kind=CERT, everywhere=True),
        order(3, ["exact later.com"], jurisdiction="de", start_day=20),
        order(4, ["exact gone.com"], jurisdiction="de", end_day=5),
    ]
    index = RuleIndex(orders)
    de = jurisdiction_zones(index, "de", NOW)
    fr = jurisdiction_zones(index, "fr", NOW)
    assert set(de[0].policies) == {"de.com"} and set(de[1].policies) == {"all.com"}
    assert not fr[0].policies and set(fr[1].policies) == {"all.com"}
    later = jurisdiction_zones(index, "de", T0.timestamp() + 21 * DAY)
    assert set(later[0].policies) == {"de.com", "later.com"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(policies(), times), min_size=1, max_size=5),
    keep=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_zoneset_updates_as_a_fresh_computation(
    steps: list[tuple[list[CompiledOrder], float]], keep: list[bool]
) -> None:
    """A ZoneSet brought through a sequence of policy versions (orders added, changed,
    dropped, time moving either way) holds exactly the zones computed from scratch, and
    the changes it reports turn each version's zones into the next's."""
    zoneset = ZoneSet()
    previous: dict[str, dict[str, object]] = {}
    carried: dict[int, CompiledOrder] = {}
    for (policy, at), keep_old in zip(steps, keep, strict=False):
        # Keep some orders of the last version as the very same objects (unchanged).
        orders = {o.order.id: o for o in policy}
        if keep_old:
            orders.update(carried)
        carried = dict(orders)
        result = zoneset.update(list(orders.values()), JURISDICTIONS, at)
        fresh = RuleIndex(orders.values())
        expected = {
            z.name: dict(z.policies)
            for code in fresh.jurisdictions(JURISDICTIONS)
            for z in jurisdiction_zones(fresh, code, at)
        }
        assert {name: dict(zone.policies) for name, (zone, _c) in result.items()} == expected
        for name, (_zone, change) in result.items():
            if change is None:  # computed anew: taken whole
                assert name not in previous
                continue
            old = dict(previous[name])
            for owner, (_before, after) in change.items():
                if after is ABSENT:
                    old.pop(owner, None)
                else:
                    old[owner] = after
            assert old == expected[name], name
        previous = expected
