"""RPZ import against the real zones and Unbound's scenarios, and RPZ export round trips."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.formats import export_rpz, parse_file, parse_text
from clearwall.formats.rpz import rpz_ip_network, rpz_ip_owner
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec

K = RuleKind
A = Action
NX, NODATA, REFUSED, SINK = A.NXDOMAIN, A.NODATA, A.REFUSED, A.SINKHOLE
LOCAL_NOTE = "local data imported as a sinkhole; its record data is not kept"
DROP_NOTE = "rpz-drop imported as refused: clearwall always answers"
TCP_ONLY = "rpz-tcp-only is not supported; rule skipped"
NSDNAME = "NSDNAME triggers (name-server name) are not supported"
NSIP = "NSIP triggers (name-server address) are not supported"
CLIENT_IP = "client-IP triggers are not supported; use a jurisdiction's networks"


def rules(*specs: tuple[RuleKind, str, Action | None]) -> list[RuleSpec]:
    return [RuleSpec(kind, value, action) for kind, value, action in specs]


# Zone files: (file, expected rules, expected issues as (line, message)).
ZONE_FILES = [
    ("unbound.rpz-nx.zone", rules((K.EXACT, "local", NX)), []),
    ("unbound.rpz-one.zone", rules((K.EXACT, "local", SINK)), [(3, LOCAL_NOTE)]),
    (
        "unbound.rpz.example.com.zone",
        rules((K.EXACT, "foo.example.net", NX), (K.EXACT, "www.example.net", SINK)),
        [(6, LOCAL_NOTE)],
    ),
    (
        "unbound.rpz.nlnetlabs.nl.zone",
        rules((K.EXACT, "nxdomain.nlnetlabs.nl", NX), (K.EXACT, "rpzdata.nlnetlabs.nl", SINK)),
        [(5, LOCAL_NOTE)],
    ),
    (
        "knot-resolver.policy.test.rpz",
        rules(
            (K.EXACT, "nxdomain", NX),
            (K.EXACT, "nodata", NODATA),
            # "nxdomain CNAME ." and "*.nxdomain CNAME *." differ, so no SUBTREE merge.
            (K.WILDCARD, "nxdomain", NODATA),
            (K.EXACT, "rpzdrop", REFUSED),
            (K.ALLOW_EXACT, "rpzpassthru", None),
            (K.EXACT, "rra", SINK),
            (K.EXACT, "rra-zonename-suffix", SINK),
            (K.EXACT, "testdomain.rra", SINK),  # absolute owner, relativized to the zone
            (K.EXACT, "case.sensitive", SINK),  # owner names are case-insensitive
            (K.EXACT, "two.records", SINK),  # two AAAA records, one trigger
        ),
        [(9, DROP_NOTE)] + [(n, LOCAL_NOTE) for n in (11, 12, 13, 14, 16)],
    ),
    (
        "knot-resolver.policy.test.rpz.soa",
        rules((K.EXACT, "nxdomain-fqdn", NX), (K.EXACT, "nodata-fqdn", NODATA)),
        [],
    ),
]


@pytest.mark.parametrize(("name", "expected", "issues"), ZONE_FILES)
def test_real_zone_files(
    rpz_dir: Path, name: str, expected: list[RuleSpec], issues: list[tuple[int, str]]
) -> None:
    result = parse_file(rpz_dir / name)
    assert result.format == "rpz"
    assert result.rules == expected
    assert [(i.line, i.message) for i in result.issues] == issues


def test_hagezi_rpz_pairs_merge_into_subtrees(rpz_dir: Path) -> None:
    result = parse_file(rpz_dir / "hagezi.native.roku.rpz.txt")
    assert len(result.rules) == 73  # 146 entries: each name and its "*." twin
    assert result.rules[0] == RuleSpec(K.SUBTREE, "h4g3z1-native-roku.web.app", NX)
    assert {(r.kind, r.action) for r in result.rules} == {(K.SUBTREE, NX)}
    assert result.issues == []
    assert result.skipped == {"directive": 1, "zone": 2, "comment": 13}


# Unbound's RPZ scenarios embed their zones; each scenario's queries say what each
# trigger must do. (scenario, zone index, expected rules, expected issues).
SCENARIOS = [
    (
        "unbound.rpz_qname.rpl",
        0,
        rules(
            (K.EXACT, "a", NX),  # step 10: a. NXDOMAIN (the duplicate CNAME *. is ignored)
            (K.WILDCARD, "a", SINK),  # steps 20-50: *.a answers local TXT data
            (K.EXACT, "b.a", NODATA),  # step 30: NODATA
            (K.ALLOW_EXACT, "c.a", None),  # step 60: passthru
            (K.ALLOW_EXACT, "c.g", None),  # step 110: passthru beats the 2nd zone's block
        ),
        [(8, "second action nodata for a ignored; line 7 (nxdomain) is kept"), (9, LOCAL_NOTE)],
    ),
    (
        "unbound.rpz_qname.rpl",
        1,
        rules(
            (K.EXACT, "a", SINK),
            (K.EXACT, "d", SINK),  # step 80: local data
            (K.SUBTREE, "e", SINK),  # steps 82-85: e and *.e both rewrite (local data)
            (K.EXACT, "drop", REFUSED),
            (K.EXACT, "c.g", NX),
        ),
        [(7, LOCAL_NOTE), (8, LOCAL_NOTE), (9, LOCAL_NOTE), (11, DROP_NOTE), (12, TCP_ONLY)],
    ),
    (
        "unbound.rpz_respip.rpl",
        0,
        rules(
            (K.RESPONSE_IP, "10.0.0.0/8", NODATA),
            (K.RESPONSE_IP, "10.10.0.0/16", NX),
            (K.RESPONSE_IP, "10.10.10.0/24", REFUSED),
            (K.ALLOW_RESPONSE_IP, "10.10.10.10/32", None),
            (K.RESPONSE_IP, "2001:db8::/32", NODATA),
            (K.RESPONSE_IP, "2001:db8:aa::/48", NX),
            (K.RESPONSE_IP, "2001:db8:aa:bb::/64", REFUSED),
            (K.ALLOW_RESPONSE_IP, "2001:db8:aa:bb:cc::1/128", None),
            (K.RESPONSE_IP, "2001:db8:aa:bb:cc::123/128", SINK),
            (K.RESPONSE_IP, "2001:db8:aa:bb:cc::124/128", SINK),
        ),
        [(9, DROP_NOTE), (11, TCP_ONLY), (14, DROP_NOTE), (16, LOCAL_NOTE), (17, LOCAL_NOTE)],
    ),
    (
        "unbound.rpz_respip.rpl",
        1,
        rules(
            (K.RESPONSE_IP, "10.10.10.10/32", SINK),
            (K.RESPONSE_IP, "192.0.2.123/32", SINK),
            (K.RESPONSE_IP, "2001:db8:aa:bb:cc::1/128", SINK),
        ),
        [(7, LOCAL_NOTE), (8, LOCAL_NOTE), (9, LOCAL_NOTE)],
    ),
    (
        "unbound.rpz_passthru.rpl",
        1,
        rules((K.ALLOW_EXACT, "e.a", None)),
        [],
    ),
    (
        "unbound.rpz_passthru.rpl",
        2,
        rules((K.EXACT, "c.a", SINK), (K.RESPONSE_IP, "1.2.3.0/24", SINK)),
        [(7, LOCAL_NOTE), (8, CLIENT_IP), (9, CLIENT_IP), (10, LOCAL_NOTE)],
    ),
    (
        "unbound.rpz_cname_wild.rpl",
        0,
        rules((K.WILDCARD, "gotham5.a", SINK)),  # CNAME to another name: a rewrite
        [(7, LOCAL_NOTE), (8, NSDNAME)],
    ),
    (
        "unbound.rpz_signal_nxdomain_ra.rpl",
        0,
        rules((K.EXACT, "a.a", NX), (K.EXACT, "b.a", NX)),
        [(9, NSDNAME), (10, NSIP), (11, CLIENT_IP)],
    ),
    (
        "unbound.rpz_val_block.rpl",
        0,
        rules(
            (K.EXACT, "foo.org", NX),
            (K.EXACT, "foo2.org", NX),
            (K.EXACT, "foo3.org", NX),
            (K.EXACT, "bok.foo4.org", SINK),
            (K.EXACT, "www.foo5.org", SINK),
        ),
        [(10, LOCAL_NOTE), (11, LOCAL_NOTE)],
    ),
    (
        "unbound.rpz_nsdname.rpl",
        0,
        [],
        [(n, NSDNAME) for n in (7, 8, 9, 10)] + [(11, TCP_ONLY), (12, NSDNAME), (13, NSDNAME)],
    ),
    (
        "unbound.rpz_nsip.rpl",
        0,
        [],
        [(n, NSIP) for n in (7, 8, 9, 10)] + [(11, TCP_ONLY), (12, NSIP), (13, NSIP)],
    ),
    (
        "unbound.rpz_clientip.rpl",
        0,
        [],
        [(n, CLIENT_IP) for n in (7, 8, 9, 10)]
        + [(11, TCP_ONLY), (12, CLIENT_IP), (13, CLIENT_IP)],
    ),
]


@pytest.mark.parametrize(("scenario", "index", "expected", "issues"), SCENARIOS)
def test_unbound_scenario_zones(
    rpz_dir: Path,
    scenario: str,
    index: int,
    expected: list[RuleSpec],
    issues: list[tuple[int, str]],
    rpl_zones: Callable[[Path], list[str]],
) -> None:
    zone = rpl_zones(rpz_dir / scenario)[index]
    result = parse_text(zone, source=scenario)
    assert result.format == "rpz"
    assert result.rules == expected
    assert [(i.line, i.message) for i in result.issues] == issues


@pytest.mark.parametrize(
    ("owner", "network"),
    [
        ("32.1.2.0.192", "192.0.2.1/32"),
        ("24.0.2.0.192", "192.0.2.0/24"),
        ("8.0.0.0.10", "10.0.0.0/8"),
        ("128.1.zz.db8.2001", "2001:db8::1/128"),
        ("32.zz.db8.2001", "2001:db8::/32"),
        ("128.1.zz", "::1/128"),
        ("128.124.0.0.cc.bb.aa.db8.2001", "2001:db8:aa:bb:cc::124/128"),
        ("0.zz", "::/0"),
    ],
)
def test_rpz_ip_owner_names(owner: str, network: str) -> None:
    assert str(rpz_ip_network(owner)) == network
    canonical = ipaddress.ip_network(network)
    assert rpz_ip_network(rpz_ip_owner(canonical).removesuffix(".rpz-ip")) == canonical


@pytest.mark.parametrize(
    "owner", ["x.1.2.0.192", "32", "33.1.2.0.192", "128.zz.zz.1", "24.1.2.3.4.5.6.7.8.9"]
)
def test_malformed_rpz_ip_owners_are_rejected(owner: str) -> None:
    with pytest.raises(ValueError):
        rpz_ip_network(owner)


ZONE_LINES = [
    # (zone body after a standard header, expected rules, expected issue messages)
    ("a.example CNAME .\n*.a.example CNAME .", [(K.SUBTREE, "a.example", NX)], []),
    ("*.a.example CNAME .\na.example CNAME .", [(K.SUBTREE, "a.example", NX)], []),
    (
        "a.example CNAME *.\n*.a.example CNAME .",
        [(K.EXACT, "a.example", NODATA), (K.WILDCARD, "a.example", NX)],
        [],
    ),
    (
        "ok.example CNAME rpz-passthru.\n*.ok.example CNAME rpz-passthru.",
        [(K.ALLOW_SUBTREE, "ok.example", None)],
        [],
    ),
    ("self.example CNAME self.example.rpz.test.", [(K.ALLOW_EXACT, "self.example", None)], []),
    ("UPPER.Example. CNAME .", [], ["owner upper.example. lies outside the zone rpz.test."]),
    ("upper.example.rpz.test. 300 IN CNAME .", [(K.EXACT, "upper.example", NX)], []),
    ("x.example IN 300 CNAME .", [(K.EXACT, "x.example", NX)], []),
    ("x.example 1h CNAME .", [(K.EXACT, "x.example", NX)], []),
    ("bad_.exa mple CNAME .", [], ["invalid MPLE record"]),
    ("x.example CNAME", [], ["CNAME needs exactly one target"]),
    ("x.example A 999.1.1.1", [], ["invalid A record"]),
    ("x.example DNAME y.example.", [], ["DNAME record below the apex is not a policy"]),
    ("x.example NS ns.example.", [], ["NS record below the apex is not a policy"]),
    ("-bad-.example CNAME .", [], ["invalid character or hyphen position in label '-bad-'"]),
    ("$INCLUDE other.zone", [], ["unsupported zone-file directive $INCLUDE"]),
    ('x.example TXT "a ; b" ; comment', [(K.EXACT, "x.example", SINK)], [LOCAL_NOTE]),
    (
        "x.example MX ( 10\n  mail.example. )",
        [(K.EXACT, "x.example", SINK)],
        [LOCAL_NOTE],
    ),
    ("x.example CNAME .\n  CNAME .", [(K.EXACT, "x.example", NX)], []),
    ("bücher.example CNAME .", [(K.EXACT, "xn--bcher-kva.example", NX)], []),
    ("* CNAME .", [], ["invalid character or hyphen position in label '*'"]),
]


@pytest.mark.parametrize(("body", "expected", "messages"), ZONE_LINES)
def test_zone_lines(
    body: str, expected: list[tuple[RuleKind, str, Action | None]], messages: list[str]
) -> None:
    header = "$ORIGIN rpz.test.\n@ SOA ns.test. h.test. 1 2 3 4 5\n@ NS ns.test.\n"
    result = parse_text(header + body + "\n", format="rpz")
    assert result.rules == rules(*expected)
    got = [i.message for i in result.issues]
    assert len(got) == len(messages)
    assert all(g.startswith(m) for g, m in zip(got, messages, strict=True))
    assert all(i.line > 3 for i in result.issues)


def test_second_zone_in_one_file_is_reported(rpz_dir: Path) -> None:
    text = (rpz_dir / "unbound.rpz-nx.zone").read_text() + (
        rpz_dir / "unbound.rpz-one.zone"
    ).read_text()
    result = parse_text(text)
    assert result.issues[0].message == "second zone in one file: import each zone by itself"


# --- export --------------------------------------------------------------------------

EXPORT_CASES = [
    (RuleSpec(K.SUBTREE, "a.example"), NX, ["a.example CNAME .", "*.a.example CNAME ."]),
    (RuleSpec(K.EXACT, "a.example"), NODATA, ["a.example CNAME *."]),
    (RuleSpec(K.WILDCARD, "a.example"), REFUSED, ["*.a.example CNAME rpz-drop."]),
    (RuleSpec(K.EXACT, "a.example"), SINK, ["a.example A 0.0.0.0", "a.example AAAA ::"]),
    (
        RuleSpec(K.ALLOW_SUBTREE, "a.example"),
        NX,
        ["a.example CNAME rpz-passthru.", "*.a.example CNAME rpz-passthru."],
    ),
    (RuleSpec(K.RESPONSE_IP, "192.0.2.0/24"), NX, ["24.0.2.0.192.rpz-ip CNAME ."]),
    (
        RuleSpec(K.ALLOW_RESPONSE_IP, "2001:db8::1/128"),
        NX,
        ["128.1.zz.db8.2001.rpz-ip CNAME rpz-passthru."],
    ),
]


@pytest.mark.parametrize(("rule", "action", "lines"), EXPORT_CASES)
def test_export_rpz_lines(rule: RuleSpec, action: Action, lines: list[str]) -> None:
    text = export_rpz([(rule, action)])
    body = text.splitlines()[4:]
    assert body == lines
    dns.zone.from_text(text, origin="rpz.clearwall.", relativize=False)


def test_export_header_is_a_loadable_zone() -> None:
    text = export_rpz([], origin="rpz.example", serial=7, ttl=300, comment="policy of XX\nserial 7")
    assert text.splitlines()[:2] == ["; policy of XX", "; serial 7"]
    zone = dns.zone.from_text(text, origin="rpz.example.", relativize=False)
    soa = zone.get_soa()
    assert soa.serial == 7
    assert soa.minimum == 300


def test_export_resolves_owner_collisions() -> None:
    text = export_rpz(
        [
            (RuleSpec(K.EXACT, "a.example"), SINK),
            (RuleSpec(K.SUBTREE, "a.example"), NX),
            (RuleSpec(K.EXACT, "b.example"), NX),
            (RuleSpec(K.ALLOW_EXACT, "b.example"), NX),
            (RuleSpec(K.EXACT, "b.example"), REFUSED),
        ]
    )
    dns.zone.from_text(text, origin="rpz.clearwall.", relativize=False)  # one policy per owner
    assert parse_text(text).rules == rules(
        (K.SUBTREE, "a.example", NX), (K.ALLOW_EXACT, "b.example", None)
    )


def test_export_leaves_out_names_rpz_cannot_spell() -> None:
    text = export_rpz(
        [(RuleSpec(K.EXACT, "32.1.2.0.192.rpz-ip"), NX), (RuleSpec(K.EXACT, "a.example"), NX)]
    )
    assert "; 1 rules on names ending in an RPZ trigger label omitted" in text.splitlines()
    assert parse_text(text).rules == rules((K.EXACT, "a.example", NX))


def test_export_of_a_real_list_round_trips(data_dir: Path) -> None:
    source = parse_file(data_dir / "hagezi/personal.adblock.txt").rules
    text = export_rpz((rule, NX) for rule in source)
    back = parse_text(text)
    assert back.rules == [RuleSpec(r.kind, r.value, NX) for r in source]
    assert back.issues == []
    dns.zone.from_text(text, origin="rpz.clearwall.", relativize=False)


_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_name = (
    st.lists(_label, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda n: not n.rsplit(".", 1)[-1].startswith("rpz-"))  # RPZ cannot spell these
)
_name_kinds = st.sampled_from([k for k in RuleKind if not k.is_ip])
_networks = st.one_of(
    st.builds(
        ipaddress.IPv4Network,
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)),
        st.just(False),
    ),
    st.builds(
        ipaddress.IPv6Network,
        st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)),
        st.just(False),
    ),
)
_rule = st.one_of(
    st.builds(RuleSpec, _name_kinds, _name),
    st.builds(RuleSpec, st.sampled_from([K.RESPONSE_IP, K.ALLOW_RESPONSE_IP]), _networks.map(str)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_rule, st.sampled_from(list(Action))), max_size=25))
def test_export_then_import_is_identity(pairs: list[tuple[RuleSpec, Action]]) -> None:
    # One rule per value: colliding owners are resolved on export (tested above).
    unique: dict[str, tuple[RuleSpec, Action]] = {}
    for rule, action in pairs:
        unique.setdefault(rule.value, (rule, action))
    expected = [
        RuleSpec(rule.kind, rule.value, None if rule.kind.is_allow else action)
        for rule, action in unique.values()
    ]
    text = export_rpz(unique.values())
    dns.zone.from_text(text, origin="rpz.clearwall.", relativize=False)
    result = parse_text(text)
    assert result.format == "rpz"
    assert sorted(result.rules) == sorted(expected)
    assert all(i.message in (LOCAL_NOTE, DROP_NOTE) for i in result.issues)
