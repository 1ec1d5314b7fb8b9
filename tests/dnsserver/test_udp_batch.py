"""The batched UDP reader (recvmmsg/sendmmsg) answers exactly like the datagram transport.

A burst of mixed queries (misses that become hits, blocks, sinkholes, refused and
malformed packets, a truncated big answer, ANY) is sent back-to-back to a gateway with
``udp_batch = 32`` and to one with ``udp_batch = 0``; every reply must be byte-identical
except for TTLs, which the cache counts down once a second and may therefore differ by
one between the two servers when a second boundary falls between their bursts.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import dns.flags
import dns.message
import dns.rcode
import pytest

from clearwall.config import HostPort
from clearwall.dnsserver import mmsg
from clearwall.dnsserver.gateway import Gateway
from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.model import Action, AuthorityKind, Category
from dnsserver.conftest import dns_config, order
from dnsserver.upstreams import NSD

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg/sendmmsg here")

POLICY = StaticPolicy(
    names={
        "blocked.test": [order(1)],
        "sink.test": [
            order(2, kind=AuthorityKind.OPERATOR, category=Category.MALWARE, action=Action.SINKHOLE)
        ],
    }
)


def _query(qid: int, name: str, rdtype: str, **kw: object) -> bytes:
    msg = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    msg.id = qid
    out: bytes = msg.to_wire()
    return out


KINDS: list[tuple[str, str, dict[str, object]]] = [
    ("www.example.test", "A", {}),
    ("WwW.Example.TEST", "AAAA", {}),
    ("alias2.example.test", "A", {"use_edns": 0, "payload": 1232}),
    ("nx.example.test", "A", {}),
    ("x.blocked.test", "A", {}),
    ("x.blocked.test", "TXT", {"use_edns": 0, "want_dnssec": True}),
    ("sink.test", "A", {"use_edns": 0}),
    ("many.example.test", "A", {}),
    ("big.example.test", "TXT", {}),  # too big for 512: TC
    ("www.example.test", "ANY", {}),
    ("types.example.test", "HTTPS", {"use_edns": 0}),
    ("types.example.test", "TYPE97", {}),
    ("huge.example.test", "A", {}),  # TTL 2**31 - 1 upstream: clamped to max_ttl
    ("www.example.test", "A", {"flags": 0}),  # RD=0: from the cache only
    ("localhost", "A", {"use_edns": 0}),  # special-use: answered locally
    ("x.invalid", "AAAA", {}),
    ("version.bind", "TXT", {"rdclass": "CH"}),  # REFUSED
]


def _burst(tag: int) -> list[bytes]:
    """Every packet has a distinct ID (replies are matched on it); malformed ones too.

    Names in ``KINDS`` are cached by a warm-up (hits and fast-path blocks); each round
    adds misses no one asked before, so the counters do not depend on reply timing.
    """
    packets: list[bytes] = []
    qid = 1
    for rnd in range(6):
        for name, rdtype, kw in KINDS:
            packets.append(_query(qid, name, rdtype, **kw))
            qid += 1
        packets.append(_query(qid, f"m{tag}-{rnd}.example.test", "A"))  # miss: NXDOMAIN
        qid += 1
        packets.append(_query(qid, f"m{tag}-{rnd}.blocked.test", "AAAA"))  # block, new name
        qid += 1
        packets.append(_query(qid, f"r{tag}-{rnd}.example.test", "A", flags=0))  # REFUSED
        qid += 1
        hdr = qid.to_bytes(2, "big")
        qid += 1
        packets.append(hdr + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab")  # FORMERR
        hdr = qid.to_bytes(2, "big")
        qid += 1
        packets.append(hdr + b"\x01\x00\x00\x02" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01" * 2)
        notify = dns.message.make_query("example.test", "SOA")
        notify.set_opcode(4)
        notify.id = qid
        qid += 1
        packets.append(notify.to_wire())  # NOTIMP
        packets.append(_query(qid, "www.example.test", "A", use_edns=1))  # BADVERS
        qid += 1
        packets.append(b"\x00\x01\x02")  # no header: dropped
        response = dns.message.make_response(dns.message.make_query("x.test", "A"))
        response.id = qid
        qid += 1
        packets.append(response.to_wire())  # never answered
    return packets


async def _exchange(
    addr: tuple[str, int], packets: list[bytes], family: int = socket.AF_INET, until: int = 0
) -> dict[int, bytes]:
    """Send ``packets`` back-to-back from one socket; replies by ID until 0.5 s of quiet
    (or until ``until`` replies came)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    replies: dict[int, bytes] = {}
    try:
        sock.connect(addr)
        for p in packets:
            sock.send(p)
        while True:
            try:
                r = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.5)
            except TimeoutError:
                return replies
            qid = int.from_bytes(r[:2], "big")
            assert qid not in replies, "one reply per query"
            replies[qid] = r
            if len(replies) == until:
                return replies
    finally:
        sock.close()


