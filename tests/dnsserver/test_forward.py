"""The fused miss path (dnsserver/forward.py, _forward.c) is the chain, only faster.

Two gateways share one moved clock and two real upstreams on loopback: one forwards
first-time names through the C path (the default), the other through the Python chain
(the reference, its fused miss path switched off). Hypothesis sends both the same query
mixes over real UDP: names whose upstream answer is data, NXDOMAIN, NODATA with and
without a SOA, a CNAME (and a loop), a blocked address, truncation (TCP retry), huge
TTLs, SERVFAIL (failover, and every server failing: the upstreams' EDEs, stale data),
garbage, silence, a dead server (ICMP), an OPT not last, AD and EDE options; names the
policy blocks and special-use names; every case mix, type, RD/CD/AD/DO and EDNS size;
clients of a jurisdiction with its own upstreams; time passing. Replies, counters, the
latency histogram, the rate limiter's buckets and the cache's records must be the same.

Then what RFC 5452 asks of the path (docs/dns/upstream.md): replies with a wrong ID,
question or source are never accepted, a reply after its attempt timed out is never
cached, and over 10,000 upstream queries ports and IDs spread over their whole ranges.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import math
import socket
import struct
from collections.abc import Callable
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.ports import free_port

from clearwall.config import CacheConfig, DNSConfig, HostPort, RateLimitConfig, UpstreamConfig
from clearwall.dnsserver.forward import available
from clearwall.dnsserver.gateway import Gateway, build_gateway
from clearwall.dnsserver.policyholder import StaticPolicy
from dnsserver.conftest import order

pytestmark = pytest.mark.skipif(not available(), reason="the C miss path needs Linux")


class Clock:
    """A clock the test moves (both gateways read it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _soa() -> dns.rrset.RRset:
    return dns.rrset.from_text("example.test.", 60, "IN", "SOA", "ns.test. h.test. 1 2 3 4 30")


def answer(query: bytes, role: str, tcp: bool = False) -> bytes | list[bytes] | None:
    """The test upstreams' reply, decided by the first label (``role``: "a" is the first
    server of the default list, "b" the second)."""
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    name = q.question[0].name
    rdtype = q.question[0].rdtype
    label = name.labels[0].lower().decode()
    data = {
        dns.rdatatype.A: "192.0.2.1",
        dns.rdatatype.AAAA: "2001:db8::1",
        dns.rdatatype.TXT: '"hello"',
        dns.rdatatype.HTTPS: "1 . alpn=h2",
        dns.rdatatype.MX: "10 mx.example.test.",
        dns.rdatatype.CAA: '0 issue "ca.example.net"',
        dns.rdatatype.NS: "ns.test.",  # minimal responses keep an NS answer whole
    }
    if label in ("sf", "sfall") and (role == "a" or label == "sfall"):
        r.set_rcode(dns.rcode.SERVFAIL)
        r.use_edns(0, options=[dns.edns.EDEOption(6 if role == "a" else 9)])
        return r.to_wire()  # type: ignore[no-any-return]
    if label == "garbage" and role == "a":
        return query[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:-11] + b"\xff"
    if label == "silent" and role == "a":
        return None
    if label == "nx":
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(_soa())
    elif label == "nodata":
        r.authority.append(_soa())
    elif label == "nosoa":
        pass
    elif label == "yx":
        r.set_rcode(dns.rcode.YXDOMAIN)
    elif label in ("alias", "loop"):
        target = "www.example.test." if label == "alias" else name.to_text()
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "CNAME", target))
        if label == "alias" and rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text("www.example.test.", 120, "IN", "A", "192.0.2.1"))
    elif label == "badip":
        r.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.66"))
    elif label == "big" and rdtype in (dns.rdatatype.A, dns.rdatatype.TXT):
        r.answer.append(
            dns.rrset.from_text_list(name, 300, "IN", "A", [f"10.0.0.{i}" for i in range(1, 41)])
        )
    elif label == "tc" and not tcp:
        r.flags |= dns.flags.TC
    elif rdtype in data:
        ttl = {"huge": 2**31 - 1, "over": 2**31 + 5, "short": 3}.get(label, 300)
        r.answer.append(dns.rrset.from_text(name, ttl, "IN", rdtype, data[rdtype]))
        if label == "two" and rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", "192.0.2.2"))
        if label == "wild":  # a wildcard answer's NSEC proof: minimal responses keep it
            r.authority.append(
                dns.rrset.from_text("*.example.test.", 300, "IN", "NSEC", "zz.example.test. A")
            )
        r.authority.append(dns.rrset.from_text("example.test.", 300, "IN", "NS", "ns.test."))
        r.additional.append(dns.rrset.from_text("ns.test.", 300, "IN", "A", "192.0.2.53"))
    if label == "ad":
        r.flags |= dns.flags.AD
    if label == "ede" and q.edns >= 0:
        r.use_edns(0, payload=1232, options=[dns.edns.EDEOption(3, "from upstream")])
    if label == "optmid" and q.edns >= 0 and r.additional:
        # The OPT record before the glue record: valid, but not where we put ours.
        r.use_edns(False)
        with_glue = r.to_wire(want_shuffle=False)
        r.additional.clear()
        without = r.to_wire(want_shuffle=False)
        opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
        return without[:10] + b"\x00\x02" + without[12:] + opt + with_glue[len(without) :]
    # Records in a fixed order: each gateway's upstream query must get the same bytes.
    out: bytes = r.to_wire(want_shuffle=False)
    if label == "case":  # 0x20: the question's name echoed in other case (RFC 4343)
        end = 12 + len(name.to_wire())
        out = out[:12] + out[12:end].upper() + out[end:]
    return out


