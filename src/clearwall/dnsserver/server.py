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
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

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
_READ_SIZE = 4096  # bytes per TCP read: what a connection that stops reading may hold
_UNSENT_HIGH = 64 * 1024  # unsent reply bytes per TCP connection before it stops reading
_UNSENT_TOTAL = 16 * 1024 * 1024  # unsent reply bytes across a server's TCP connections
_BUDGET_RECHECK = 0.1  # seconds between measures while connections wait on the total


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


class TCPConnection(asyncio.BufferedProtocol):
    """One client TCP connection: length-prefixed, pipelined queries (RFC 7766 sections 6-8).

    Replies may leave out of order. Reading stops while any of these holds, and what was
    already received waits in the input buffer: ``_MAX_PIPELINE`` queries are in flight;
    the transport holds more than ``_UNSENT_HIGH`` bytes of unsent replies (a client that
    does not read); the server's unsent replies pass their total (``OutputBudget``) and
    this connection holds some. The connection is idle from its last complete message
    received or reply sent (a byte of an unfinished message is no activity); it closes
    after ``tcp_idle_timeout`` idle seconds with nothing pending, or sooner when the
    server needs its slot for a new client (``DNSServer.admit``).
    """

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.dispatcher = server.dispatcher
        self.metrics = server.metrics
        self.transport: asyncio.Transport | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.host, self.port = "", 0
        # Received bytes live in buf[start:end]; reads go into buf[end:]. The buffer is
        # small, so a connection that stops reading holds little input; it grows only to
        # fit one message longer than itself, and exists from the first byte received
        # (an idle connection holds none).
        self.buf = bytearray()
        self.start = 0
        self.end = 0
        self.pending = 0
        self.pipeline_full = False  # _MAX_PIPELINE queries in flight
        self.write_paused = False  # the transport's unsent bytes passed its high-water mark
        self.over_budget = False  # waiting for the server's total unsent bytes to shrink
        self.paused = False  # reading is paused (for any of the three reasons above)
        self.processing = False
        self.unsent = 0  # this connection's unsent bytes as last reported to the budget
        self.last = 0.0  # loop time of the last complete message received or reply sent
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take a slot in the server's connection table (evicting if it is full)."""
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = tr = cast(asyncio.Transport, transport)
        self.loop = loop = asyncio.get_running_loop()
        self.last = loop.time()
        if not self.server.admit(self):
            tr.close()
            return
        tr.set_write_buffer_limits(high=_UNSENT_HIGH)
        peer = tr.get_extra_info("peername")
        if peer:
            self.host, self.port = peer[0], peer[1]
        self.timer = loop.call_at(self.last + self.server.config.tcp_idle_timeout, self._idle)

    def _touch(self) -> None:
        """Record activity: the idle clock restarts and the connection becomes the
        last one the server would evict."""
        assert self.loop is not None
        self.last = self.loop.time()
        table = self.server.connections
        if self in table:  # not when already released (closing)
            table.move_to_end(self)

    def _idle(self) -> None:
        # One timer per connection, moved only when it fires: activity just records
        # the time, so a busy connection does not re-arm a timer per message.
        self.timer = None
        transport, loop = self.transport, self.loop
        if transport is None or loop is None or transport.is_closing():
            return
        timeout = self.server.config.tcp_idle_timeout
        now = loop.time()
        due = self.last + timeout
        if now < due:
            self.timer = loop.call_at(due, self._idle)
        elif self.pending:  # waiting for the upstream is not idleness
            self.timer = loop.call_at(now + timeout, self._idle)
        else:
            self.close()

    def close(self) -> None:
        """Give up the slot and close; unsent replies are dropped (the client is gone
        or is not reading them)."""
        self.server.release(self)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next read goes: the free end of the input buffer."""
        if self.end == len(self.buf):
            self._make_room()
        return memoryview(self.buf)[self.end :]

    def _make_room(self) -> None:
        # A fresh buffer rather than a resize: the transport may still hold an export of
        # the old one. It fits the unfinished message at the front (its length is in
        # its first two bytes) plus a read.
        buf, start, end = self.buf, self.start, self.end
        need = end - start + _READ_SIZE
        if end - start >= 2:
            need = max(need, 2 + ((buf[start] << 8) | buf[start + 1]))
        fresh = bytearray(need)
        fresh[: end - start] = buf[start:end]
        self.buf, self.start, self.end = fresh, 0, end - start

    def buffer_updated(self, nbytes: int) -> None:
        """Dispatch every complete message just received."""
        self.end += nbytes
        self._process()

    def _process(self) -> None:
        """Dispatch complete messages from the input buffer until there are none or
        reading is paused."""
        if self.processing:  # a reply sent from inside _handle resumed reading
            return
        self.processing = True
        try:
            while not self.paused:
                transport = self.transport
                if transport is None or transport.is_closing():
                    return
                buf, start = self.buf, self.start
                if self.end - start < 2:
                    break
                stop = start + 2 + ((buf[start] << 8) | buf[start + 1])
                if stop > self.end:
                    break
                message = bytes(memoryview(buf)[start + 2 : stop])
                self.start = stop
                self._touch()
                self._handle(message)
            if self.start == self.end:
                self.start = self.end = 0
                if len(self.buf) > _READ_SIZE:  # after a long message
                    self.buf = bytearray(_READ_SIZE)
        finally:
            self.processing = False

    def _handle(self, data: bytes) -> None:
        q, early = early_reply(data, self.metrics)
        if q is None:
            if early is not None:
                self._send(early)
            elif len(data) < 12:
                # Garbage on a stream leaves nothing to resynchronise on.
                self.close()
            return
        self.pending += 1
        if self.pending >= _MAX_PIPELINE and not self.pipeline_full:
            self.pipeline_full = True
            self.update_reading()
        self.dispatcher.run(Context(data, self.host, self.port, True, q), self._reply)

    def _reply(self, out: bytes | None) -> None:
        self.pending -= 1
        if out is not None:
            self._send(out)
        if self.pipeline_full and self.pending < _MAX_PIPELINE // 2:
            self.pipeline_full = False
            self.update_reading()

    def _send(self, out: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(len(out).to_bytes(2, "big") + out)
            self._touch()
            size = transport.get_write_buffer_size()
            if size or self.unsent:
                self.server.budget.report(self, size)

    def update_reading(self) -> None:
        """Pause or resume reading after one of its three conditions changed."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        stop = self.pipeline_full or self.write_paused or self.over_budget
        if stop and not self.paused:
            self.paused = True
            transport.pause_reading()
        elif not stop and self.paused:
            self.paused = False
            self._process()  # what arrived before the pause is answered first
            if not self.paused:
                transport.resume_reading()

    def pause_writing(self) -> None:
        """The transport holds more unsent replies than its high-water mark: stop reading."""
        self.write_paused = True
        self.update_reading()

    def resume_writing(self) -> None:
        """The client caught up with its replies: read again."""
        self.write_paused = False
        if self.transport is not None:
            self.server.budget.report(self, self.transport.get_write_buffer_size())
        self.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        """Release the connection slot."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.release(self)
        self.transport = None


class OutputBudget:
    """The unsent reply bytes of all TCP connections of a server, kept under a total.

    Each connection bounds its own unsent bytes (``_UNSENT_HIGH``); this bounds their sum,
    which many connections that do not read would otherwise make large. A connection
    reports its transport's buffer size after each write that leaves bytes unsent, and
    when the transport drains it; between reports a buffer only shrinks, so ``used``
    never underestimates. While ``used`` is over ``limit``, a connection that reports
    unsent bytes stops reading; every ``_BUDGET_RECHECK`` seconds the waiting
    connections' buffers are measured again, and each resumes once its own buffer is
    empty or the total is back under three quarters of the limit. Connections that keep
    their replies unread are closed by the idle timeout, which frees their share.
    """

    def __init__(self, server: DNSServer, limit: int = _UNSENT_TOTAL) -> None:
        self.server = server
        self.limit = limit
        self.used = 0
        self.waiting: set[TCPConnection] = set()
        self.timer: asyncio.TimerHandle | None = None

    def report(self, conn: TCPConnection, size: int) -> None:
        """``conn``'s transport now holds ``size`` unsent bytes."""
        self.used += size - conn.unsent
        conn.unsent = size
        if size and self.used > self.limit and not conn.over_budget:
            conn.over_budget = True
            self.waiting.add(conn)
            conn.update_reading()
            if self.timer is None:
                loop = asyncio.get_running_loop()
                self.timer = loop.call_later(_BUDGET_RECHECK, self._recheck)

    def forget(self, conn: TCPConnection) -> None:
        """``conn`` is closing: its unsent bytes no longer count."""
        self.used -= conn.unsent
        conn.unsent = 0
        self.waiting.discard(conn)

    def _recheck(self) -> None:
        self.timer = None
        for conn in self.waiting:
            transport = conn.transport
            size = transport.get_write_buffer_size() if transport is not None else 0
            self.used += size - conn.unsent
            conn.unsent = size
        if self.used > self.limit * 3 // 4:
            # Connections that are not waiting may hold less than last reported.
            for conn in self.server.connections:
                if not conn.over_budget and conn.unsent and conn.transport is not None:
                    size = conn.transport.get_write_buffer_size()
                    self.used += size - conn.unsent
                    conn.unsent = size
        relieved = self.used <= self.limit * 3 // 4
        for conn in list(self.waiting):
            if relieved or not conn.unsent:
                self.waiting.discard(conn)
                conn.over_budget = False
                conn.update_reading()
        if self.waiting:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(_BUDGET_RECHECK, self._recheck)

    def close(self) -> None:
        """Stop the recheck timer (the server is stopping)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class DNSServer:
    """UDP and TCP listeners on every configured address, feeding one chain."""

    def __init__(
        self,
        config: DNSConfig,
        chain: Handler,
        metrics: DNSMetrics,
        reuse_port: bool = False,
        fast: FastPath | None = None,
        encrypted: dict[str, list[tuple[str, int]]] | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.dispatcher = _Dispatcher(chain, metrics, fast)
        # Open TCP connections, least recently active first (see TCPConnection._touch).
        self.connections: OrderedDict[TCPConnection, None] = OrderedDict()
        self.budget = OutputBudget(self)
        self.reuse_port = reuse_port
        self._udp: list[asyncio.DatagramTransport] = []
        self._batched: list[mmsg.BatchedUDP] = []
        self.udp_mode = ""  # how UDP is read, for the start-up log
        self._tcp: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []  # bound UDP addresses (port 0 resolved)
        # Bound encrypted listeners per kind (port 0 resolved) and how to close each; each
        # kind lives in its own module (dnsserver.dot, .doh, .doq), imported when used.
        self.encrypted: dict[str, list[tuple[str, int]]] = (
            encrypted if encrypted is not None else {}
        )
        for kind in ("dot", "doh", "doq"):
            self.encrypted.setdefault(kind, [])
        self._closers: list[Callable[[], None]] = []

    def admit(self, conn: TCPConnection) -> bool:
        """Give ``conn`` a slot; when the table is full, close the connection idle longest.

        Unbound and BIND do the same: refusing newcomers instead would let anyone who
        opens ``max_tcp_connections`` connections lock every other client out.
        """
        table = self.connections
        limit = self.config.max_tcp_connections
        while table and len(table) >= limit:
            next(iter(table)).close()
            self.metrics.tcp_evicted += 1
        if len(table) >= limit:  # a limit of 0: no TCP at all
            return False
        table[conn] = None
        self.metrics.tcp_connections += 1
        return True

    def release(self, conn: TCPConnection) -> None:
        """Free ``conn``'s slot (idempotent)."""
        if self.connections.pop(conn, False) is None:
            self.metrics.tcp_connections -= 1
            self.budget.forget(conn)

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
        for kind in ("dot", "doh", "doq"):
            for hp in getattr(self.config, kind):
                await self._listen_encrypted(kind, hp)

    async def _listen_encrypted(self, kind: str, hp: HostPort) -> None:
        import importlib

        module = importlib.import_module(f"clearwall.dnsserver.{kind}")
        try:
            close, port = await module.listen(self, hp)
        except OSError as exc:
            raise ConfigError(f"[dns] {kind} {hp}: {exc.strerror or exc}") from exc
        self._closers.append(close)
        self.encrypted[kind].append((hp.host, port))

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
        for close in self._closers:
            close()
        self._closers.clear()
        pending = list(self.dispatcher.tasks)
        if pending:
            await asyncio.wait(pending, timeout=grace)
        for conn in list(self.connections):
            conn.close()
        self.budget.close()
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
