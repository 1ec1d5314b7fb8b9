"""Block answers end to end: actions, EDE by basis, SDE JSON and its size rules."""

from __future__ import annotations

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.model import Action, AuthorityKind, Category
from dnsserver.conftest import dns_config, order
from dnsserver.helpers import ask, ede, sde
from dnsserver.upstreams import NSD

COURT = order(1, kind=AuthorityKind.COURT, category=Category.COURT_ORDER)
SECURITY = order(
    2,
    kind=AuthorityKind.OPERATOR,
    category=Category.MALWARE,
    contacts=("mailto:abuse@isp.example",),
)
SUBSCRIBER = order(3, kind=AuthorityKind.OPERATOR, category=Category.SUBSCRIBER_FILTER, contacts=())
SINK = order(4, kind=AuthorityKind.OPERATOR, category=Category.PHISHING, action=Action.SINKHOLE)
NODATA = order(5, kind=AuthorityKind.REGULATOR, category=Category.REGULATORY, action=Action.NODATA)
REFUSE = order(6, kind=AuthorityKind.COURT, category=Category.COURT_ORDER, action=Action.REFUSED)


def policy() -> StaticPolicy:
    """One name per kind of order."""
    return StaticPolicy(
        names={
            "court.test": [COURT],
            "malware.test": [SECURITY],
            "filtered.test": [SUBSCRIBER],
            "phish.test": [SINK],
            "nodata.test": [NODATA],
            "refused.test": [REFUSE],
            "blocked.example.test": [COURT],
        }
    )


@pytest.fixture
async def gw(nsd: NSD, gateway_factory):  # type: ignore[no-untyped-def]
    return await gateway_factory(dns_config(nsd.port), policy())


async def test_court_order_is_nxdomain_with_censored_and_sde(gw) -> None:  # type: ignore[no-untyped-def]
    r = await ask(gw, "www.court.test")
    assert r.rcode() == dns.rcode.NXDOMAIN
    code, _text = ede(r)  # type: ignore[misc]
    assert code == 16  # Censored
    data = sde(r)
    assert data["c"] == ["mailto:appeals@court.example"]
    assert "Order 1" in data["j"] and "Test Act s.1" in data["j"] and "T-1" in data["j"]
    assert "/orders/1" in data["j"]
    assert data["o"] == "clearwall operator" and data["l"] == "en"
    assert "s" not in data  # never a sub-error with Censored (draft section 7)
    # A SOA makes the negative answer short-lived downstream (RFC 2308).
    soa = r.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == 60 and soa[0].minimum == 60


async def test_operator_security_block_is_blocked_with_sub_error(gw) -> None:  # type: ignore[no-untyped-def]
    r = await ask(gw, "malware.test", "AAAA")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert ede(r)[0] == 15  # type: ignore[index]
    data = sde(r)
    assert data["s"] == 1 and data["c"] == ["mailto:abuse@isp.example"]  # 1: Malware


async def test_subscriber_filter_is_filtered(gw) -> None:  # type: ignore[no-untyped-def]
    r = await ask(gw, "a.b.filtered.test")
    assert ede(r)[0] == 17  # type: ignore[index]
    assert "c" not in sde(r)


async def test_sinkhole_answers_block_page_addresses(gw) -> None:  # type: ignore[no-untyped-def]
    a = await ask(gw, "login.phish.test", "A")
    assert a.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rr in a.answer[0]] == ["127.0.0.1"]
    assert a.answer[0].ttl == 60
    aaaa = await ask(gw, "login.phish.test", "AAAA")
    assert [rr.to_text() for rr in aaaa.answer[0]] == ["::1"]
    mx = await ask(gw, "login.phish.test", "MX")
    assert mx.rcode() == dns.rcode.NOERROR and not mx.answer
    assert ede(mx)[0] == 15  # type: ignore[index]


async def test_nodata_and_refused_actions(gw) -> None:  # type: ignore[no-untyped-def]
    r = await ask(gw, "nodata.test")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and ede(r)[0] == 16  # type: ignore[index]
    r = await ask(gw, "refused.test")
    assert r.rcode() == dns.rcode.REFUSED and ede(r)[0] == 16  # type: ignore[index]


async def test_client_without_edns_gets_plain_block(gw) -> None:  # type: ignore[no-untyped-def]
    r = await ask(gw, "court.test", use_edns=False)
    assert r.rcode() == dns.rcode.NXDOMAIN and r.edns < 0


async def test_sde_drops_j_and_o_before_overflowing_a_small_udp_size(
    nsd: NSD, gateway_factory
) -> None:
    long = order(
        9,
        kind=AuthorityKind.OPERATOR,
        category=Category.MALWARE,
        contacts=("mailto:abuse@isp.example",),
    )
    long = type(long)(**{**{f: getattr(long, f) for f in long.__slots__}, "title": "x" * 400})
    gw = await gateway_factory(dns_config(nsd.port), StaticPolicy(names={"big.test": [long]}))
    # 512 octets: the full JSON (400-octet title) does not fit, the compact form does.
    r = await ask(gw, "a-rather-long-label-to-use-up-space.big.test", payload=512)
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.flags & dns.flags.TC
    data = sde(r)
    assert "j" not in data and "o" not in data and "l" not in data
    assert data["s"] == 1 and data["c"] == ["mailto:abuse@isp.example"]  # 1: Malware
    # 1232 octets: everything fits.
    r = await ask(gw, "a-rather-long-label-to-use-up-space.big.test", payload=1232)
    assert sde(r)["j"].startswith("x" * 400)


async def test_block_over_udp_and_tcp_sockets(gw) -> None:  # type: ignore[no-untyped-def]
    host, port = gw.server.addresses[0]
    q = dns.message.make_query("court.test", "A", use_edns=0)
    for send in (dns.asyncquery.udp, dns.asyncquery.tcp):
        r = await send(q, host, port=port, timeout=2)
        assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 16  # type: ignore[index]
        assert r.id == q.id


async def test_allowed_names_are_forwarded(gw) -> None:  # type: ignore[no-untyped-def]
    r = await ask(gw, "www.example.test")
    assert r.rcode() == dns.rcode.NOERROR and ede(r) is None
    assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.1"]


async def test_cached_blocks_echo_each_clients_question(gw) -> None:  # type: ignore[no-untyped-def]
    for name in ("Court.TEST", "court.test", "court.test", "COURT.test"):
        r = await ask(gw, name)
        assert r.question[0].name.to_text() == name + "."
        assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 16  # type: ignore[index]
    assert gw.metrics.cache_hits == 3
    assert gw.metrics.blocks[1] == 4