class Upstream(asyncio.DatagramProtocol):
    """A UDP (and TCP) upstream on 127.0.0.1 answering with ``answer``."""

    def __init__(self, role: str, reply: Callable[..., Any] = answer) -> None:
        self.role = role
        self.reply = reply
        self.transport: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None
        self.seen: list[tuple[int, int]] = []  # (source port, query ID)
        self.port = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Reply as ``answer`` says (nothing, one datagram, or several)."""
        self.seen.append((addr[1], int.from_bytes(data[:2], "big")))
        out = self.reply(data, self.role)
        assert self.transport is not None
        for item in out if isinstance(out, list) else [out] if out else []:
            self.transport.sendto(item, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            out = self.reply(await reader.readexactly(size), self.role, tcp=True)
            if isinstance(out, bytes):
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> int:
        """Listen on a free port (UDP and TCP); return it."""
        loop = asyncio.get_running_loop()
        self.port = free_port()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", self.port)
        )
        self.tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", self.port)
        return self.port

    def close(self) -> None:
        """Stop listening."""
        if self.transport is not None:
            self.transport.close()
        if self.tcp is not None:
            self.tcp.close()


POLICY = StaticPolicy(
    names={"blocked.test": [order(1)], "xa-only.example.test": [order(4, jurisdiction="xa")]},
    ips={"192.0.2.66/32": [order(5)]},
    networks={"127.0.0.3/32": "xa"},
)
CLIENTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")  # 127.0.0.3: jurisdiction xa


def config(a: int, b: int, dead: int, minimal: bool, limited: bool) -> DNSConfig:
    """Both servers by default, xa's clients a dead port first; short timeouts."""
    return DNSConfig(
        listen=(HostPort("127.0.0.1", 0),),
        # Below the test SOA's 30 s, so that the cap decides negative lifetimes.
        cache=CacheConfig(negative_ttl=20),
        upstream=UpstreamConfig(
            servers=(HostPort("127.0.0.1", a), HostPort("127.0.0.1", b)),
            per_jurisdiction={"xa": (HostPort("127.0.0.1", dead), HostPort("127.0.0.1", b))},
            timeout=0.15,
            attempts=2,
            minimal_responses=minimal,
        ),
        # Never out of tokens (a dropped query would only make the test wait), but with
        # limited=True loopback pays them: the buckets must end up the same.
        ratelimit=RateLimitConfig(
            queries_per_second=1.0, burst=1000.0, exempt_loopback=not limited, slip=2
        ),
    )


