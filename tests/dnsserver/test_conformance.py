"""DNS conformance gaps found by the differential against Unbound (issue 14, section 3).

AD without DO (RFC 6840 section 5.7), an OPT in FORMERR/NOTIMP replies to EDNS queries
(RFC 6891 sections 6.1.1 and 7), RD=0 answered from the cache only (RFC 1034 section
4.3.1), every relayed TTL within ``[dns.cache] min_ttl..max_ttl``, CNAME loops, minimal
responses. Real nsd and Unbound upstreams; hand-made packets over real sockets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import struct

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from clearwall.config import CacheConfig, HostPort, UpstreamConfig
from dnsserver.conftest import dns_config
from dnsserver.helpers import ask, ede
from dnsserver.upstreams import NSD, Unbound, start_faulty


def _upstream(port: int, timeout: float = 2.0) -> UpstreamConfig:
    return UpstreamConfig(servers=(HostPort("127.0.0.1", port),), timeout=timeout, attempts=1)


# -- AD without DO -------------------------------------------------------------------------


@pytest.mark.parametrize("edns", [0, -1], ids=["edns", "no-edns"])
async def test_ad_without_do_gets_the_validators_ad(
    unbound: Unbound, gateway_factory, edns: int
) -> None:
    """A stub asking with AD=1 and no DO (glibc trust-ad) sees AD from a validating
    upstream; one asking without AD does not, and the two never share a cache entry."""
    gw = await gateway_factory(
        dataclasses.replace(dns_config(unbound.port), upstream=_upstream(unbound.port))
    )
    plain = await ask(gw, "www.signed.test", use_edns=edns)
    assert plain.answer and not plain.flags & dns.flags.AD
    with_ad = await ask(gw, "www.signed.test", use_edns=edns, flags=dns.flags.RD | dns.flags.AD)
    assert with_ad.answer and with_ad.flags & dns.flags.AD
    assert not with_ad.answer[0].match(with_ad.answer[0].name, 1, dns.rdatatype.RRSIG, 0)
    again = await ask(gw, "www.signed.test", use_edns=edns, flags=dns.flags.RD | dns.flags.AD)
    assert again.flags & dns.flags.AD and gw.metrics.cache_hits == 1
    insecure = await ask(gw, "www.example.test", use_edns=edns, flags=dns.flags.RD | dns.flags.AD)
    assert insecure.answer and not insecure.flags & dns.flags.AD  # not signed: no AD


# -- OPT in FORMERR / NOTIMP ---------------------------------------------------------------

_Q = b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
_COOKIE = struct.pack("!HH", 10, 8) + bytes(range(1, 9))


def _header(flags: int, qd: int, ar: int) -> bytes:
    return struct.pack("!HHHHHH", 0x4242, flags, qd, 0, 0, ar)


def _opt(owner: bytes = b"\x00", do: bool = False, options: bytes = b"") -> bytes:
    ttl = 0x8000 if do else 0
    return owner + struct.pack("!HHIH", 41, 4096, ttl, len(options)) + options


RD = 0x0100


@pytest.mark.parametrize(
    ("packet", "rcode", "qdcount", "do"),
    [
        # RFC 7873 section 5.4: the cookie probe, QDCOUNT=0 with only a COOKIE option.
        (_header(RD, 0, 1) + _opt(options=_COOKIE), dns.rcode.FORMERR, 0, False),
        (_header(RD, 1, 1) + _Q + _opt(owner=b"\x01a\x00"), dns.rcode.FORMERR, 1, False),
        (_header(RD, 1, 2) + _Q + _opt() + _opt(), dns.rcode.FORMERR, 1, False),
        (_header(RD, 1, 2) + _Q + _opt(do=True) + _opt(), dns.rcode.FORMERR, 1, True),
        (_header(RD, 2, 1) + _Q + _Q + _opt(), dns.rcode.FORMERR, 2, False),
        (_header(RD | 3 << 11, 1, 1) + _Q + _opt(do=True), dns.rcode.NOTIMP, 1, True),
        (_header(RD | 15 << 11, 1, 1) + _Q + _opt(), dns.rcode.NOTIMP, 1, False),
    ],
    ids=["cookie-probe", "opt-owner", "two-opts", "two-opts-do", "qd2", "opcode3", "opcode15"],
)
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_formerr_and_notimp_carry_an_opt_for_edns_queries(
    nsd: NSD, gateway_factory, packet: bytes, rcode: int, qdcount: int, do: bool, tcp: bool
) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    host, port = gw.server.addresses[0]
    reply = await _exchange(host, port, packet, tcp)
    assert reply[:2] == b"\x42\x42" and reply[2] & 0x80
    assert reply[3] & 0x0F == rcode and (reply[2] >> 3) & 0x0F == (packet[2] >> 3) & 0x0F
    msg = dns.message.from_wire(reply)  # one OPT, owned by the root: a valid message
    assert msg.edns == 0 and msg.payload == 1232
    assert bool(msg.ednsflags & dns.flags.DO) == do
    assert len(msg.question) == qdcount and not msg.answer and not msg.authority


@pytest.mark.parametrize(
    "packet",
    [_header(RD, 0, 0), _header(RD | 3 << 11, 1, 0) + _Q, _header(RD, 1, 0) + b"\x05ab"],
    ids=["qd0", "opcode3", "bad-label"],
)
async def test_formerr_and_notimp_have_no_opt_without_edns(
    nsd: NSD, gateway_factory, packet: bytes
) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    reply = await _exchange(*gw.server.addresses[0], packet, False)
    assert reply[3] & 0x0F in (dns.rcode.FORMERR, dns.rcode.NOTIMP)
    assert reply[10:12] == b"\x00\x00"  # ARCOUNT 0: no OPT


async def _exchange(host: str, port: int, packet: bytes, tcp: bool) -> bytes:
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(packet).to_bytes(2, "big") + packet)
            size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 2), "big")
            return await reader.readexactly(size)
        finally:
            writer.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        sock.send(packet)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), 2)


# -- RD=0 ----------------------------------------------------------------------------------


def _answer(query: bytes) -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "192.0.2.99"))
    return r.to_wire()  # type: ignore[no-any-return]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
async def test_rd0_is_answered_from_the_cache_only(gateway_factory, tcp: bool) -> None:
    proto, transport, port = await start_faulty(_answer)
    try:
        gw = await gateway_factory(dataclasses.replace(dns_config(port), upstream=_upstream(port)))
        refused = await ask(gw, "www.example.org", flags=0, tcp=tcp)
        assert refused.rcode() == dns.rcode.REFUSED and ede(refused) == (20, "")
        assert not refused.flags & dns.flags.RD and refused.flags & dns.flags.RA
        assert proto.queries == []  # never sent upstream, with RD or without
        await ask(gw, "www.example.org", tcp=tcp)  # an RD=1 query fills the cache
        assert len(proto.queries) == 1
        for name in ("www.example.org", "WWW.example.ORG"):
            cached = await ask(gw, name, flags=0, tcp=tcp)
            assert cached.rcode() == dns.rcode.NOERROR
            assert [rr.to_text() for rr in cached.answer[0]] == ["192.0.2.99"]
            assert not cached.flags & dns.flags.RD  # RD is the query's (RFC 1035 4.1.1)
        rd1 = await ask(gw, "www.example.org", tcp=tcp)
        assert rd1.flags & dns.flags.RD
        assert len(proto.queries) == 1 and all(q[2] & 0x01 for q in proto.queries)
    finally:
        transport.close()


# -- TTL clamp -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cache", "expected"),
    [
        ("huge.example.test", CacheConfig(), 86_400),  # 2**31 - 1 upstream
        ("longttl.example.test", CacheConfig(), 86_400),  # 100000 upstream
        ("www.example.test", CacheConfig(max_ttl=120), 120),  # 300 upstream
        ("short.example.test", CacheConfig(min_ttl=30), 30),  # 2 upstream
        ("huge.example.test", CacheConfig(max_entries=0), 86_400),  # no cache: still capped
    ],
)
async def test_every_relayed_ttl_is_within_the_cache_bounds(
    nsd: NSD, gateway_factory, name: str, cache: CacheConfig, expected: int
) -> None:
    gw = await gateway_factory(dns_config(nsd.port, cache=cache))
    fresh = await ask(gw, name)
    assert [rrset.ttl for rrset in fresh.answer] == [expected]
    cached = await ask(gw, name)
    assert expected - 2 <= cached.answer[0].ttl <= expected


async def test_a_ttl_above_2_31_counts_as_zero(gateway_factory) -> None:
    """RFC 2181 section 8: a TTL with the top bit set is treated as zero (then raised to
    min_ttl), never relayed as a huge number."""

    def behaviour(query: bytes) -> bytes:
        reply = bytearray(_answer(query))
        # The query ends with an 11-octet OPT; the reply's answer starts where its question
        # ends, and the answer's TTL is 6 octets in (after its name pointer, type, class).
        ttl_at = len(query) - 11 + 6
        reply[ttl_at : ttl_at + 4] = (0x80000000).to_bytes(4, "big")
        return bytes(reply)

    _proto, transport, port = await start_faulty(behaviour)
    try:
        cfg = dataclasses.replace(dns_config(port), upstream=_upstream(port))
        gw = await gateway_factory(cfg)
        assert (await ask(gw, "top.example.org")).answer[0].ttl == 0
        cfg = dataclasses.replace(cfg, cache=CacheConfig(min_ttl=5))
        gw = await gateway_factory(cfg)
        assert (await ask(gw, "top.example.org")).answer[0].ttl == 5
    finally:
        transport.close()


# -- CNAME loops ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("loop1.example.test", dns.rcode.SERVFAIL),
        ("self.example.test", dns.rcode.SERVFAIL),
        ("chain.example.test", dns.rcode.NOERROR),  # a chain that ends is fine
        ("dangling.example.test", dns.rcode.NXDOMAIN),
    ],
)
async def test_a_cname_loop_is_servfail(nsd: NSD, gateway_factory, name: str, rcode: int) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    r = await ask(gw, name)
    assert r.rcode() == rcode
    if rcode == dns.rcode.SERVFAIL:
        assert not r.answer and ede(r) is None  # the upstream answered: no EDE 22


# -- minimal responses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "sections"),
    [
        ("mail.example.test", "MX", (1, 0, 0)),  # nsd adds NS and two glue records
        ("www.example.test", "A", (1, 0, 0)),
        ("nx.example.test", "A", (0, 1, 0)),  # the SOA stays (RFC 2308)
        ("www.example.test", "TXT", (0, 1, 0)),  # NODATA: the SOA stays
        ("example.test", "NS", (1, 0, 1)),  # an NS answer keeps its addresses
        ("dangling.example.test", "A", (1, 1, 0)),
    ],
)
@pytest.mark.parametrize("minimal", [True, False])
async def test_minimal_responses_as_unbound(
    nsd: NSD, gateway_factory, name: str, rdtype: str, sections: tuple[int, int, int], minimal: bool
) -> None:
    up = _upstream(nsd.port)
    if not minimal:  # the default is on
        up = dataclasses.replace(up, minimal_responses=False)
    gw = await gateway_factory(dns_config(nsd.port, upstream=up))
    for _ in range(2):  # fresh, then from the cache
        r = await ask(gw, name, rdtype)
        full = await dns.asyncquery.udp(
            dns.message.make_query(name, rdtype, use_edns=0), "127.0.0.1", port=nsd.port, timeout=2
        )
        got = (len(r.answer), len(r.authority), len(r.additional))
        assert got == (
            sections if minimal else tuple(map(len, (full.answer, full.authority, full.additional)))
        )
        assert r.edns == 0  # the OPT always stays