def _same(a: bytes, b: bytes) -> bool:
    if a == b:
        return True
    ma, mb = dns.message.from_wire(a), dns.message.from_wire(b)
    for m in (ma, mb):
        for section in (m.answer, m.authority, m.additional):
            for rrset in section:
                rrset.ttl = 0
    return ma.to_wire() == mb.to_wire() and ma.flags == mb.flags


async def _warm_up(*gateways: Gateway, family: int = socket.AF_INET) -> None:
    """Ask every kind once, one query at a time (with RD=1 first, so that the RD=0 kinds
    find the cache in the same state on every gateway)."""
    for i, (name, rdtype, kw) in enumerate(KINDS):
        for gw in gateways:
            packet = _query(i + 1, name, rdtype, **{**kw, "flags": dns.flags.RD})
            await _exchange(gw.server.addresses[0], [packet], family, until=1)


async def test_burst_replies_match_the_datagram_transport(nsd: NSD, gateway_factory) -> None:
    batched = await gateway_factory(dns_config(nsd.port, udp_batch=32), POLICY)
    plain = await gateway_factory(dns_config(nsd.port, udp_batch=0), POLICY)
    assert batched.server.udp_mode.startswith("recvmmsg")
    assert plain.server.udp_mode.startswith("datagram transport")
    await _warm_up(batched, plain)
    for tag in range(2):
        packets = _burst(tag)
        got = await _exchange(batched.server.addresses[0], packets)
        want = await _exchange(plain.server.addresses[0], packets)
        assert got.keys() == want.keys()
        for qid, reply in want.items():
            assert _same(got[qid], reply), qid
        answered = {int.from_bytes(p[:2], "big") for p in packets if len(p) >= 12}
        dropped = {int.from_bytes(p[:2], "big") for p in packets if len(p) >= 12 and p[2] & 0x80}
        assert got.keys() == answered - dropped
        rcodes = {dns.message.from_wire(r).rcode() for r in got.values() if r[3] & 0x0F}
        assert {
            dns.rcode.FORMERR,
            dns.rcode.NOTIMP,
            dns.rcode.NXDOMAIN,
            dns.rcode.REFUSED,
        } <= rcodes
    assert batched.server.metrics.malformed == plain.server.metrics.malformed
    assert batched.server.metrics.queries == plain.server.metrics.queries
    assert batched.server.metrics.cache_hits == plain.server.metrics.cache_hits
    assert batched.server.metrics.blocks == plain.server.metrics.blocks


async def test_ipv6_batched(nsd: NSD, gateway_factory) -> None:
    listen = (HostPort("::1", 0),)
    try:
        batched = await gateway_factory(dns_config(nsd.port, udp_batch=8), POLICY, listen)
        plain = await gateway_factory(dns_config(nsd.port, udp_batch=0), POLICY, listen)
    except Exception as exc:  # no IPv6 loopback in this sandbox
        pytest.skip(f"no ::1: {exc}")
    await _warm_up(batched, plain, family=socket.AF_INET6)
    for tag in range(2):
        packets = _burst(tag)[:40]
        got = await _exchange(batched.server.addresses[0], packets, socket.AF_INET6)
        want = await _exchange(plain.server.addresses[0], packets, socket.AF_INET6)
        assert got.keys() == want.keys() and got
        for qid, reply in want.items():
            assert _same(got[qid], reply), qid