async def exchange(
    port: int, data: bytes, source: str = "127.0.0.1", wait: float = 2.0
) -> bytes | None:
    """Send one datagram to 127.0.0.1:port from ``source``; the reply, or None."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, reply: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(reply)

    transport, _ = await loop.create_datagram_endpoint(
        Client, local_addr=(source, 0), remote_addr=("127.0.0.1", port)
    )
    try:
        transport.sendto(data)
        return await asyncio.wait_for(got, wait)
    except TimeoutError:
        return None
    finally:
        transport.close()


def make_query(
    name: str, rdtype: str, qid: int, rd: bool, cd: bool, ad: bool, payload: int | None, do: bool
) -> bytes:
    """A query as a stub would send it."""
    msg = dns.message.make_query(
        name, rdtype, use_edns=payload is not None, payload=payload or 512,
        want_dnssec=do and payload is not None,
    )  # fmt: skip
    msg.id = qid
    msg.flags = (
        (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0) | (dns.flags.AD if ad else 0)
    )
    out: bytes = msg.to_wire()
    return out


async def warm(port: int, source: str = "127.0.0.1") -> None:
    """Let the chain see a client once (it fills the ACL's and the jurisdiction
    handler's memos, which the C path reads), with a name answered locally."""
    assert await exchange(
        port, make_query("localhost", "A", 1, True, False, False, None, False), source
    )


def records(gw: Gateway) -> dict[bytes, bytes]:
    """The cache's records, the upstream's query ID in each masked (it is random)."""
    from clearwall.dnsserver.handlers.cache import Cache

    handler: Any = gw.chain
    while not isinstance(handler, Cache):
        handler = handler.next
    out = {}
    for key in handler.records.keys():  # noqa: SIM118 - an LRUStore is not iterable
        record = handler.records.get(key)
        assert record is not None
        n = struct.unpack_from("<H", record, 20)[0]
        at = 22 + 6 * n  # the header, the TTL offsets and values, then the reply's header
        out[key] = record[:at] + b"\0\0" + record[at + 2 :]
    out[b"blocks"] = b",".join(sorted(handler.blocks))
    return out


def buckets(gw: Gateway) -> dict[str, list[float]] | None:
    """The rate limiter's buckets."""
    from clearwall.dnsserver.handlers.ratelimit import RateLimiter

    handler: Any = gw.chain
    while handler is not None and not isinstance(handler, RateLimiter):
        handler = getattr(handler, "next", None)
    return None if handler is None else handler.fast_state.buckets


LABELS = [
    "www", "two", "nx", "nodata", "nosoa", "yx", "alias", "loop", "badip", "big", "tc",
    "sf", "sfall", "garbage", "huge", "over", "short", "ad", "ede", "case", "optmid", "wild",
]  # fmt: skip
names = st.one_of(
    st.sampled_from(LABELS).map(lambda label: f"{label}.example.test"),
    st.sampled_from(
        [
            "silent.example.test",
            "x.blocked.test",
            "xa-only.example.test",
            "localhost",
            "x.invalid",
            "we\\032ird.example.test",
            "www.example.test.",
        ]
    ),
    st.integers(0, 30).map(lambda i: f"n{i}.www.example.test"),
)
mixed = names.flatmap(
    lambda n: st.sampled_from(
        [n, n.upper(), "".join(c.upper() if i % 2 else c for i, c in enumerate(n))]
    )
)
query = st.tuples(
    mixed,
    st.sampled_from(["A", "A", "A", "AAAA", "TXT", "HTTPS", "MX", "CAA", "NS", "ANY", "PTR"]),
    st.integers(0, 0xFFFF),
    st.sampled_from([True, True, True, False]),  # RD
    st.booleans(),  # CD
    st.booleans(),  # AD
    st.sampled_from([None, None, 512, 1232, 4096]),  # EDNS payload
    st.booleans(),  # DO
    st.sampled_from(CLIENTS),
    st.sampled_from([0.0, 0.0, 0.0, 1.0, 5.0, 400.0, 90000.0]),  # time passing before it
)


async def compare(queries: list[tuple[Any, ...]], minimal: bool, limited: bool) -> dict[str, int]:
    """Send ``queries`` (twice each) to a gateway with the fused miss path and to one
    without, over real UDP, on one moved clock; assert the same replies, counters and
    cache; return the fused path's stats."""
    a, b = Upstream("a"), Upstream("b")
    cfg = config(await a.start(), await b.start(), free_port(), minimal, limited)
    clock = Clock()
    fused = build_gateway(cfg, POLICY, clock=clock)
    reference = build_gateway(cfg, POLICY, clock=clock)
    assert fused.server.dispatcher.miss is not None
    ref = reference.server
    ref.set_paths(reference.chain, ref.dispatcher.fast, None)  # the Python chain only
    await fused.start()
    await reference.start()
    try:
        ports = (fused.server.addresses[0][1], reference.server.addresses[0][1])
        for host in CLIENTS:  # so that the C path can take a client's first query
            for port in ports:
                await warm(port, host)
        for name, rdtype, qid, rd, cd, ad, payload, do, host, later in queries:
            clock.now += later
            data = make_query(name, rdtype, qid, rd, cd, ad, payload, do)
            for _ in range(2):  # the repeat is a cache hit, or a miss again
                got = await exchange(ports[0], data, host)
                want = await exchange(ports[1], data, host)
                assert got == want, (name, rdtype, host, rd, cd, ad, payload, do)
        for counter in ("queries", "blocks", "cache_hits", "cache_misses", "malformed",
                        "upstream_failures", "stale_served", "inflight", "_latency",
                        "_latency_sum"):  # fmt: skip
            assert getattr(fused.metrics, counter) == getattr(reference.metrics, counter), counter
        assert fused.metrics.inflight == 0
        assert records(fused) == records(reference)
        assert buckets(fused) == buckets(reference)
        miss = fused.server.dispatcher.miss
        assert miss is not None
        return miss.path.stats()
    finally:
        await fused.stop()
        await reference.stop()
        a.close()
        b.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(query, min_size=1, max_size=25), st.booleans(), st.booleans())
