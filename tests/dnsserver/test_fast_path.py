"""The UDP fast path is the general chain, only faster: same replies, same counters.

Two identical chains see the same query sequence on the same clock; one answers the
way the UDP listener does (fast path first, the chain when it declines), the other
always through the chain. Hypothesis varies names (blocked, allowed, negative,
special-use, a CNAME loop, huge TTLs, case), types (HTTPS and SVCB among them), classes,
header bits (RD=0 and AD included), EDNS, clients (loopback, rate-limited, in a
jurisdiction's network, refused) and time; and the ACL follows policy swaps that add or
remove a network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearwall.config import RateLimitConfig
from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers import build
from clearwall.dnsserver.handlers.base import FastPath, Handler, Services
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.dnsserver.policyholder import PolicyHolder, StaticPolicy
from clearwall.dnsserver.server import early_reply
from clearwall.model import Action, AuthorityKind, Category
from dnsserver.conftest import dns_config, order


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """An in-test upstream: A/AAAA/HTTPS/SVCB data for allowed names (TTL 2**31 - 1 for
    ``huge.``, with an authority NS and glue that minimal responses drop), a CNAME loop
    for ``loop.``, NXDOMAIN + SOA for ``nx.``."""

    async def udp(self, server, query, timeout, check):  # type: ignore[no-untyped-def]
        msg = dns.message.from_wire(query)
        reply = dns.message.make_response(msg)
        qname = msg.question[0].name
        rdtype = msg.question[0].rdtype
        ttl = 2**31 - 1 if qname.labels[0] == b"huge" else 300
        data = {
            dns.rdatatype.A: "192.0.2.1",
            dns.rdatatype.AAAA: "2001:db8::1",
            dns.rdatatype.HTTPS: "1 . alpn=h2",
            dns.rdatatype.SVCB: "1 svc.example.net.",
        }
        if qname.labels[0] == b"nx":
            reply.set_rcode(dns.rcode.NXDOMAIN)
            reply.authority.append(
                dns.rrset.from_text("test.", 60, "IN", "SOA", "ns.test. h.test. 1 2 3 4 30")
            )
        elif qname.labels[0] == b"loop":
            reply.answer.append(dns.rrset.from_text(qname, 300, "IN", "CNAME", qname.to_text()))
        elif rdtype in data:
            reply.answer.append(dns.rrset.from_text(qname, ttl, "IN", rdtype, data[rdtype]))
            reply.authority.append(dns.rrset.from_text("test.", 300, "IN", "NS", "ns.test."))
            reply.additional.append(dns.rrset.from_text("ns.test.", 300, "IN", "A", "192.0.2.53"))
        out: bytes = reply.to_wire()
        assert check(out)
        return out

    async def tcp(self, server, query, timeout):  # type: ignore[no-untyped-def]
        raise OSError("no TCP here")


POLICY = StaticPolicy(
    names={
        "blocked.test": [order(1)],
        "sink.test": [
            order(2, kind=AuthorityKind.OPERATOR, category=Category.MALWARE, action=Action.SINKHOLE)
        ],
        "nodata.test": [order(3, action=Action.NODATA)],
        "xa-only.test": [order(4, jurisdiction="xa")],
    },
    networks={"10.77.1.0/24": "xa"},
)
# allowed (loopback, allow_networks twice, a jurisdiction's network), then not allowed
CLIENTS = ("127.0.0.1", "192.0.2.7", "192.0.2.99", "10.77.1.20", "198.51.100.9")


def chain(
    clock: Clock,
    fuse: bool = True,
    ratelimit: bool = True,
    holder: PolicyHolder | None = None,
) -> tuple[Handler, FastPath | None, DNSMetrics]:
    config = dataclasses.replace(
        dns_config(53),
        allow_networks=(ipaddress.ip_network("192.0.2.0/24"),),
        ratelimit=RateLimitConfig(enabled=ratelimit, queries_per_second=2.0, burst=3.0, slip=2),
    )
    metrics = DNSMetrics()
    services = Services(config, holder or PolicyHolder(POLICY), metrics, Upstream(), clock)
    entry, _names, fast = build(services, fuse=fuse)
    return entry, fast, metrics


async def general(entry: Handler, metrics: DNSMetrics, data: bytes, host: str) -> bytes | None:
    q, early = early_reply(data, metrics)
    if q is None:
        return early
    ctx = Context(data, host, 5353, False, q)
    result = entry(ctx)
    if not isinstance(result, Answer):
        await result
    return ctx.reply


names = st.sampled_from(
    [
        "www.example.test",
        "x.blocked.test",
        "sink.test",
        "a.nodata.test",
        "nx.example.test",
        "xa-only.test",
        "huge.example.test",
        "loop.example.test",
        "localhost",
        "x.invalid",
        "1.0.0.127.in-addr.arpa",
    ]
).map(lambda n: "".join(c.upper() if i % 3 == 0 else c for i, c in enumerate(n)))
query = st.tuples(
    st.one_of(names, names.map(str.lower), names.map(str.lower)),
    st.sampled_from(["A", "AAAA", "TXT", "HTTPS", "SVCB", "PTR"]),
    st.integers(0, 0xFFFF),  # ID
    st.booleans(),  # RD
    st.booleans(),  # CD
    st.sampled_from([None, 512, 1232, 4096]),  # EDNS payload (None: no EDNS)
    st.booleans(),  # DO
    st.sampled_from(CLIENTS),
    st.sampled_from([0.0, 0.0, 0.0, 0.3, 1.0, 400.0]),  # time passing before it
    st.sampled_from(["IN", "IN", "IN", "CH"]),  # class
    st.booleans(),  # AD
)


def wire(
    name: str,
    rdtype: str,
    qid: int,
    rd: bool,
    cd: bool,
    payload: int | None,
    do: bool,
    rdclass: str = "IN",
    ad: bool = False,
) -> bytes:
    msg = dns.message.make_query(
        name,
        rdtype,
        rdclass,
        use_edns=payload is not None,
        payload=payload or 512,
        want_dnssec=do and payload is not None,
    )
    msg.id = qid
    msg.flags = (
        (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0) | (dns.flags.AD if ad else 0)
    )
    out: bytes = msg.to_wire()
    return out


def cacheable(name: str, rdtype: str, rd: bool, rdclass: str) -> bool:
    """Whether the answer is one the cache keeps, so that its exact repeats go fast.

    Blocks are, whatever RD says. With RD=1, NXDOMAIN with an SOA is, and so is data
    (A/AAAA/HTTPS/SVCB); with RD=0 nothing is fetched (REFUSED unless cached). The
    upstream's TXT answer for an allowed name is NODATA without an SOA, which RFC 2308
    section 5 says not to cache; special-use names, other classes and a CNAME loop are
    answered anew each time: their repeats rightly go through the chain.
    """
    name = name.lower()
    if rdclass != "IN" or name.startswith(("loop.", "localhost", "x.invalid", "1.0.0.127")):
        return False
    # Asked only for loopback clients (see the caller): xa-only.test is xa's block, so
    # loopback gets it forwarded, and with RD=0 refused (not cached).
    blocked = name.endswith(("blocked.test", "sink.test", "nodata.test"))
    return blocked or (rd and (name.startswith("nx.") or rdtype in ("A", "AAAA", "HTTPS", "SVCB")))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(query, min_size=1, max_size=60))
def test_fast_path_answers_like_the_chain(queries: list[tuple]) -> None:  # type: ignore[type-arg]
    async def run() -> None:
        clock = Clock()
        fast_entry, fast, fast_metrics = chain(clock)
        slow_entry, _, slow_metrics = chain(clock)
        assert fast is not None
        served = 0
        for name, rdtype, qid, rd, cd, payload, do, host, later, rdclass, ad in queries:
            clock.now += later
            data = wire(name, rdtype, qid, rd, cd, payload, do, rdclass, ad)
            # Each query three times: the repeats are what the fast path serves.
            for _ in range(3):
                reply = fast(data, host)
                if reply is None:
                    reply = await general(fast_entry, fast_metrics, data, host)
                else:
                    served += 1
                expected = await general(slow_entry, slow_metrics, data, host)
                assert reply == expected, (name, rdtype, host)
        assert fast_metrics.queries == slow_metrics.queries
        assert fast_metrics.blocks == slow_metrics.blocks
        assert fast_metrics.cache_hits == slow_metrics.cache_hits
        assert fast_metrics.cache_misses == slow_metrics.cache_misses
        if any(
            q[0].islower() and q[7] == "127.0.0.1" and cacheable(q[0], q[1], q[3], q[9])
            for q in queries
        ):
            assert served, "an exact repeat from loopback must be served by the fast path"

    asyncio.run(run())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(query, min_size=1, max_size=60), st.booleans())
def test_the_fused_path_is_the_python_composition(queries: list[tuple], ratelimit: bool) -> None:  # type: ignore[type-arg]
    """The C fused path over its reply table and the Python steps over the handlers'
    dictionaries, side by side, each answering the listener's way: same replies, same
    counters, same rate-limit buckets. (The table also serves repeats of a mixed-case
    query whose block it kept, which the Python steps leave to the chain: same bytes.)"""
    from clearwall.dnsserver._fastpath import FusedPath

    async def run() -> None:
        clock = Clock()
        c_entry, c_fast, c_metrics = chain(clock, fuse=True, ratelimit=ratelimit)
        py_entry, py_fast, py_metrics = chain(clock, fuse=False, ratelimit=ratelimit)
        assert isinstance(c_fast, FusedPath) and not isinstance(py_fast, FusedPath)
        assert py_fast is not None
        served = {"c": 0, "py": 0}

        async def answer(fast, entry, metrics, data, host, who):  # type: ignore[no-untyped-def]
            reply = fast(data, host)
            if reply is None:
                return await general(entry, metrics, data, host)
            served[who] += 1
            return reply

        for name, rdtype, qid, rd, cd, payload, do, host, later, rdclass, ad in queries:
            clock.now += later
            data = wire(name, rdtype, qid, rd, cd, payload, do, rdclass, ad)
            for _ in range(3):
                c_reply = await answer(c_fast, c_entry, c_metrics, data, host, "c")
                py_reply = await answer(py_fast, py_entry, py_metrics, data, host, "py")
                assert c_reply == py_reply, (name, rdtype, host)
        for counter in ("queries", "blocks", "orders", "cache_hits", "cache_misses", "malformed"):
            assert getattr(c_metrics, counter) == getattr(py_metrics, counter), counter
        assert served["c"] >= served["py"]
        assert buckets(c_entry) == buckets(py_entry)

    asyncio.run(run())


def buckets(entry: Handler) -> dict[str, list[float]] | None:
    """The rate limiter's buckets in the chain starting at ``entry``, if it has one."""
    from clearwall.dnsserver.handlers.ratelimit import RateLimiter

    handler: object = entry
    while handler is not None:
        if isinstance(handler, RateLimiter):
            return handler.fast_state.buckets
        handler = getattr(handler, "next", None)
    return None


