"""Upstream hardening: spoofed/late/garbage/truncating/slow/dead upstreams, failover, the
upstreams' EDEs, serve-stale."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from clearwall.config import CacheConfig, HostPort, UpstreamConfig
from clearwall.dnsserver.policyholder import StaticPolicy
from dnsserver.conftest import dns_config, order
from dnsserver.helpers import ask, ede
from dnsserver.upstreams import (
    NSD,
    FaultyTCPUpstream,
    FromElsewhere,
    Reply,
    Unbound,
    free_port,
    start_faulty,
)


def answer_for(
    query: bytes,
    ttl: int = 300,
    address: str = "192.0.2.99",
    qid: int | None = None,
    name: str | None = None,
) -> bytes:
    """A well-formed reply to ``query`` (optionally with a wrong ID or question)."""
    q = dns.message.from_wire(query)
    if name is not None:
        q = dns.message.make_query(name, "A")
        q.id = dns.message.from_wire(query).id
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, ttl, "IN", "A", address))
    if qid is not None:
        r.id = qid
    return r.to_wire()  # type: ignore[no-any-return]


def servfail(query: bytes) -> bytes:
    r = dns.message.make_response(dns.message.from_wire(query))
    r.set_rcode(dns.rcode.SERVFAIL)
    return r.to_wire()  # type: ignore[no-any-return]


def upstreams(*ports: int, timeout: float = 0.3, attempts: int = 1) -> UpstreamConfig:
    return UpstreamConfig(
        servers=tuple(HostPort("127.0.0.1", p) for p in ports), timeout=timeout, attempts=attempts
    )


async def test_spoofed_replies_are_ignored(gateway_factory) -> None:
    def behaviour(query: bytes) -> list[bytes]:
        qid = dns.message.from_wire(query).id
        return [
            answer_for(query, address="6.6.6.6", qid=(qid + 1) % 65536),  # wrong ID
            answer_for(query, address="6.6.6.7", name="other.example"),  # wrong question
            b"\x00garbage",
            answer_for(query),  # the real one
        ]

    _proto, transport, port = await start_faulty(behaviour)
    try:
        gw = await gateway_factory(dataclasses.replace(dns_config(port), upstream=upstreams(port)))
        r = await ask(gw, "www.example.org")
        assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.99"]
    finally:
        transport.close()


async def test_random_source_port_and_id_per_query(gateway_factory) -> None:
    proto, transport, port = await start_faulty(answer_for)
    try:
        gw = await gateway_factory(dataclasses.replace(dns_config(port), upstream=upstreams(port)))
        for i in range(20):
            await ask(gw, f"n{i}.example.org")
        ports = {src[1] for src in proto.sources}
        ids = {dns.message.from_wire(q).id for q in proto.queries}
        assert len(ports) >= 18 and len(ids) >= 18
        sent = dns.message.from_wire(proto.queries[0])
        assert sent.edns == 0 and sent.payload == 1232  # EDNS0 with a 1232-octet buffer
    finally:
        transport.close()


async def test_timeout_gives_servfail_with_ede_within_bound(gateway_factory) -> None:
    proto, transport, port = await start_faulty(lambda q: None)
    try:
        cfg = dataclasses.replace(
            dns_config(port), upstream=upstreams(port, timeout=0.2, attempts=2)
        )
        gw = await gateway_factory(cfg)
        start = time.monotonic()
        r = await ask(gw, "slow.example.org")
        assert time.monotonic() - start < 1.0
        assert r.rcode() == dns.rcode.SERVFAIL and ede(r)[0] == 22  # type: ignore[index]
        assert len(proto.queries) == 2  # both attempts
        assert gw.metrics.inflight == 0
    finally:
        transport.close()


async def test_failover_on_servfail_garbage_and_dead_server(nsd: NSD, gateway_factory) -> None:
    bad, t1, p1 = await start_faulty(servfail)
    junk, t2, p2 = await start_faulty(lambda q: q[:2] + b"\x80\x00garbage")
    dead = free_port()  # nothing listens: ICMP port unreachable
    try:
        cfg = dataclasses.replace(dns_config(nsd.port), upstream=upstreams(p1, p2, dead, nsd.port))
        gw = await gateway_factory(cfg)
        r = await ask(gw, "www.example.test")
        assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.1"]
        assert len(bad.queries) == 1 and len(junk.queries) == 1
    finally:
        t1.close()
        t2.close()


async def test_per_jurisdiction_upstreams(nsd: NSD, gateway_factory) -> None:
    proto, transport, port = await start_faulty(answer_for)
    try:
        up = dataclasses.replace(
            upstreams(nsd.port), per_jurisdiction={"xx": (HostPort("127.0.0.1", port),)}
        )
        cfg = dataclasses.replace(dns_config(nsd.port), upstream=up, default_jurisdiction="xx")
        gw = await gateway_factory(cfg)
        r = await ask(gw, "www.example.test")
        assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.99"] and proto.queries
    finally:
        transport.close()


async def test_serve_stale_when_every_upstream_fails(gateway_factory) -> None:
    state = {"up": True}

    def behaviour(query: bytes) -> bytes | None:
        return answer_for(query, ttl=1) if state["up"] else None

    _proto, transport, port = await start_faulty(behaviour)
    try:
        cfg = dataclasses.replace(
            dns_config(port), upstream=upstreams(port, timeout=0.2), cache=CacheConfig(stale_ttl=30)
        )
        gw = await gateway_factory(cfg)
        fresh = await ask(gw, "www.example.org")
        assert fresh.answer[0].ttl == 1
        state["up"] = False
        await asyncio.sleep(1.1)  # expired
        stale = await ask(gw, "www.example.org")
        assert stale.rcode() == dns.rcode.NOERROR
        assert [rr.to_text() for rr in stale.answer[0]] == ["192.0.2.99"]
        assert stale.answer[0].ttl == 30 and gw.metrics.stale_served == 1
        assert ede(stale) == (3, "")  # EDE 3 Stale Answer
        # Without serve-stale the same failure is SERVFAIL.
        cfg2 = dataclasses.replace(cfg, cache=CacheConfig(serve_stale=False))
        gw2 = await gateway_factory(cfg2)
        state["up"] = True
        await ask(gw2, "www.example.org")
        state["up"] = False
        await asyncio.sleep(1.1)
        assert (await ask(gw2, "www.example.org")).rcode() == dns.rcode.SERVFAIL
    finally:
        transport.close()


async def test_stale_answer_is_screened_by_the_policy_of_the_day(gateway_factory) -> None:
    """A stale answer made under an older policy is not served if its address is now blocked."""
    state = {"up": True}

    def behaviour(query: bytes) -> bytes | None:
        return answer_for(query, ttl=1) if state["up"] else None

    _proto, transport, port = await start_faulty(behaviour)
    try:
        cfg = dataclasses.replace(
            dns_config(port), upstream=upstreams(port, timeout=0.2), cache=CacheConfig(stale_ttl=30)
        )
        gw = await gateway_factory(cfg)
        for name in ("www.example.org", "other.example.org"):
            assert (await ask(gw, name)).answer[0].ttl == 1
        state["up"] = False
        # During the outage an order blocks the address www.example.org resolved to.
        gw.swap(StaticPolicy(ips={"192.0.2.99/32": [order(7)]}, version=2))
        await asyncio.sleep(1.1)  # both expired
        blocked = await ask(gw, "www.example.org")
        assert blocked.rcode() == dns.rcode.NXDOMAIN and not blocked.answer
        assert ede(blocked)[0] == 16  # type: ignore[index]  # Censored: a court order
        assert gw.metrics.stale_served == 0
        # An answer the new policy still allows is served stale as before.
        gw.swap(StaticPolicy(ips={"198.51.100.0/24": [order(8)]}, version=3))
        stale = await ask(gw, "other.example.org")
        assert [rr.to_text() for rr in stale.answer[0]] == ["192.0.2.99"]
        assert ede(stale) == (3, "") and gw.metrics.stale_served == 1
    finally:
        transport.close()


async def test_inflight_bound(gateway_factory) -> None:
    proto, transport, port = await start_faulty(lambda q: None)
    try:
        cfg = dataclasses.replace(
            dns_config(port), upstream=upstreams(port, timeout=0.5), max_inflight=3
        )
        gw = await gateway_factory(cfg)
        replies = await asyncio.gather(*(ask(gw, f"q{i}.example.org") for i in range(6)))
        assert all(r.rcode() == dns.rcode.SERVFAIL for r in replies)
        assert len(proto.queries) == 3  # the others were refused before leaving
    finally:
        transport.close()


def _reply(query: bytes, rdtype: str = "A", text: str = "192.0.2.99", ttl: int = 300) -> bytes:
    """The real reply to ``query``: one record of ``rdtype`` owned by the question name."""
    q = dns.message.from_wire(query)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, ttl, "IN", rdtype, text))
    return r.to_wire()  # type: ignore[no-any-return]


def _forge(query: bytes, field: str) -> Reply:
    """A reply carrying 6.6.6.6 that differs from a valid one in ``field`` only."""
    q = dns.message.from_wire(query)
    name_end = 12 + len(q.question[0].name.to_wire())
    if field == "type":  # a TYPE65 (0x41, 'A') question answered for a TYPE97 ('a') query
        raw = bytearray(query)
        raw[name_end : name_end + 2] = (65).to_bytes(2, "big")
        q = dns.message.from_wire(bytes(raw))
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A", "6.6.6.6"))
    wire = bytearray(r.to_wire())
    if field == "id":
        wire[0:2] = ((q.id + 1) % 65536).to_bytes(2, "big")
    elif field == "name":
        wire[13] = ord("y") if wire[13] != ord("y") else ord("z")  # first letter of the name
    elif field == "class":
        wire[name_end + 2 : name_end + 4] = (3).to_bytes(2, "big")  # CH
    elif field == "source-port":
        return FromElsewhere(bytes(wire))
    elif field == "source-address":
        return FromElsewhere(bytes(wire), "127.0.0.2")
    return bytes(wire)


@pytest.mark.parametrize(
    ("field", "rdtype"),
    [
        ("id", "A"),
        ("name", "A"),
        ("type", "TYPE97"),  # issue 14: '.lower()' folded QTYPE 65 into 97
        ("class", "A"),
        ("source-port", "A"),
        ("source-address", "A"),
    ],
)
async def test_a_reply_differing_in_any_rfc5452_field_is_ignored(
    gateway_factory, field: str, rdtype: str
) -> None:
    """RFC 5452 section 9.1: ID, question name, type and class, source address and port.
    The forged reply arrives first; the client must get the real one that follows."""
    real_rdata = "192.0.2.99" if rdtype == "A" else "\\# 4 c0000263"

    def behaviour(query: bytes) -> list[Reply]:
        return [_forge(query, field), _reply(query, rdtype, real_rdata)]

    proto, transport, port = await start_faulty(behaviour)
    try:
        gw = await gateway_factory(dataclasses.replace(dns_config(port), upstream=upstreams(port)))
        r = await ask(gw, "x.example.org", rdtype)
        assert r.rcode() == dns.rcode.NOERROR
        assert [rr.to_text() for rrset in r.answer for rr in rrset] == [real_rdata]
        assert len(proto.queries) == 1  # accepted at the first attempt, from the right reply
    finally:
        transport.close()


async def test_a_reply_arriving_after_its_query_timed_out_is_never_taken(gateway_factory) -> None:
    """The first attempt's (late) reply carries other data; it reaches neither the second
    attempt nor the cache."""
    loop = asyncio.get_running_loop()
    sent: list[bytes] = []

    def behaviour(query: bytes) -> None:
        sent.append(query)
        assert proto.transport is not None
        addr = proto.sources[-1]
        if len(sent) == 1:  # after the first attempt's timeout, during the second attempt
            loop.call_later(1.2, proto.transport.sendto, _reply(query, text="6.6.6.6"), addr)
        else:  # the second attempt's reply, after the late one
            loop.call_later(0.5, proto.transport.sendto, _reply(query), addr)

    proto, transport, port = await start_faulty(behaviour)
    try:
        cfg = dataclasses.replace(
            dns_config(port), upstream=upstreams(port, timeout=1.0, attempts=2)
        )
        gw = await gateway_factory(cfg)
        r = await ask(gw, "late.example.org")
        assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.99"]
        await asyncio.sleep(0.3)
        again = await ask(gw, "late.example.org")  # from the cache
        assert [rr.to_text() for rr in again.answer[0]] == ["192.0.2.99"]
        assert len(sent) == 2 and gw.metrics.cache_hits == 1
    finally:
        transport.close()


async def test_a_query_that_timed_out_leaves_nothing_for_the_next(gateway_factory) -> None:
    """A reply that comes after the client got SERVFAIL is dropped; the next query for the
    name is asked anew and gets what the upstream says then."""
    loop = asyncio.get_running_loop()
    state = {"late": True}

    def behaviour(query: bytes) -> bytes | None:
        if state["late"]:
            assert proto.transport is not None
            addr = proto.sources[-1]
            loop.call_later(0.5, proto.transport.sendto, _reply(query, text="6.6.6.6"), addr)
            return None
        return _reply(query)

    proto, transport, port = await start_faulty(behaviour)
    try:
        cfg = dataclasses.replace(dns_config(port), upstream=upstreams(port, timeout=0.3))
        gw = await gateway_factory(cfg)
        assert (await ask(gw, "gone.example.org")).rcode() == dns.rcode.SERVFAIL
        await asyncio.sleep(0.5)  # the late reply has come and gone
        state["late"] = False
        r = await ask(gw, "gone.example.org")
        assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.99"]
    finally:
        transport.close()


def _truncated(query: bytes) -> bytes:
    r = dns.message.make_response(dns.message.from_wire(query))
    r.flags |= dns.flags.TC
    return r.to_wire()  # type: ignore[no-any-return]


@pytest.mark.parametrize("with_nsd", [False, True], ids=["alone", "then-nsd"])
async def test_truncated_over_udp_and_tcp_fails_over_never_relays(
    nsd: NSD, gateway_factory, with_nsd: bool
) -> None:
    """TC=1 over UDP, then TC=1 and empty over TCP: that server cannot help. The next one
    answers; with no next one the client gets SERVFAIL, never an empty NOERROR."""
    proto, transport, port = await start_faulty(_truncated)
    tcp = FaultyTCPUpstream(_truncated)
    await tcp.start(port)
    try:
        ports = (port, nsd.port) if with_nsd else (port,)
        gw = await gateway_factory(
            dataclasses.replace(dns_config(port), upstream=upstreams(*ports))
        )
        r = await ask(gw, "www.example.test")
        assert len(proto.queries) == 1 and len(tcp.queries) == 1
        if with_nsd:
            assert r.rcode() == dns.rcode.NOERROR
            assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.1"]
        else:
            assert r.rcode() == dns.rcode.SERVFAIL and not r.answer
            assert ede(r) == (22, "")  # no upstream gave a usable answer
    finally:
        tcp.close()
        transport.close()


def _failure(rcode: int, *codes: int) -> Callable[[bytes], bytes]:
    def behaviour(query: bytes) -> bytes:
        r = dns.message.make_response(dns.message.from_wire(query))
        r.set_rcode(rcode)
        r.use_edns(0, options=[dns.edns.EDEOption(c, f"upstream {c}") for c in codes])
        return r.to_wire()  # type: ignore[no-any-return]

    return behaviour


def _edes(msg: dns.message.Message) -> list[tuple[int, str]]:
    return [(int(o.code), o.text or "") for o in msg.options if isinstance(o, dns.edns.EDEOption)]


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        ([(dns.rcode.SERVFAIL, (6,))], [(6, "upstream 6")]),  # DNSSEC Bogus reaches the client
        (
            [(dns.rcode.SERVFAIL, (6,)), (dns.rcode.REFUSED, (18, 6))],
            [(6, "upstream 6"), (18, "upstream 18")],  # each once, in the order given
        ),
        ([(dns.rcode.SERVFAIL, ())], []),  # it answered without EDE: none is made up
        ([(None, ()), (dns.rcode.SERVFAIL, (9,))], [(9, "upstream 9")]),  # one silent
        ([(None, ())], [(22, "")]),  # nobody answered: No Reachable Authority
    ],
)
async def test_upstream_edes_reach_the_client(
    gateway_factory, failures: list[tuple[int | None, tuple[int, ...]]], expected: list
) -> None:
    started = [
        await start_faulty(_failure(rcode, *codes) if rcode is not None else lambda q: None)
        for rcode, codes in failures
    ]
    try:
        ports = [port for _proto, _transport, port in started]
        gw = await gateway_factory(
            dataclasses.replace(dns_config(ports[0]), upstream=upstreams(*ports, timeout=0.2))
        )
        r = await ask(gw, "fail.example.org")
        assert r.rcode() == dns.rcode.SERVFAIL
        assert _edes(r) == expected
    finally:
        for _proto, transport, _port in started:
            transport.close()


async def test_a_validating_upstreams_bogus_reaches_the_client_as_ede_6(
    unbound: Unbound, gateway_factory
) -> None:
    """A real Unbound validating signed.test says SERVFAIL + EDE 6 for a bogus record:
    the client behind clearwall learns the same, not EDE 22."""
    gw = await gateway_factory(
        dataclasses.replace(dns_config(unbound.port), upstream=upstreams(unbound.port, timeout=2))
    )
    r = await ask(gw, "bogus.signed.test")
    assert r.rcode() == dns.rcode.SERVFAIL
    assert [code for code, _text in _edes(r)] == [6]
    good = await ask(gw, "www.signed.test", want_dnssec=True)
    assert good.flags & dns.flags.AD and good.answer