def test_fused_miss_path_answers_like_the_chain(
    queries: list[tuple[Any, ...]], minimal: bool, limited: bool
) -> None:
    stats = asyncio.run(compare(queries, minimal, limited))
    event(f"C path: finished {stats['completed'] > 0}, handed over {stats['handed_off'] > 0}")


@pytest.mark.parametrize("minimal", [True, False])
async def test_every_answer_shape_and_query_bit_like_the_chain(minimal: bool) -> None:
    """Each upstream answer shape for a first-time name, under every combination of the
    query bits that change an answer (AD, CD, DO, EDNS sizes) and both case forms, from
    both kinds of client: what random mixes may take long to meet."""
    flags = [
        (ad, cd, do, payload)
        for ad in (False, True)
        for cd in (False, True)
        for do in (False, True)
        for payload in (None, 512, 1232)
    ]
    queries = []
    for label in LABELS:
        for rdtype in ("A", "TXT", "NS"):
            for n, (ad, cd, do, payload) in enumerate(flags):
                name = f"{label}.v{n}{rdtype}.example.test"
                host = CLIENTS[n % 3]
                name = name.upper() if n % 5 == 0 else name
                queries.append((name, rdtype, n, True, cd, ad, payload, do, host, 0.0))
    stats = await compare(queries, minimal, limited=False)
    assert stats["completed"] > len(queries) // 2 and stats["handed_off"] > 0