def test_the_fused_path_declines_what_is_not_a_datagram() -> None:
    clock = Clock()
    _entry, fast, _metrics = chain(clock)
    assert fast is not None
    assert fast(b"", "127.0.0.1") is None and fast(b"\x00", "127.0.0.1") is None
    with __import__("pytest").raises(TypeError):
        fast(b"", "127.0.0.1", "extra")  # type: ignore[call-arg]


def test_fast_path_serves_repeats_and_follows_a_policy_swap() -> None:
    async def run() -> None:
        clock = Clock()
        entry, fast, metrics = chain(clock)
        assert fast is not None
        data = wire("www.example.test", "A", 7, True, False, 1232, False)
        assert fast(data, "127.0.0.1") is None  # nothing cached yet
        await general(entry, metrics, data, "127.0.0.1")
        await general(entry, metrics, data, "127.0.0.1")  # an exact hit indexes the entry
        reply = fast(data, "127.0.0.1")
        assert reply is not None and dns.message.from_wire(reply).answer
        assert fast(data, "198.51.100.9") is None  # outsiders go the general way

    asyncio.run(run())


def test_no_fast_path_without_a_cache() -> None:
    from clearwall.config import CacheConfig

    config = dataclasses.replace(dns_config(53), cache=CacheConfig(max_entries=0))
    services = Services(config, PolicyHolder(POLICY), DNSMetrics(), Upstream(), Clock())
    _entry, names, fast = build(services)
    assert "cache" not in names and fast is None


