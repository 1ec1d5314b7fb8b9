"""The TCP listener under abuse (issue 14 section 4): a full connection table, slow and
trickling clients, pipelining clients that never read, and the framing of the stream.

Every test runs on the standard event loop and on uvloop (what ``clearwall serve`` runs),
against a real gateway on loopback with real sockets; blocked names are answered at
once by the chain, so no upstream is involved except where a test says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import dns.edns
import dns.message
import dns.rcode
import pytest
import uvloop

from clearwall.dnsserver import server
from clearwall.dnsserver.gateway import Gateway, build_gateway
from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.model import AuthorityKind, Category
from dnsserver.conftest import dns_config, order
from dnsserver.upstreams import NSD

T = TypeVar("T")
LOOPS = ("asyncio", "uvloop")
BLOCKED = "blocked.example.test"
POLICY = StaticPolicy(
    names={BLOCKED: [order(8, kind=AuthorityKind.OPERATOR, category=Category.MALWARE)]}
)
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run(loop: str, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run a scenario on a fresh loop of the given kind."""
    if loop == "uvloop":
        return uvloop.run(scenario())  # type: ignore[no-any-return]
    return asyncio.run(scenario())  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def gateway(upstream: int, **changes: Any) -> AsyncIterator[Gateway]:
    """A gateway on an ephemeral loopback port that blocks ``BLOCKED``."""
    gw = build_gateway(dns_config(upstream, **changes), POLICY)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def frame(qid: int, name: str = BLOCKED, filler: int = 0) -> bytes:
    """A length-prefixed EDNS query, longer by an unknown option of ``filler`` bytes."""
    options = [dns.edns.GenericOption(65001, b"\0" * filler)] if filler else None
    q = dns.message.make_query(name, "A", use_edns=0, options=options)
    q.id = qid
    wire = q.to_wire(max_size=65535)
    return len(wire).to_bytes(2, "big") + wire


async def connect(gw: Gateway, rcvbuf: int = 0) -> Conn:
    """A client connection; ``rcvbuf`` shrinks its receive buffer (a slow reader)."""
    host, port = gw.server.addresses[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock)


async def reply(conn: Conn, timeout: float = 3.0) -> dns.message.Message:
    """Read one length-prefixed reply."""
    reader = conn[0]
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), timeout), "big")
    return dns.message.from_wire(await asyncio.wait_for(reader.readexactly(size), timeout))


async def ask(gw: Gateway, qid: int = 1) -> dns.message.Message:
    """A new client's query over a new connection."""
    conn = await connect(gw)
    try:
        conn[1].write(frame(qid))
        return await reply(conn)
    finally:
        conn[1].close()


async def closed_by_server(conn: Conn, timeout: float) -> bool:
    """True when the server closes (or resets) ``conn`` within ``timeout`` seconds."""
    try:
        await asyncio.wait_for(conn[0].read(), timeout)  # whatever is left, up to the end
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def reply_id(conn: Conn, timeout: float = 3.0) -> int:
    """Read one length-prefixed reply; its ID (no parsing: many replies are read)."""
    reader = conn[0]
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), timeout), "big")
    return int.from_bytes((await asyncio.wait_for(reader.readexactly(size), timeout))[:2], "big")