class _Scripted:
    """A dispatcher whose fast, miss and general paths answer per query name, for the C
    loop: ``fast:…`` names are answered by the fast path, ``slow:…`` by the general path,
    ``bad-fast:…`` make the fast path raise (the general path answers), ``bad:…`` make
    the general path raise, ``none:…`` are dropped, ``str:…`` return a non-bytes reply;
    ``miss:…`` are taken by the miss path (which replies itself, here never), ``bad-miss:…``
    make it raise (the general path answers); it declines everything else."""

    def __init__(self) -> None:
        self.general_calls: list[tuple[str, int, int]] = []
        self.miss_calls: list[tuple[str, bytes, int]] = []

    def miss(self, data: bytes, host: str, sockaddr: bytes, fd: int) -> bool | None:
        name = self._name(data)
        self.miss_calls.append((host, sockaddr, fd))
        if name.startswith(b"bad-miss"):
            raise RuntimeError("miss path bug")
        return True if name.startswith(b"miss") else None

    @staticmethod
    def _name(data: bytes) -> bytes:
        return data[13 : 13 + data[12]]

    def fast(self, data: bytes, host: str) -> bytes | None:
        name = self._name(data)
        if name.startswith(b"bad-fast"):
            raise RuntimeError("fast path bug")
        return data[:2] + b"F" + host.encode() if name.startswith(b"fast") else None

    def udp(self, data: bytes, host: str, port: int, later) -> bytes | None:  # type: ignore[no-untyped-def]
        name = self._name(data)
        self.general_calls.append((host, port, len(data)))
        if name.startswith(b"bad") and not name.startswith((b"bad-fast", b"bad-miss")):
            raise RuntimeError("general path bug")
        if name.startswith(b"none"):
            return None
        if name.startswith(b"str"):
            return "not bytes"  # type: ignore[return-value]
        return data[:2] + b"G" + host.encode()


async def _serve_burst(
    family: int, host: str, labels: list[str], batch: int
) -> tuple[dict[int, bytes], _Scripted, list[str]]:
    loop = asyncio.get_running_loop()
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    scripted = _Scripted()
    reader = mmsg.BatchedUDP(server, batch, scripted)
    errors: list[str] = []
    reader._readable = lambda: reader.io.serve(  # type: ignore[method-assign]
        scripted.fast,
        scripted.miss,
        reader._general,
        lambda exc, where: errors.append(f"{where}: {exc}"),
    )
    reader.start(loop)
    try:
        packets = [_query(i + 1, f"{label}.test", "A") for i, label in enumerate(labels)]
        replies = await _exchange(server.getsockname()[:2], packets, family)
    finally:
        reader.close()
    return replies, scripted, errors


async def test_c_loop_routes_every_datagram_and_survives_bugs() -> None:
    labels = ["fast1", "slow1", "bad-fast1", "bad1", "none1", "str1", "fast2", "slow2"] * 9
    labels += ["miss1", "bad-miss1", "slow3"] * 9
    replies, scripted, errors = await _serve_burst(socket.AF_INET, "127.0.0.1", labels, 4)
    by_label = {i + 1: label for i, label in enumerate(labels)}
    for qid, label in by_label.items():
        body = replies.get(qid)
        if label.startswith(("fast",)):
            assert body is not None and body[2:] == b"F127.0.0.1"
        elif label.startswith(("slow", "bad-fast", "bad-miss")):
            assert body is not None and body[2:] == b"G127.0.0.1"
        else:  # taken, raised, dropped, not bytes: nothing sent, the rest of the batch goes on
            assert body is None
    assert all(h == "127.0.0.1" and p > 0 for h, p, _n in scripted.general_calls)
    # Every datagram the fast path declined is offered to the miss path, with the client's
    # sockaddr (family AF_INET, its port) and the listening socket.
    declined = [label for label in labels if not label.startswith("fast")]
    assert len(scripted.miss_calls) == len(declined)
    for host, sockaddr, fd in scripted.miss_calls:
        assert host == "127.0.0.1" and int.from_bytes(sockaddr[:2], sys.byteorder) == 2
        assert int.from_bytes(sockaddr[2:4], "big") > 0 and fd >= 0
    assert sum(e.startswith("fast path: fast path bug") for e in errors) == 9
    assert sum(e.startswith("miss path: miss path bug") for e in errors) == 9
    assert sum(e.startswith("general path: general path bug") for e in errors) == 9
    assert sum(e.startswith("reply: a reply must be bytes") for e in errors) == 9


async def test_c_loop_ipv6_hosts() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback address (::1): {exc}")
    replies, _scripted, errors = await _serve_burst(socket.AF_INET6, "::1", ["fast", "slow"] * 3, 2)
    assert not errors
    assert sorted(r[2:] for r in replies.values()) == [b"F::1"] * 3 + [b"G::1"] * 3


def test_c_loop_rejects_bad_construction() -> None:
    from clearwall.dnsserver import _udpbatch

    with pytest.raises(ValueError):
        _udpbatch.Batch(-1, 32, False)
    with pytest.raises(ValueError):
        _udpbatch.Batch(0, 0, False)
    with pytest.raises(TypeError):
        _udpbatch.Batch(0, 32, False).serve(None, None, None)  # type: ignore[call-arg]
