"""Special-use names and never-forwarded queries are answered by the gateway itself
(RFC 6761, RFC 6303), as Unbound answers them by default; nothing reaches the upstream.

The upstream here is a fault server that records every query it gets and answers each
with an A record, so anything forwarded shows twice: in its log and in the answer.
"""

from __future__ import annotations

import dataclasses

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from clearwall.config import ConfigError, HostPort, SpecialUseConfig, UpstreamConfig, load_config
from clearwall.dnsserver.handlers.special_use import ZONES
from dnsserver.conftest import dns_config
from dnsserver.helpers import ask, ede
from dnsserver.upstreams import start_faulty

SOA = "localhost. nobody.invalid. 1 3600 1200 604800 10800"
LOOPBACK6 = ".".join("1" + "0" * 31) + ".ip6.arpa"


def _everything(query: bytes) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "6.6.6.6"))
    return r.to_wire()  # type: ignore[no-any-return]


@pytest.fixture
async def recorder():  # type: ignore[no-untyped-def]
    """A fault upstream that answers everything (and records what it was asked)."""
    proto, transport, port = await start_faulty(_everything)
    yield proto, port
    transport.close()


def _config(port: int, **changes: object):  # type: ignore[no-untyped-def]
    up = UpstreamConfig(servers=(HostPort("127.0.0.1", port),), timeout=0.5, attempts=1)
    return dataclasses.replace(dns_config(port), upstream=up, **changes)


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "answer", "soa_owner"),
    [
        ("localhost", "A", dns.rcode.NOERROR, ["127.0.0.1"], None),
        ("localhost", "AAAA", dns.rcode.NOERROR, ["::1"], None),
        ("LocalHost", "A", dns.rcode.NOERROR, ["127.0.0.1"], None),
        ("www.localhost", "AAAA", dns.rcode.NOERROR, ["::1"], None),
        ("localhost", "SOA", dns.rcode.NOERROR, [SOA], None),
        ("localhost", "NS", dns.rcode.NOERROR, ["localhost."], None),
        ("localhost", "MX", dns.rcode.NOERROR, [], "localhost."),
        ("a.b.localhost", "TXT", dns.rcode.NOERROR, [], "localhost."),
        ("1.0.0.127.in-addr.arpa", "PTR", dns.rcode.NOERROR, ["localhost."], None),
        ("1.0.0.127.in-addr.arpa", "A", dns.rcode.NOERROR, [], "127.in-addr.arpa."),
        ("0.0.127.in-addr.arpa", "PTR", dns.rcode.NOERROR, [], "127.in-addr.arpa."),  # ENT
        ("2.0.0.127.in-addr.arpa", "PTR", dns.rcode.NXDOMAIN, [], "127.in-addr.arpa."),
        ("127.in-addr.arpa", "NS", dns.rcode.NOERROR, ["localhost."], None),
        (LOOPBACK6, "PTR", dns.rcode.NOERROR, ["localhost."], None),
        ("www.invalid", "A", dns.rcode.NXDOMAIN, [], "invalid."),
        ("invalid", "SOA", dns.rcode.NOERROR, [SOA], None),
        ("x.y.onion", "AAAA", dns.rcode.NXDOMAIN, [], "onion."),
        ("nas.home.arpa", "A", dns.rcode.NXDOMAIN, [], "home.arpa."),
        ("4.3.2.10.in-addr.arpa", "PTR", dns.rcode.NXDOMAIN, [], "10.in-addr.arpa."),
        ("1.1.31.172.in-addr.arpa", "PTR", dns.rcode.NXDOMAIN, [], "31.172.in-addr.arpa."),
        ("1.1.64.100.in-addr.arpa", "PTR", dns.rcode.NXDOMAIN, [], "64.100.in-addr.arpa."),
        ("1.d.f.ip6.arpa", "PTR", dns.rcode.NXDOMAIN, [], "d.f.ip6.arpa."),
        ("8.b.d.0.1.0.0.2.ip6.arpa", "SOA", dns.rcode.NOERROR, [SOA], None),
    ],
)
async def test_special_use_names_are_answered_locally(
    recorder, gateway_factory, name: str, rdtype: str, rcode: int, answer: list[str], soa_owner
) -> None:
    proto, port = recorder
    gw = await gateway_factory(_config(port))
    for do in (False, True):
        r = await ask(gw, name, rdtype, want_dnssec=do)
        assert r.rcode() == rcode
        assert [rr.to_text() for rrset in r.answer for rr in rrset] == answer
        assert all(rrset.ttl == 10800 and rrset.name.to_text() == name + "." for rrset in r.answer)
        if soa_owner is None:
            assert not r.authority
        else:
            assert [(a.name.to_text().lower(), a.rdtype, a[0].to_text()) for a in r.authority] == [
                (soa_owner, dns.rdatatype.SOA, SOA)
            ]
        assert r.flags & dns.flags.AA and r.flags & dns.flags.RA and not r.flags & dns.flags.AD
        assert bool(r.ednsflags & dns.flags.DO) == do and ede(r) is None
    assert proto.queries == []


@pytest.mark.parametrize(
    "name",
    ["notlocalhost", "localhost.example.org", "1.1.32.172.in-addr.arpa", "invalid.example.org"],
)
async def test_names_that_only_look_special_are_forwarded(
    recorder, gateway_factory, name: str
) -> None:
    proto, port = recorder
    gw = await gateway_factory(_config(port))
    r = await ask(gw, name)
    assert [rr.to_text() for rr in r.answer[0]] == ["6.6.6.6"] and len(proto.queries) == 1