@pytest.mark.parametrize("loop", LOOPS)
def test_a_full_table_closes_the_connection_idle_longest(nsd: NSD, loop: str) -> None:
    async def scenario() -> None:
        async with gateway(nsd.port, max_tcp_connections=3) as gw:
            a, b, c = [await connect(gw) for _ in range(3)]
            a[1].write(frame(1))  # a is the most recently active of the three now
            assert (await reply(a)).id == 1
            d = await connect(gw)
            d[1].write(frame(2))
            assert (await reply(d)).rcode() == dns.rcode.NXDOMAIN  # the newcomer is served
            assert await closed_by_server(b, 2.0)  # b was idle longest
            a[1].write(frame(3))
            assert (await reply(a)).id == 3
            assert not await closed_by_server(c, 0.2)
            assert gw.metrics.tcp_connections == 3 and gw.metrics.tcp_evicted == 1
            for conn in (a, b, c, d):
                conn[1].close()

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_idle_connections_do_not_lock_new_clients_out(nsd: NSD, loop: str) -> None:
    """The issue's first scenario, bounded: a table full of idle connections."""

    async def scenario() -> None:
        async with gateway(nsd.port, max_tcp_connections=20) as gw:
            idle = [await connect(gw) for _ in range(20)]
            await asyncio.sleep(0.1)
            newcomers = [await connect(gw) for _ in range(5)]  # they stay connected
            for i, conn in enumerate(newcomers):
                conn[1].write(frame(i))
                assert (await reply(conn)).rcode() == dns.rcode.NXDOMAIN
            assert gw.metrics.tcp_evicted == 5 and gw.metrics.tcp_connections == 20
            for conn in idle[:5]:  # the oldest went first
                assert await closed_by_server(conn, 2.0)
            for conn in idle + newcomers:
                conn[1].close()

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_trickling_connections_are_closed_and_lock_nobody_out(nsd: NSD, loop: str) -> None:
    """The issue's second scenario, bounded: more connections than the table holds, each
    sending a byte of a message that never completes every 0.2 s. The idle clock counts
    from the last complete message, so every one of them is closed after the timeout,
    and new clients are answered all along."""

    async def scenario() -> None:
        async with gateway(nsd.port, max_tcp_connections=10, tcp_idle_timeout=1.0) as gw:
            slow = [await connect(gw) for _ in range(12)]
            for conn in slow:
                conn[1].write(b"\x02\x00")  # a 512-byte message, sent a byte at a time
            closed = [asyncio.ensure_future(closed_by_server(conn, 4.0)) for conn in slow]
            start = time.monotonic()
            answered = asked = 0
            while time.monotonic() - start < 2.5:
                for conn in slow:
                    if not conn[1].is_closing():
                        conn[1].write(b"\x00")
                asked += 1
                answered += (await ask(gw, asked)).rcode() == dns.rcode.NXDOMAIN
                await asyncio.sleep(0.2)
            assert answered == asked
            assert all(await asyncio.gather(*closed))
            assert gw.metrics.tcp_connections == 0

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_connection_that_keeps_asking_stays_open(nsd: NSD, loop: str) -> None:
    async def scenario() -> None:
        async with gateway(nsd.port, tcp_idle_timeout=0.5) as gw:
            conn = await connect(gw)
            for i in range(6):  # 1.5 s in all: three idle timeouts, never idle for one
                conn[1].write(frame(i))
                assert (await reply(conn)).id == i
                await asyncio.sleep(0.25)
            assert await closed_by_server(conn, 2.0)  # and closed once it stops

    run(loop, scenario)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[server.TCPConnection]:
    """Every server-side TCP connection made during the test, to look inside."""
    made: list[server.TCPConnection] = []

    class Recorded(server.TCPConnection):
        def __init__(self, srv: server.DNSServer) -> None:
            super().__init__(srv)
            made.append(self)

    monkeypatch.setattr(server, "TCPConnection", Recorded)
    return made


def unsent(connections: list[server.TCPConnection]) -> list[int]:
    """Unsent reply bytes each open connection holds in the process."""
    return [
        c.transport.get_write_buffer_size()
        for c in connections
        if c.transport is not None and not c.transport.is_closing()
    ]


def far_clients(gw: Gateway) -> None:
    """Give accepted sockets a small kernel send buffer (they inherit the listener's),
    as for clients far away: replies a client does not read then wait in the process
    after a few kilobytes instead of after the megabytes loopback would hold."""
    for listener in gw.server._tcp:
        for sock in listener.sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)


def answered(gw: Gateway) -> int:
    """Queries the gateway has answered so far."""
    return sum(gw.metrics.queries.values())


