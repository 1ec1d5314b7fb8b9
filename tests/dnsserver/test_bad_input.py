"""Bad input over real sockets: FORMERR/NOTIMP/BADVERS/drop, and a 100,000-packet fuzz run
seeded from real captures, after which the server must still answer correctly."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode

from dnsserver.conftest import dns_config
from dnsserver.pcap import dns_messages
from dnsserver.upstreams import NSD

FUZZ_PACKETS = 100_000


async def _udp_exchange(addr: tuple[str, int], data: bytes, timeout: float = 1.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(addr)
        sock.send(data)
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), timeout)
    except TimeoutError:
        return None
    finally:
        sock.close()


async def test_formerr_notimp_badvers_and_drops(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    addr = gw.server.addresses[0]
    bad_label = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab"
    r = await _udp_exchange(addr, bad_label)
    assert r is not None and r[:2] == b"\x12\x34" and r[3] & 0x0F == dns.rcode.FORMERR
    two_questions = b"\x12\x35\x01\x00\x00\x02" + b"\x00" * 6 + b"\x00\x00\x01\x00\x01" * 2
    r = await _udp_exchange(addr, two_questions)
    assert r is not None and r[3] & 0x0F == dns.rcode.FORMERR
    notify = dns.message.make_query("example.test", "SOA")
    notify.set_opcode(4)
    r = await _udp_exchange(addr, notify.to_wire())
    assert r is not None and r[3] & 0x0F == dns.rcode.NOTIMP
    v1 = dns.message.make_query("www.example.test", "A", use_edns=1)
    r = await _udp_exchange(addr, v1.to_wire())
    assert r is not None and dns.message.from_wire(r).rcode() == dns.rcode.BADVERS
    assert await _udp_exchange(addr, b"\x00\x01\x02", 0.3) is None  # no header: dropped
    response = dns.message.make_response(dns.message.make_query("x.test", "A")).to_wire()
    assert await _udp_exchange(addr, response, 0.3) is None  # responses are never answered
    oversized = b"\x00\x01\x01\x00" + b"\xff" * 4000  # garbage after a readable header
    r = await _udp_exchange(addr, oversized)
    assert r is not None and r[3] & 0x0F == dns.rcode.FORMERR


def _seeds(pcaps: Path) -> list[bytes]:
    seeds = [m for p in sorted(pcaps.glob("*.pcap")) for m in dns_messages(p)]
    for name, rdtype in [
        ("www.example.test", "A"),
        ("big.example.test", "TXT"),
        ("alias.example.test", "AAAA"),
        ("x" * 63 + ".test", "MX"),
    ]:
        for edns in (-1, 0):
            seeds.append(
                dns.message.make_query(name, rdtype, use_edns=edns, want_dnssec=edns == 0).to_wire()
            )
    return seeds


def _mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and data:  # flip bits
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # random byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif op == 3:  # insert junk
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 4 and len(data) > 12:  # make it a query, keep the rest
            data[2] &= 0x7F
        elif op == 5 and len(data) >= 12:  # random counts
            data[4:12] = rng.randbytes(8)
        elif op == 6 and len(data) > 14:  # a compression pointer somewhere
            i = rng.randrange(12, len(data) - 1)
            data[i] = 0xC0
            data[i + 1] = rng.randrange(256)
    return bytes(data)


async def test_fuzz_100k_mutated_packets_then_still_answers(
    nsd: NSD, gateway_factory, data_dir: Path
) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    addr = gw.server.addresses[0]
    seeds = _seeds(data_dir / "pcap")
    assert len(seeds) > 100
    rng = random.Random(20261123)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(addr)
    sent = 0
    try:
        for i in range(FUZZ_PACKETS):
            packet = _mutate(rng, rng.choice(seeds))
            try:
                sock.send(packet)
                sent += 1
            except (BlockingIOError, ConnectionRefusedError):
                pass
            if i % 64 == 0:
                await asyncio.sleep(0)  # let the server (same loop) drain its socket
                try:
                    while True:
                        sock.recv(65535)  # discard replies so our buffer never fills
                except (BlockingIOError, ConnectionRefusedError):
                    pass
    finally:
        sock.close()
    assert sent >= FUZZ_PACKETS * 0.99
    # Let forwarded fuzz queries finish, then the server must answer correctly.
    for _ in range(100):
        if not gw.server.dispatcher.tasks:
            break
        await asyncio.sleep(0.1)
    assert gw.metrics.malformed > 1000
    q = dns.message.make_query("www.example.test", "A")
    host, port = addr
    r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
    assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.1"]
    r = await dns.asyncquery.tcp(q, host, port=port, timeout=2)
    assert [rr.to_text() for rr in r.answer[0]] == ["192.0.2.1"]
    assert gw.metrics.inflight == 0 and not gw.server.dispatcher.tasks


async def test_tcp_garbage_closes_only_that_connection(
    nsd: NSD, gateway_factory, data_dir: Path
) -> None:
    gw = await gateway_factory(dns_config(nsd.port))
    host, port = gw.server.addresses[0]
    rng = random.Random(7)
    seeds = _seeds(data_dir / "pcap")
    for _ in range(200):
        _reader, writer = await asyncio.open_connection(host, port)
        packet = _mutate(rng, rng.choice(seeds))
        writer.write(len(packet).to_bytes(2, "big") + packet + rng.randbytes(rng.randint(0, 5)))
        await writer.drain()
        writer.close()
    r = await dns.asyncquery.tcp(
        dns.message.make_query("www.example.test", "A"), host, port=port, timeout=2
    )
    assert r.answer
    await asyncio.sleep(0.2)
    assert gw.metrics.tcp_connections == 0