async def test_a_label_holding_a_dot_is_not_a_zone_boundary(recorder, gateway_factory) -> None:
    """'a.localhost' as one label (a dot inside it) is a top-level name, not below
    localhost: it is forwarded."""
    proto, port = recorder
    gw = await gateway_factory(_config(port))
    msg = dns.message.make_query(dns.name.Name([b"a.localhost", b""]), "A", use_edns=0)
    r = await ask_wire(gw, msg)
    assert [rr.to_text() for rr in r.answer[0]] == ["6.6.6.6"] and len(proto.queries) == 1


async def ask_wire(gw, msg: dns.message.Message) -> dns.message.Message:  # type: ignore[no-untyped-def]
    from dnsserver.helpers import through_chain

    reply = await through_chain(gw, msg.to_wire())
    assert reply is not None
    return dns.message.from_wire(reply)


@pytest.mark.parametrize(
    ("name", "rdtype", "rdclass", "rcode", "ra"),
    [
        ("version.bind", "TXT", "CH", dns.rcode.REFUSED, True),
        ("id.server", "TXT", "CH", dns.rcode.REFUSED, True),
        ("hostname.bind", "TXT", "CH", dns.rcode.REFUSED, True),
        ("www.example.org", "A", "HS", dns.rcode.REFUSED, True),
        ("www.example.org", "A", "NONE", dns.rcode.REFUSED, True),
        ("www.example.org", "A", "CLASS42", dns.rcode.REFUSED, True),
        ("example.org", "AXFR", "IN", dns.rcode.REFUSED, False),
        ("example.org", "IXFR", "IN", dns.rcode.REFUSED, False),
        ("www.example.org", "TSIG", "IN", dns.rcode.FORMERR, False),
        ("www.example.org", "TKEY", "IN", dns.rcode.FORMERR, False),
        ("www.example.org", "OPT", "IN", dns.rcode.FORMERR, False),
        ("www.example.org", "MAILA", "IN", dns.rcode.FORMERR, False),
        ("www.example.org", "TYPE128", "IN", dns.rcode.FORMERR, False),
    ],
)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_never_forwarded_queries_are_refused_as_unbound_does(
    recorder,
    gateway_factory,
    name: str,
    rdtype: str,
    rdclass: str,
    rcode: int,
    ra: bool,
    tcp: bool,
) -> None:
    """Other classes (CHAOS would reveal the upstream's software and host), zone
    transfers and meta-types never leave the gateway; no EDE, as Unbound."""
    proto, port = recorder
    gw = await gateway_factory(_config(port))
    msg = dns.message.make_query(name, rdtype, rdclass, use_edns=0, want_dnssec=True)
    msg.flags |= dns.flags.CD
    r = dns.message.from_wire(await _resolve(gw, msg, tcp))
    assert r.rcode() == rcode and not r.answer and ede(r) is None
    assert bool(r.flags & dns.flags.RA) == ra and r.flags & dns.flags.RD and r.flags & dns.flags.CD
    assert r.ednsflags & dns.flags.DO and r.question[0].rdclass == msg.question[0].rdclass
    assert proto.queries == []


async def _resolve(gw, msg: dns.message.Message, tcp: bool) -> bytes:  # type: ignore[no-untyped-def]
    reply = await gw.resolve(msg.to_wire(), tcp=tcp)
    assert reply is not None
    return reply  # type: ignore[no-any-return]


async def test_any_for_a_special_name_gets_the_rfc8482_answer(recorder, gateway_factory) -> None:
    proto, port = recorder
    gw = await gateway_factory(_config(port))
    r = await ask(gw, "localhost", "ANY")
    assert r.answer[0].rdtype == dns.rdatatype.HINFO and proto.queries == []


async def test_rd0_for_a_special_name_is_answered(recorder, gateway_factory) -> None:
    proto, port = recorder
    gw = await gateway_factory(_config(port))
    r = await ask(gw, "localhost", flags=0)
    assert [rr.to_text() for rr in r.answer[0]] == ["127.0.0.1"] and not r.flags & dns.flags.RD
    assert proto.queries == []


async def test_forwarded_zones_go_upstream(recorder, gateway_factory) -> None:
    proto, port = recorder
    config = _config(port, special_use=SpecialUseConfig(forward=("10.in-addr.arpa.", "HOME.arpa")))
    gw = await gateway_factory(config)
    for name in ("4.3.2.10.in-addr.arpa", "nas.home.arpa"):
        assert [rr.to_text() for rr in (await ask(gw, name)).answer[0]] == ["6.6.6.6"]
    assert (await ask(gw, "x.invalid")).rcode() == dns.rcode.NXDOMAIN  # the others stay
    assert len(proto.queries) == 2
    assert config.special_use.forward == ("10.in-addr.arpa", "home.arpa")


def test_forward_names_only_built_in_zones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text('[dns.special_use]\nforward = ["home.arpa", "example.com"]\n')
    with pytest.raises(ConfigError, match=r"\[dns.special_use\] forward: 'example.com'"):
        load_config(path)
    path.write_text('[dns.special_use]\nforward = "home.arpa"\n')
    assert load_config(path).dns.special_use.forward == ("home.arpa",)
    path.write_text("[dns.special_use]\nforward = [1]\n")
    with pytest.raises(ConfigError, match="list of strings"):
        load_config(path)


def test_the_zone_table_is_unbounds() -> None:
    """The same 101 zones Unbound 1.17 lists by default (``unbound-control
    list_local_zones``), less ``test.``: see the module docstring."""
    assert len(ZONES) == 101
    assert {"localhost", "127.in-addr.arpa", "invalid", "onion", "home.arpa"} <= set(ZONES)
    assert "test" not in ZONES