@pytest.mark.parametrize("loop", LOOPS)
def test_pipelining_without_reading_is_bounded_and_loses_nothing(
    nsd: NSD, loop: str, connections: list[server.TCPConnection]
) -> None:
    """The issue's third scenario, bounded: two connections send 10,000 queries each and
    read nothing. The server stops reading each one once 64 KiB of its replies are
    unsent, holding at most one read of input; when the client reads, every query is
    answered, in order, none lost."""
    queries = 10_000

    async def scenario() -> None:
        async with gateway(nsd.port, tcp_idle_timeout=30.0) as gw:
            far_clients(gw)
            conns = [await connect(gw) for _ in range(2)]
            for conn in conns:
                conn[1].write(b"".join(frame(i) for i in range(queries)))
            held = 0
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                held = max(held, *unsent(connections))
                await asyncio.sleep(0.02)
            assert 0 < held <= 64 * 1024 + 1024  # one reply past the mark at most
            assert max(len(c.buf) for c in connections) <= 4096 + 512  # a read, a rest
            assert answered(gw) < queries  # it stopped taking them (the kernel held some)
            for conn in conns:
                assert [await reply_id(conn) for _ in range(queries)] == list(range(queries))
                conn[1].close()
            assert answered(gw) == 2 * queries

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_unsent_replies_are_bounded_in_total(
    nsd: NSD, loop: str, connections: list[server.TCPConnection]
) -> None:
    """Many connections that do not read stay under the server's total: while it is
    exceeded, a connection holding unsent replies stops reading; a client that reads its
    replies is served meanwhile; the idle timeout closes the others and frees it all."""

    async def scenario() -> None:
        async with gateway(nsd.port, tcp_idle_timeout=1.0) as gw:
            far_clients(gw)
            gw.server.budget.limit = limit = 100 * 1024
            hogs = [await connect(gw) for _ in range(4)]
            for conn in hogs:
                conn[1].write(b"".join(frame(i) for i in range(5000)))
            held, waited = 0, False
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                held = max(held, sum(unsent(connections)))
                waited = waited or bool(gw.server.budget.waiting)
                await asyncio.sleep(0.02)
            assert limit < held <= limit + 4 * 1024  # one reply per connection past it
            assert waited
            assert (await ask(gw, 7)).id == 7  # a reading client is not held up
            assert all(await asyncio.gather(*(closed_by_server(c, 4.0) for c in hogs)))
            assert gw.server.budget.used == 0 and not gw.server.budget.waiting

    run(loop, scenario)


@pytest.mark.parametrize("chunk", [1, 3, 4095, 4096, 4097, 70_000])
@pytest.mark.parametrize("loop", LOOPS)
def test_messages_split_anywhere_are_all_answered(nsd: NSD, loop: str, chunk: int) -> None:
    """Framing: queries shorter and longer than a read (an EDNS option makes some 6 kB),
    sent in pieces of every size, come back whole and in order."""
    stream = b"".join(frame(i, filler=6000 if i % 10 == 3 else 0) for i in range(25))

    async def scenario() -> None:
        async with gateway(nsd.port) as gw:
            conn = await connect(gw)
            for start in range(0, len(stream), chunk):
                conn[1].write(stream[start : start + chunk])
                await conn[1].drain()
            for i in range(25):
                msg = await reply(conn)
                assert msg.id == i and msg.rcode() == dns.rcode.NXDOMAIN
            conn[1].close()
            await asyncio.sleep(0.1)
            assert gw.metrics.malformed == 0

    run(loop, scenario)


@pytest.mark.parametrize("loop", LOOPS)
def test_upstream_answers_still_reach_tcp_clients(nsd: NSD, loop: str) -> None:
    """Replies that come later (cache misses, answered by nsd) take the same path."""

    async def scenario() -> None:
        async with gateway(nsd.port) as gw:
            conn = await connect(gw)
            conn[1].write(frame(1, "www.example.test") + frame(2) + frame(3, "www.example.test"))
            got = {(m := await reply(conn)).id: m for _ in range(3)}
            assert [rr.to_text() for rr in got[1].answer[0]] == ["192.0.2.1"]
            assert got[2].rcode() == dns.rcode.NXDOMAIN
            conn[1].close()

    run(loop, scenario)