async def test_the_fused_path_takes_plain_misses_and_hands_over_the_rest() -> None:
    """Plain first-time names are finished in C; a CNAME, truncation, a blocked address
    and total failure are handed to the Python continuation; blocked and special-use
    names are left to the chain."""
    a, b = Upstream("a"), Upstream("b")
    cfg = config(await a.start(), await b.start(), free_port(), True, False)
    gw = build_gateway(cfg, POLICY)
    await gw.start()
    try:
        miss = gw.server.dispatcher.miss
        assert miss is not None
        port = gw.server.addresses[0][1]
        # A client's first query goes through the chain, which fills the ACL's and the
        # jurisdiction handler's memos that the C path reads.
        await exchange(
            port, make_query("warm.example.test", "A", 9, True, False, False, None, False)
        )
        assert miss.path.stats()["taken"] == 0
        for i in range(5):
            await exchange(
                port, make_query(f"n{i}.www.example.test", "A", i, True, False, False, 1232, False)
            )
        assert miss.path.stats() == {"taken": 5, "handed_off": 0, "completed": 5}
        for label in ("alias", "tc", "badip", "sfall"):
            reply = await exchange(
                port, make_query(f"{label}.example.test", "A", 1, True, False, False, None, False)
            )
            assert reply is not None
        assert miss.path.stats() == {"taken": 9, "handed_off": 4, "completed": 5}
        for name in ("x.blocked.test", "localhost", "we\\032ird.example.test"):
            await exchange(port, make_query(name, "A", 1, True, False, False, None, False))
        assert miss.path.stats()["taken"] == 9
        assert miss.engine.pending == 0 and gw.metrics.inflight == 0
    finally:
        await gw.stop()
        a.close()
        b.close()


def _good(query: bytes, address: str = "192.0.2.99") -> bytes:
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    rdtype = q.question[0].rdtype
    rdata = address if rdtype == dns.rdatatype.A else "\\# 4 " + socket.inet_aton(address).hex()
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", rdtype, rdata))
    out: bytes = r.to_wire()
    return out


def _forged(query: bytes, how: str) -> bytes:
    """A reply to ``query`` that must not be accepted (RFC 5452 section 9.1)."""
    q = dns.message.from_wire(query)
    if how == "other name":
        q = dns.message.make_query("other.example.test", "A")
        q.id = dns.message.from_wire(query).id
    elif how == "other type":  # TYPE65 (HTTPS) for a TYPE97 query: 0x41 is "A", 0x61 "a"
        q = dns.message.make_query(q.question[0].name, dns.rdatatype.from_text("TYPE65"))
        q.id = dns.message.from_wire(query).id
        r = dns.message.make_response(q)
        r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "HTTPS", "1 ."))
        return r.to_wire()  # type: ignore[no-any-return]
    elif how == "other class":
        q = dns.message.make_query(q.question[0].name, q.question[0].rdtype, "CLASS42")
        q.id = dns.message.from_wire(query).id
    r = dns.message.make_response(q)
    r.answer.append(
        dns.rrset.from_text(
            q.question[0].name, 300, q.question[0].rdclass, q.question[0].rdtype, "\\# 4 06060606"
        )
    )
    out: bytes = r.to_wire()
    if how == "other id":
        out = ((int.from_bytes(out[:2], "big") + 1) % 65536).to_bytes(2, "big") + out[2:]
    elif how == "not a reply":
        out = out[:2] + bytes([out[2] & 0x7F]) + out[3:]
    elif how == "two questions":
        out = out[:4] + b"\x00\x02" + out[6:]
    return out