def test_the_acl_follows_jurisdiction_networks_across_swaps() -> None:
    """A client in a jurisdiction's network is served by the fused path, the Python
    steps and the chain alike; a network a swap adds is served from that swap on, and
    one a swap removes is refused again (no admission outlives the policy it came from)."""

    async def run() -> None:
        clock = Clock()
        holders = [PolicyHolder(POLICY) for _ in range(3)]
        # No rate limit: each client asks more than the test limiter's burst.
        c_entry, c_fast, c_metrics = chain(clock, True, False, holders[0])
        py_entry, py_fast, py_metrics = chain(clock, False, False, holders[1])
        entry, _fast, metrics = chain(clock, True, False, holders[2])
        assert c_fast is not None and py_fast is not None

        async def rcodes(host: str, name: str = "www.example.test") -> set[int]:
            data = wire(name, "A", 9, True, False, 1232, False)
            got = set()
            for _ in range(3):  # repeats are what the fast paths serve
                for fast, e, m in ((c_fast, c_entry, c_metrics), (py_fast, py_entry, py_metrics)):
                    reply = fast(data, host) or await general(e, m, data, host)
                    got.add(dns.message.from_wire(reply).rcode())
                reply = await general(entry, metrics, data, host)
                got.add(dns.message.from_wire(reply).rcode())
            return got

        def swap(networks: dict[str, str], version: int) -> None:
            policy = dataclasses.replace(POLICY, networks=networks, version=version, _memo={})
            for holder in holders:
                holder.swap(policy)

        assert await rcodes("10.77.1.20") == {dns.rcode.NOERROR}
        assert await rcodes("10.77.1.20", "xa-only.test") == {dns.rcode.NXDOMAIN}
        assert await rcodes("10.77.2.20") == {dns.rcode.REFUSED}
        swap({"10.77.1.0/24": "xa", "10.77.2.0/24": "xb"}, 2)
        assert await rcodes("10.77.2.20") == {dns.rcode.NOERROR}
        assert await rcodes("10.77.2.20", "xa-only.test") == {dns.rcode.NOERROR}
        swap({"10.77.2.0/24": "xb"}, 3)
        assert await rcodes("10.77.1.20") == {dns.rcode.REFUSED}
        assert await rcodes("10.77.2.20") == {dns.rcode.NOERROR}

    asyncio.run(run())
