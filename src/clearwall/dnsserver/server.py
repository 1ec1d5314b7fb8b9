"""The DNS listeners (UDP and TCP per RFC 7766, v4 and v6) and the upstream socket transport.

This is the only module that touches sockets. A UDP datagram is parsed, run through the
chain and answered synchronously inside ``datagram_received`` when the chain answers at
once (cache hit, block, refusal); only a cache miss becomes a task. Before that, the
chain's fast path (composed from the same handlers, see ``handlers.base``) answers
repeated cache hits and cached blocks from the raw bytes alone. Malformed queries
get FORMERR when the header is readable and are dropped otherwise; responses (QR=1) are
never answered, so two servers cannot be made to loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any

from clearwall.config import DNSConfig, HostPort
from clearwall.dnsserver import mmsg, wire
from clearwall.dnsserver.answer import Answer
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.handlers.base import FastPath, Handler
from clearwall.dnsserver.metrics import DNSMetrics
from clearwall.errors import ConfigError, DNSWireError

log = logging.getLogger(__name__)
parse_query = wire.parse_query

_OPCODE_QUERY = 0
_MAX_PIPELINE = 64  # queries in flight per TCP connection before we stop reading


def early_reply(data: bytes, metrics: DNSMetrics) -> tuple[wire.Question | None, bytes | None]:
    """Parse a query; return (question, None) to proceed or (None, reply-or-None) to stop.

    FORMERR for a readable header with a malformed body (RFC 1035 section 4.1.1),
    NOTIMP for opcodes other than QUERY, BADVERS for EDNS versions other than 0
    (RFC 6891 section 6.1.3), silence for responses and for fragments of a header.
    """
    try:
        q = wire.parse_query(data)
    except DNSWireError:
        return None, rejection(data, metrics)
    if q.edns_version:
        return None, wire.error_reply(data, wire.BADVERS, q)
    return q, None


def rejection(data: bytes, metrics: DNSMetrics) -> bytes | None:
    """The reply to a query ``parse_query`` refused: FORMERR, NOTIMP, or None (drop).

    Both carry an OPT record when the query held one (``wire.rejection_reply``).
    """
    metrics.malformed += 1
    if len(data) < 12 or data[2] & wire.QR:
        return None
    if (data[2] >> 3) & 0x0F != _OPCODE_QUERY:
        return wire.rejection_reply(data, wire.NOTIMP)
    return wire.rejection_reply(data, wire.FORMERR)


class _Dispatcher:
    """Runs one query through the chain; shared by the UDP and TCP listeners."""

    def __init__(self, chain: Handler, metrics: DNSMetrics, fast: FastPath | None = None) -> None:
        self.chain = chain
        self.fast = fast  # the chain's UDP fast path (None: every query takes the chain)
        self.metrics = metrics
        self.tasks: set[asyncio.Future[Answer]] = set()

    def run(self, ctx: Context, send: Callable[[bytes | None], None]) -> None:
        """Answer now when the chain can; otherwise finish in a task and send then."""
        try:
            result = self.chain(ctx)
        except Exception:  # a handler bug must cost one query, not the listener
            log.exception("handler chain failed")
            send(wire.error_reply(ctx.data, wire.SERVFAIL, ctx.q))
            return
        if result.__class__ is Answer:
            send(ctx.reply)
            return
        task = asyncio.ensure_future(result)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, ctx, send))

    def udp(
        self, data: bytes, host: str, port: int, later: Callable[[], Callable[[bytes | None], None]]
    ) -> bytes | None:
        """The general UDP path: the reply to send now, or None (dropped, or sent later
        through ``later()`` when the chain had to wait)."""
        try:
            q = parse_query(data)
        except DNSWireError:
            return rejection(data, self.metrics)
        if q.edns_version:
            return wire.error_reply(data, wire.BADVERS, q)
        ctx = Context(data, host, port, False, q)
        try:
            result = self.chain(ctx)
        except Exception:
            log.exception("handler chain failed")
            return wire.error_reply(data, wire.SERVFAIL, q)
        if result.__class__ is Answer:
            return ctx.reply
        task = asyncio.ensure_future(result)  # type: ignore[arg-type]
        self.tasks.add(task)
        send = later()
        task.add_done_callback(lambda t: self._done(t, ctx, send))
        return None

    def _done(
        self, task: asyncio.Future[Answer], ctx: Context, send: Callable[[bytes | None], None]
    ) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("handler chain failed", exc_info=task.exception())
            send(wire.error_reply(ctx.data, wire.SERVFAIL, ctx.q))
            return
        send(ctx.reply)


class UDPListener(asyncio.DatagramProtocol):
    """One UDP socket: every datagram is one query."""

    def __init__(self, dispatcher: _Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.metrics = dispatcher.metrics
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport for replies."""
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """Parse, run the chain, reply (synchronously on the fast path)."""
        transport = self.transport
        assert transport is not None
        dispatcher = self.dispatcher
        fast = dispatcher.fast
        if fast is not None:
            try:
                out = fast(data, addr[0])
            except Exception:  # a bug there must not cost the query: the chain answers
                log.exception("fast path failed")
                out = None
            if out is not None:
                transport.sendto(out, addr)
                return

        def later() -> Callable[[bytes | None], None]:
            def send(out: bytes | None) -> None:
                if out is not None:
                    transport.sendto(out, addr)

            return send

        out = dispatcher.udp(data, addr[0], addr[1], later)
        if out is not None:
            transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for earlier replies are not ours to handle."""


class TCPConnection(asyncio.Protocol):
    """One client TCP connection: length-prefixed, pipelined queries (RFC 7766 sections 6-8).

    Replies may leave out of order; at most ``_MAX_PIPELINE`` queries are processed at
    once (reading pauses beyond that); the connection closes after ``idle`` seconds
    without a query while nothing is pending.
    """

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.dispatcher = server.dispatcher
        self.metrics = server.metrics
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending = 0
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection unless the server is at its connection limit."""
        self.transport = transport  # type: ignore[assignment]
        if self.metrics.tcp_connections >= self.server.config.max_tcp_connections:
            transport.close()
            return
        self.counted = True
        self.metrics.tcp_connections += 1
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.config.tcp_idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.pending:
            self._arm()
        elif self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Split the stream into messages and dispatch each."""
        buf = self.buffer
        buf += data
        self._arm()
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + size:
                break
            message = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            self._handle(message)

    def _handle(self, data: bytes) -> None:
        q, early = early_reply(data, self.metrics)
        if q is None:
            if early is not None:
                self._send(early)
            elif len(data) < 12:
                # Garbage on a stream leaves nothing to resynchronise on.
                assert self.transport is not None
                self.transport.close()
            return
        peer = self.transport.get_extra_info("peername") if self.transport else None
        host, port = (peer[0], peer[1]) if peer else ("", 0)
        self.pending += 1
        if self.pending >= _MAX_PIPELINE and not self.paused and self.transport:
            self.transport.pause_reading()
            self.paused = True
        self.dispatcher.run(Context(data, host, port, True, q), self._reply)

    def _reply(self, out: bytes | None) -> None:
        self.pending -= 1
        if out is not None:
            self._send(out)
        if self.paused and self.pending < _MAX_PIPELINE // 2 and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def _send(self, out: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(len(out).to_bytes(2, "big") + out)

    def connection_lost(self, exc: Exception | None) -> None:
        """Release the connection slot."""
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.metrics.tcp_connections -= 1
            self.counted = False
        self.transport = None


class DNSServer:
    """UDP and TCP listeners on every configured address, feeding one chain."""

    def __init__(
        self,
        config: DNSConfig,
        chain: Handler,
        metrics: DNSMetrics,
        reuse_port: bool = False,
        fast: FastPath | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.dispatcher = _Dispatcher(chain, metrics, fast)
        self.reuse_port = reuse_port
        self._udp: list[asyncio.DatagramTransport] = []
        self._batched: list[mmsg.BatchedUDP] = []
        self.udp_mode = ""  # how UDP is read, for the start-up log
        self._tcp: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []  # bound UDP addresses (port 0 resolved)

    async def start(self, listen: tuple[HostPort, ...] | None = None) -> None:
        """Bind UDP then TCP on each address (TCP on the UDP port when port 0 was asked)."""
        for hp in listen or self.config.listen:
            # With port 0 the kernel picks the UDP port; that port may be taken for TCP
            # by someone else, so a few pairs are tried.
            for attempt in range(1 if hp.port else 20):
                try:
                    await self._bind_pair(hp)
                    break
                except OSError as exc:
                    if hp.port or attempt == 19:
                        raise ConfigError(f"[dns] listen {hp}: {exc.strerror or exc}") from exc

    async def _bind_pair(self, hp: HostPort) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in hp.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.bind((hp.host, hp.port))
            port = sock.getsockname()[1]
            server = await loop.create_server(
                lambda: TCPConnection(self),
                hp.host,
                port,
                family=family,
                reuse_address=True,
                reuse_port=self.reuse_port or None,
                backlog=1024,
            )
        except OSError:
            sock.close()
            raise
        batch = self.config.udp_batch
        if batch > 0 and mmsg.available():
            dispatcher = self.dispatcher
            reader = mmsg.BatchedUDP(sock, batch, dispatcher)
            reader.start(loop)
            self._batched.append(reader)
            self.udp_mode = f"recvmmsg/sendmmsg, batches of up to {batch}"
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UDPListener(self.dispatcher), sock=sock
            )
            self._udp.append(transport)
            self.udp_mode = (
                "datagram transport (udp_batch = 0)"
                if batch <= 0
                else "datagram transport (recvmmsg unavailable)"
            )
        self._tcp.append(server)
        self.addresses.append((hp.host, port))

    async def stop(self, grace: float = 2.0) -> None:
        """Stop listening, then let in-flight queries finish for up to ``grace`` seconds."""
        for transport in self._udp:
            transport.close()
        for reader in self._batched:
            reader.close()
        self._batched.clear()
        for server in self._tcp:
            server.close()
        pending = list(self.dispatcher.tasks)
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for server in self._tcp:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 0.5)
        self._udp.clear()
        self._tcp.clear()


class SocketTransport:
    """The real ``UpstreamTransport``: a new connected socket per query.

    A connected UDP socket gets a fresh kernel-chosen random ephemeral port and only
    receives datagrams from the server's address and port (RFC 5452 section 9.2).
    """

    async def udp(
        self, server: tuple[str, int], query: bytes, timeout: float, check: Callable[[bytes], bool]
    ) -> bytes:
        """Send ``query``; return the first reply that passes ``check``."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        fut: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            while not fut.done():
                try:
                    data = sock.recv(65535)
                except BlockingIOError:
                    return
                except OSError as exc:  # e.g. ICMP port unreachable: the server is down
                    fut.set_exception(exc)
                    return
                if check(data):
                    fut.set_result(data)

        def expire() -> None:
            if not fut.done():
                fut.set_exception(TimeoutError())

        fd = -1
        handle = loop.call_later(timeout, expire)
        try:
            sock.connect(server)
            fd = sock.fileno()
            loop.add_reader(fd, readable)
            sock.send(query)
            return await fut
        finally:
            handle.cancel()
            if fd >= 0:
                loop.remove_reader(fd)
            sock.close()

    async def tcp(self, server: tuple[str, int], query: bytes, timeout: float) -> bytes:
        """One query over a fresh TCP connection with RFC 7766 framing."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(server[0], server[1])
            try:
                writer.write(len(query).to_bytes(2, "big") + query)
                await writer.drain()
                size = int.from_bytes(await reader.readexactly(2), "big")
                return await reader.readexactly(size)
            except asyncio.IncompleteReadError as exc:
                raise OSError("upstream closed the TCP connection early") from exc
            finally:
                writer.close()