@pytest.mark.parametrize(
    "how",
    ["other id", "other name", "other type", "other class", "not a reply", "two questions",
     "other port", "other address"],
)  # fmt: skip
async def test_forged_replies_are_never_accepted(how: str) -> None:
    """Each forgery arrives before the real reply; the client gets the real one, from
    the C path, and the cache holds it."""
    loop = asyncio.get_running_loop()

    def reply(query: bytes, role: str, tcp: bool = False) -> None:
        assert upstream.transport is not None
        if how in ("other port", "other address"):
            # The right ID and question, from a source the query did not go to.
            source = "127.0.0.2" if how == "other address" else "127.0.0.1"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind((source, 0))
                other.sendto(_good(query, "6.6.6.6"), peer[0])
        else:
            upstream.transport.sendto(_forged(query, how), peer[0])
        loop.call_later(0.05, upstream.transport.sendto, _good(query), peer[0])

    peer: list[tuple[str, int]] = [("", 0)]
    upstream = Upstream("a", reply)
    port = await upstream.start()
    original = upstream.datagram_received

    def remember(data: bytes, addr: tuple[str, int]) -> None:
        peer[0] = addr
        original(data, addr)

    upstream.datagram_received = remember  # type: ignore[method-assign]
    cfg = dataclasses.replace(
        config(port, port, port, True, False),
        upstream=UpstreamConfig(servers=(HostPort("127.0.0.1", port),), timeout=1.0, attempts=1),
    )
    gw = build_gateway(cfg, POLICY)
    await gw.start()
    try:
        gw_port = gw.server.addresses[0][1]
        await warm(gw_port)
        rdtype = "TYPE97" if how == "other type" else "A"
        good = "192.0.2.99" if rdtype == "A" else "\\# 4 c0000263"
        data = make_query("forged.example.test", rdtype, 77, True, False, False, 1232, False)
        got = await exchange(gw_port, data)
        assert got is not None
        msg = dns.message.from_wire(got)
        assert [rr.to_text() for rr in msg.answer[0]] == [good], how
        miss = gw.server.dispatcher.miss
        assert miss is not None and miss.path.stats()["completed"] == 1
        again = dns.message.from_wire(await exchange(gw_port, data) or b"")
        assert [rr.to_text() for rr in again.answer[0]] == [good]
        assert len(upstream.seen) == 1  # the second answer came from the cache
    finally:
        await gw.stop()
        upstream.close()


async def test_a_late_reply_is_never_cached() -> None:
    """The first attempt's reply arrives after the attempt timed out, with other data:
    its socket is closed by then, so neither the client nor the cache ever see it."""
    loop = asyncio.get_running_loop()
    attempts: list[int] = []

    def reply(query: bytes, role: str, tcp: bool = False) -> None:
        attempts.append(1)
        assert upstream.transport is not None
        late = len(attempts) == 1
        delay = 0.4 if late else 0.0
        out = _good(query, "6.6.6.6" if late else "192.0.2.99")
        loop.call_later(delay, upstream.transport.sendto, out, upstream_peer[-1])

    upstream_peer: list[tuple[str, int]] = []
    upstream = Upstream("a", reply)
    port = await upstream.start()
    original = upstream.datagram_received

    def remember(data: bytes, addr: tuple[str, int]) -> None:
        upstream_peer.append(addr)
        original(data, addr)

    upstream.datagram_received = remember  # type: ignore[method-assign]
    cfg = dataclasses.replace(
        config(port, port, port, True, False),
        upstream=UpstreamConfig(servers=(HostPort("127.0.0.1", port),), timeout=0.2, attempts=2),
    )
    gw = build_gateway(cfg, POLICY)
    await gw.start()
    try:
        gw_port = gw.server.addresses[0][1]
        await warm(gw_port)
        data = make_query("late.example.test", "A", 5, True, False, False, None, False)
        first = dns.message.from_wire(await exchange(gw_port, data) or b"")
        assert [rr.to_text() for rr in first.answer[0]] == ["192.0.2.99"]
        await asyncio.sleep(0.5)  # the late reply has arrived (at a closed socket) by now
        again = dns.message.from_wire(await exchange(gw_port, data) or b"")
        assert [rr.to_text() for rr in again.answer[0]] == ["192.0.2.99"]
        assert len(attempts) == 2
        miss = gw.server.dispatcher.miss
        assert miss is not None and miss.path.stats()["completed"] == 1
    finally:
        await gw.stop()
        upstream.close()


