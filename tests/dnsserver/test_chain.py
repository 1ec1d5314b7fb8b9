"""The chain's handlers against a real nsd: cache, jurisdiction, response policy, ACL,
rate limit, ANY, truncation over UDP/TCP."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress

import dns.asyncquery
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from clearwall.config import DNSConfig, RateLimitConfig
from clearwall.dnsserver.gateway import build_gateway
from clearwall.dnsserver.handlers import CHAIN
from clearwall.dnsserver.memory import MemoryUpstream
from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.model import Action, AuthorityKind, Category, RuleKind
from clearwall.policy.model import Authority, CompiledOrder, Order, RuleSpec
from clearwall.policy.snapshot import PolicySnapshot
from dnsserver.conftest import FakeTime, dns_config, order
from dnsserver.helpers import ask, ede, through_chain
from dnsserver.upstreams import NSD

XX = order(7, jurisdiction="xx")
ALL = order(8, kind=AuthorityKind.OPERATOR, category=Category.MALWARE)


def test_chain_order_is_declared_once() -> None:
    assert [name for name, _ in CHAIN] == [
        "querylog",
        "responder",
        "acl",
        "ratelimit",
        "jurisdiction",
        "cache",
        "ddr",
        "special_use",
        "query_policy",
        "minimal_any",
        "response_policy",
        "upstream",
    ]


async def test_disabled_handlers_are_left_out(nsd: NSD, gateway_factory) -> None:
    cfg = dns_config(nsd.port, ratelimit=RateLimitConfig(enabled=False))
    gw = await gateway_factory(cfg)
    assert "ratelimit" not in gw.handlers and gw.handlers[0] == "responder"


async def test_cache_hit_counts_ttl_down_and_keeps_client_case(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    first = await ask(gw, "www.example.test")
    assert gw.metrics.cache_misses == 1
    hit = await ask(gw, "WwW.eXample.test")
    assert gw.metrics.cache_hits == 1
    assert hit.question[0].name.to_text() == "WwW.eXample.test."
    assert hit.answer[0].ttl <= first.answer[0].ttl
    nx = await ask(gw, "nothing.example.test")
    assert nx.rcode() == dns.rcode.NXDOMAIN
    await ask(gw, "nothing.example.test")
    assert gw.metrics.cache_hits == 2  # negative answers are cached too (RFC 2308)


async def test_a_lowercase_hit_after_a_mixed_case_miss_echoes_the_lowercase_question(
    nsd: NSD, gateway_factory
) -> None:
    """Clients that randomise case (0x20) compare the question byte for byte."""
    gw = await gateway_factory(dns_config(nsd.port))
    await ask(gw, "WWW.Example.TEST")
    hit = await ask(gw, "www.example.test")
    assert gw.metrics.cache_hits == 1
    assert hit.question[0].name.to_text() == "www.example.test."


async def test_an_answer_of_many_records_is_cached_whole() -> None:
    """More than 255 TTLs (a large RRset over TCP) fit a cache record."""
    records = [("A", 300, f"192.0.2.{i % 250}") for i in range(600)]
    upstream = MemoryUpstream({"many.example": records})
    gw = build_gateway(DNSConfig(), transport=upstream)
    query = dns.message.make_query("many.example", "A").to_wire()
    first = dns.message.from_wire(await gw.resolve(query, tcp=True))  # type: ignore[arg-type]
    asked = len(upstream.queries)  # UDP came back truncated, TCP brought the records
    again = dns.message.from_wire(await gw.resolve(query, tcp=True))  # type: ignore[arg-type]
    assert len(upstream.queries) == asked == 2 and gw.metrics.cache_hits == 1
    assert again.answer == first.answer and len(first.answer[0]) == 250


async def test_cached_ttl_decreases(nsd: NSD, gateway_factory) -> None:
    time = FakeTime()
    gw = await gateway_factory(dns_config(nsd.port), **time.clocks())
    first = await ask(gw, "www.example.test")
    time.advance(100)
    later = await ask(gw, "www.example.test")
    assert later.answer[0].ttl == first.answer[0].ttl - 100
    time.advance(500)  # past the 300 s TTL: asked again upstream
    misses = gw.metrics.cache_misses
    await ask(gw, "www.example.test")
    assert gw.metrics.cache_misses == misses + 1


async def test_a_name_blocked_then_allowed_is_cached_again(nsd: NSD, gateway_factory) -> None:
    """Forwarded answers and blocks are kept apart; a key lives in one of them only."""
    gw = await gateway_factory(dns_config(nsd.port))
    await ask(gw, "www.example.test")
    gw.swap(StaticPolicy(names={"www.example.test": [ALL]}))
    blocked = await ask(gw, "www.example.test")
    assert blocked.rcode() == dns.rcode.NXDOMAIN
    assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NXDOMAIN
    gw.swap(StaticPolicy())
    allowed = await ask(gw, "www.example.test")
    assert allowed.rcode() == dns.rcode.NOERROR and allowed.answer
    hits = gw.metrics.cache_hits
    await ask(gw, "www.example.test")
    assert gw.metrics.cache_hits == hits + 1


async def test_jurisdiction_scoping_and_per_jurisdiction_cache(nsd: NSD, gateway_factory) -> None:
    policy = StaticPolicy(names={"www.example.test": [XX]}, networks={"192.0.2.0/24": "xx"})
    cfg = dns_config(
        nsd.port,
        allow_networks=(
            ipaddress.ip_network("192.0.2.0/24"),
            ipaddress.ip_network("198.51.100.0/24"),
        ),
    )
    gw = await gateway_factory(cfg, policy)
    for _ in range(2):  # second round: both from cache, each for its own jurisdiction
        inside = await ask(gw, "www.example.test", host="192.0.2.7")
        outside = await ask(gw, "www.example.test", host="198.51.100.7")
        assert inside.rcode() == dns.rcode.NXDOMAIN and ede(inside)[0] == 16  # type: ignore[index]
        assert outside.rcode() == dns.rcode.NOERROR and outside.answer
    assert gw.metrics.cache_hits == 2


async def test_default_jurisdiction_applies_to_unknown_clients(nsd: NSD, gateway_factory) -> None:
    policy = StaticPolicy(names={"www.example.test": [XX]})
    gw = await gateway_factory(dns_config(nsd.port, default_jurisdiction="xx"), policy)
    assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NXDOMAIN


async def test_cname_target_blocked(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(
        dns_config(nsd.port), StaticPolicy(names={"blocked.example.test": [ALL]})
    )
    for name in ("alias.example.test", "chain.example.test"):  # one and two CNAME hops
        r = await ask(gw, name)
        assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 15, name  # type: ignore[index]
    assert (await ask(gw, "alias2.example.test")).rcode() == dns.rcode.NOERROR


async def test_response_ip_blocked(nsd: NSD, gateway_factory) -> None:
    policy = StaticPolicy(ips={"192.0.2.64/26": [ALL], "2001:db8::66/128": [ALL]})
    gw = await gateway_factory(dns_config(nsd.port), policy)
    assert (await ask(gw, "badip.example.test")).rcode() == dns.rcode.NXDOMAIN
    assert (await ask(gw, "badip6.example.test", "AAAA")).rcode() == dns.rcode.NXDOMAIN
    assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NOERROR


async def test_acl_refuses_outsiders_with_prohibited(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    r = await ask(gw, "www.example.test", host="203.0.113.5")
    assert r.rcode() == dns.rcode.REFUSED and ede(r)[0] == 18  # type: ignore[index]
    assert (await ask(gw, "www.example.test", host="::1")).rcode() == dns.rcode.NOERROR


async def test_rate_limit_slips_and_drops(nsd: NSD, gateway_factory) -> None:
    rl = RateLimitConfig(queries_per_second=1, burst=3, slip=2)
    cfg = dns_config(
        nsd.port, ratelimit=rl, allow_networks=(ipaddress.ip_network("198.51.100.0/24"),)
    )
    gw = await gateway_factory(cfg)
    query = dns.message.make_query("www.example.test", "A").to_wire()
    replies = [await through_chain(gw, query, host="198.51.100.9") for _ in range(8)]
    answered = [r for r in replies[:3]]
    assert all(
        r is not None and not dns.message.from_wire(r).flags & dns.flags.TC for r in answered
    )
    limited = replies[3:]
    truncated = [r for r in limited if r is not None]
    assert truncated and len(truncated) < len(limited)  # some slipped, the rest dropped
    assert all(dns.message.from_wire(r).flags & dns.flags.TC for r in truncated)
    # Another /24 is not affected; TCP is never limited.
    assert await through_chain(gw, query, host="198.51.100.9", tcp=True) is not None


async def test_any_is_answered_minimally(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    r = await ask(gw, "www.example.test", "ANY")
    assert r.answer[0].rdtype == dns.rdatatype.HINFO
    assert r.answer[0][0].cpu == b"RFC8482"


async def test_truncation_udp_then_tcp(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    host, port = gw.server.addresses[0]
    q = dns.message.make_query("big.example.test", "TXT", use_edns=0, payload=1232)
    udp = await dns.asyncquery.udp(q, host, port=port, timeout=3)
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = await dns.asyncquery.tcp(q, host, port=port, timeout=3)
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 20
    small = dns.message.make_query("many.example.test", "A", use_edns=False)
    r = await dns.asyncquery.udp(small, host, port=port, timeout=3)
    assert r.flags & dns.flags.TC  # 40 A records exceed 512 octets without EDNS


async def test_tcp_pipelining(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    host, port = gw.server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    queries = {}
    for i, name in enumerate(["www", "alias2", "ns1", "nothing", "www"]):
        q = dns.message.make_query(f"{name}.example.test", "A")
        q.id = 1000 + i
        queries[q.id] = name
        wire_q = q.to_wire()
        writer.write(len(wire_q).to_bytes(2, "big") + wire_q)
    await writer.drain()
    seen = set()
    for _ in queries:
        size = int.from_bytes(await reader.readexactly(2), "big")
        seen.add(dns.message.from_wire(await reader.readexactly(size)).id)
    assert seen == set(queries)
    writer.close()


async def test_tcp_idle_connections_are_closed(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port, tcp_idle_timeout=0.2))
    host, port = gw.server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed by the server
    writer.close()


async def test_metrics_exposition(nsd: NSD, gateway_factory) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from clearwall.dnsserver.metrics import DNSCollector

    gw = await gateway_factory(
        dns_config(nsd.port), StaticPolicy(names={"blocked.example.test": [ALL]})
    )
    await ask(gw, "www.example.test")
    await ask(gw, "www.example.test")
    await ask(gw, "blocked.example.test")
    registry = CollectorRegistry()
    registry.register(DNSCollector(lambda: [gw.metrics]))
    text = generate_latest(registry).decode()
    assert 'clearwall_dns_queries_total{decision="allow",qtype="A",rcode="NOERROR"} 2.0' in text
    assert 'clearwall_dns_blocks_total{authority="Test Court",category="malware",' in text
    assert "clearwall_dns_cache_hits_total 1.0" in text
    assert "clearwall_dns_cache_misses_total 2.0" in text
    assert "clearwall_dns_upstream_latency_seconds_count 1.0" in text
    assert "127.0.0.1" not in text  # no client addresses


async def test_ipv6_listener(nsd: NSD, gateway_factory) -> None:
    from clearwall.config import HostPort

    gw = await gateway_factory(
        dataclasses.replace(dns_config(nsd.port)), listen=(HostPort("::1", 0),)
    )
    host, port = gw.server.addresses[0]
    r = await dns.asyncquery.udp(
        dns.message.make_query("www.example.test", "A"), host, port=port, timeout=2
    )
    assert r.answer


async def test_an_equivalent_swap_keeps_forwarded_answers(nsd: NSD, gateway_factory) -> None:
    """A consolidated snapshot replaces the overlay it merges with the same verdicts:
    cached forwarded answers are still served; blocks are decided again (they cite the
    old snapshot's orders), and any other swap asks the upstream again."""
    policy = StaticPolicy(names={"blocked.example.test": [ALL]})
    gw = await gateway_factory(dns_config(nsd.port), policy)
    await ask(gw, "www.example.test")
    assert (await ask(gw, "blocked.example.test")).rcode() == dns.rcode.NXDOMAIN
    gw.swap(StaticPolicy(names={"blocked.example.test": [ALL]}), equivalent=True)
    hits, misses = gw.metrics.cache_hits, gw.metrics.cache_misses
    assert (await ask(gw, "www.example.test")).answer
    assert (gw.metrics.cache_hits, gw.metrics.cache_misses) == (hits + 1, misses)
    assert (await ask(gw, "blocked.example.test")).rcode() == dns.rcode.NXDOMAIN
    assert gw.metrics.cache_misses == misses + 1
    gw.swap(StaticPolicy(names={"blocked.example.test": [ALL]}))
    await ask(gw, "www.example.test")
    assert gw.metrics.cache_misses == misses + 2


def _dated(time: FakeTime, start_in: float, end_in: float | None, name: str) -> PolicySnapshot:
    """A snapshot whose one order (everywhere) blocks ``name`` from ``start_in`` seconds
    after ``time``'s now until ``end_in`` (None: no end)."""
    now = dt.datetime.fromtimestamp(time.wall(), dt.UTC)
    start = now + dt.timedelta(seconds=start_in)
    dated = Order(
        id=1,
        authority_id=1,
        title="Dated order",
        legal_basis="Test Act s.1",
        reference="T-1",
        category=Category.MALWARE,
        action=Action.NXDOMAIN,
        issued=start.date(),
        effective_from=start,
        expires=None if end_in is None else now + dt.timedelta(seconds=end_in),
        all_jurisdictions=True,
    )
    authority = Authority(1, "Operator", AuthorityKind.OPERATOR, "xx")
    rules = (RuleSpec(RuleKind.SUBTREE, name),)
    return PolicySnapshot.compile([CompiledOrder(dated, authority, rules)], [])


async def test_an_order_dated_for_later_overrules_cached_answers_at_its_hour(
    nsd: NSD, gateway_factory
) -> None:
    time = FakeTime()
    gw = await gateway_factory(
        dns_config(nsd.port), _dated(time, 3600, None, "www.example.test"), **time.clocks()
    )
    assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NOERROR  # cached, TTL 300
    time.advance(3599)  # the answer expired; the order is not in force yet
    assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NOERROR
    time.advance(1)  # its hour: the cached answer (asked 1 s ago) is not served
    blocked = await ask(gw, "www.example.test")
    assert blocked.rcode() == dns.rcode.NXDOMAIN
    host, port = gw.server.addresses[0]
    query = dns.message.make_query("www.example.test", "A")
    fast = await dns.asyncquery.udp(query, host, port=port, timeout=2)
    assert fast.rcode() == dns.rcode.NXDOMAIN  # over the listener too


async def test_a_block_ends_with_its_order_not_with_its_ttl(nsd: NSD, gateway_factory) -> None:
    time = FakeTime()
    gw = await gateway_factory(
        dns_config(nsd.port), _dated(time, -10, 30, "www.example.test"), **time.clocks()
    )
    for _ in range(2):  # the second from the cache (a block lives 60 s)
        assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NXDOMAIN
    time.advance(30)  # the order's end, well inside the block's 60 s
    assert (await ask(gw, "www.example.test")).rcode() == dns.rcode.NOERROR