@pytest.mark.parametrize("path", ["fused", "python"])
async def test_ports_and_ids_spread_over_10k_upstream_queries(path: str) -> None:
    """RFC 5452 section 9.2: a random ID and a fresh random source port per query. Over
    10,000 upstream queries the IDs and ports are as distinct as independent uniform
    draws are, they cover their ranges evenly, and ports times IDs make at least 2**30
    combinations an off-path forger must cover for each query."""
    upstream = Upstream("a", lambda q, role, tcp=False: _good(q))
    port = await upstream.start()
    cfg = dataclasses.replace(
        config(port, port, port, True, False),
        upstream=UpstreamConfig(servers=(HostPort("127.0.0.1", port),), timeout=2.0, attempts=1),
    )
    gw = build_gateway(cfg, POLICY)
    if path == "python":
        gw.server.set_paths(gw.chain, gw.server.dispatcher.fast, None)
    await gw.start()
    try:
        gw_port = gw.server.addresses[0][1]
        await warm(gw_port)
        total = 10_000
        for start in range(0, total, 200):
            got = await asyncio.gather(
                *(
                    exchange(
                        gw_port,
                        make_query(
                            f"q{i}.spread.test", "A", i % 65536, True, False, False, None, False
                        ),
                        wait=5.0,
                    )
                    for i in range(start, start + 200)
                )
            )
            assert all(got)
        assert len(upstream.seen) == total
        if path == "fused":
            miss = gw.server.dispatcher.miss
            assert miss is not None and miss.path.stats()["completed"] == total
            low, high = miss.engine.port_range
        else:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low, high = map(int, f.read().split())
    finally:
        await gw.stop()
        upstream.close()
    ports = [p for p, _ in upstream.seen]
    ids = [i for _, i in upstream.seen]
    span = high - low + 1
    assert span * 65536 >= 2**30, f"ephemeral range {low}-{high} is too narrow for 2**30"
    assert all(low <= p <= high for p in ports)

    def expected_distinct(space: int) -> float:
        return space * (1 - (1 - 1 / space) ** total)

    assert len(set(ids)) >= 0.97 * expected_distinct(65536)
    assert len(set(ports)) >= 0.97 * expected_distinct(span)
    # Even over the ranges: 16 bins each, none off by more than a quarter (the
    # probability of that for uniform draws is below 10**-8).
    for values, lo, size in ((ids, 0, 65536), (ports, low, span)):
        bins = collections.Counter((v - lo) * 16 // size for v in values)
        assert all(abs(bins[k] - total / 16) < total / 64 for k in range(16)), bins
    # Consecutive queries draw independently: no port is its predecessor plus a step.
    steps = collections.Counter((b - a) % span for a, b in itertools.pairwise(ports))
    assert steps.most_common(1)[0][1] < 20
    assert math.log2(span * 65536) >= 30


async def test_a_rebuilt_chain_replaces_the_fused_path_and_lets_the_old_one_go() -> None:
    """SIGHUP rebuilds the chain: the listener offers datagrams to the new fused path,
    and the replaced one (with the old chain's cache) is not kept once idle."""
    import gc
    import weakref

    from clearwall.dnsserver.workers import rebuild_chain

    a = Upstream("a")
    port = await a.start()
    cfg = config(port, port, port, True, False)
    gw = build_gateway(cfg, POLICY)
    await gw.start()
    try:
        old = gw.server.dispatcher.miss
        assert old is not None
        gone = weakref.ref(old.continuation.cache)  # the old chain's cache, which it holds
        del old
        rebuild_chain(gw, cfg)  # what SIGHUP does
        gc.collect()
        assert gone() is None and gw.server.dispatcher.retired == []
        new = gw.server.dispatcher.miss
        gw_port = gw.server.addresses[0][1]
        await warm(gw_port)
        data = make_query("after.www.example.test", "A", 3, True, False, False, None, False)
        assert dns.message.from_wire(await exchange(gw_port, data) or b"").answer
        assert new is not None and new.path.stats()["completed"] == 1
        assert new.engine is gw.server._engine  # the transport's, still registered
    finally:
        await gw.stop()
        a.close()


@pytest.mark.parametrize("where", ["default", "per_jurisdiction"])
def test_a_server_the_c_path_cannot_reach_is_refused_clearly(
    where: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """MissPath takes (host, port) pairs only: anything else (an encrypted upstream, which
    ``fuse_miss`` routes away from it) is a TypeError, so the fused path is left out with
    a warning, never a SystemError that fails the whole build."""
    import logging

    from clearwall.config import EncryptedUpstream
    from clearwall.dnsserver import forward

    tls = EncryptedUpstream.parse("tls://127.0.0.1:853#dns.test")
    cfg = config(free_port(), free_port(), free_port(), True, False)
    servers = (HostPort("127.0.0.1", free_port()), tls)
    upstream = (
        dataclasses.replace(cfg.upstream, servers=servers)
        if where == "default"
        else dataclasses.replace(cfg.upstream, per_jurisdiction={"xa": servers})
    )
    # As if the routes were handed over unfiltered (what fuse_miss did before).
    monkeypatch.setattr(forward, "_plain", lambda servers: servers)
    with caplog.at_level(logging.WARNING, logger="clearwall.dnsserver.forward"):
        gw = build_gateway(dataclasses.replace(cfg, upstream=upstream), POLICY)
    assert gw.server.dispatcher.miss is None
    assert "fused miss path not used: an upstream must be (host, port)" in caplog.text


async def test_the_query_log_records_what_the_fused_path_answers(tmp_path: Any) -> None:
    """With the query log on, the fused path still takes first-time names, and the log
    holds the same records as the chain's (answers finished in C, and those handed to
    the Python continuation: a CNAME, a blocked address, truncation, every upstream
    failing), with a latency measured from when the path took each query."""
    import collections

    from clearwall.config import LoggingConfig
    from clearwall.querylog import Filters, QueryLogReader

    a, b = Upstream("a"), Upstream("b")
    cfg = config(await a.start(), await b.start(), free_port(), True, False)
    clock = Clock()

    def logged(name: str) -> LoggingConfig:
        return LoggingConfig(query_log=True, query_log_dir=tmp_path / name)

    fused = build_gateway(cfg, POLICY, clock=clock, logging_config=logged("fused"))
    reference = build_gateway(cfg, POLICY, clock=clock, logging_config=logged("ref"))
    assert fused.handlers[0] == "querylog" and fused.server.dispatcher.miss is not None
    ref = reference.server
    ref.set_paths(reference.chain, ref.dispatcher.fast, None)  # the Python chain only
    await fused.start()
    await reference.start()
    try:
        ports = (fused.server.addresses[0][1], reference.server.addresses[0][1])
        for host in CLIENTS:
            for port in ports:
                await warm(port, host)
        labels = [f"n{i}.www" for i in range(6)] + ["nx", "alias", "badip", "tc", "sfall"]
        for n, label in enumerate(labels):
            data = make_query(f"{label}.example.test", "A", n, True, False, False, 1232, False)
            host = CLIENTS[n % 3]
            for _ in range(2):  # then a cache hit (the fast path's record)
                assert await exchange(ports[0], data, host) == await exchange(ports[1], data, host)
        stats = fused.server.dispatcher.miss.path.stats()  # type: ignore[union-attr]
        assert stats["completed"] >= 6 and stats["handed_off"] >= 4
    finally:
        await fused.stop()  # ships and writes what is buffered
        await reference.stop()
        a.close()
        b.close()

    def entries(name: str) -> collections.Counter[tuple[Any, ...]]:
        found: collections.Counter[tuple[Any, ...]] = collections.Counter()
        for e in QueryLogReader(tmp_path / name).search(Filters(), limit=1000):
            found[(e.client, e.jurisdiction, e.qname, e.qtype, e.decision, e.orders, e.rcode)] += (
                e.count
            )
        return found

    got, want = entries("fused"), entries("ref")
    assert got == want and sum(got.values()) == 2 * len(labels) + len(CLIENTS)
    # A blocked address (handed over) is recorded as the chain records it: its order.
    assert ("127.0.0.0/24", "xa", "badip.example.test", 1, "block", (5,), 3) in got
    lat = [e.latency_ms for e in QueryLogReader(tmp_path / "fused").search(Filters(), limit=1000)]
    assert all(0 < ms < 10_000 for ms in lat)
