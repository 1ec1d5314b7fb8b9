"""The DNS-over-QUIC listener (RFC 9250), with ``aioquic``.

Each query is one client-initiated bidirectional stream carrying a two-octet length and
the message, with message ID 0 (RFC 9250 sections 4.2 and 4.2.1); the reply goes back on
the same stream, framed the same way, and the stream is finished. A query is answered
as over DoT (``encrypted.answer``: stream fast path, then the chain; padded, RFC 9250
section 5.4). A client that breaks the framing, sends a non-zero ID or a message longer
than 65535 octets has its connection closed with DOQ_PROTOCOL_ERROR (0x2); one that
resets a stream only loses that stream. Bounds: at most ``max_tcp_connections``
connections per process (the one idle longest is closed for a newcomer, as over TCP),
the QUIC idle timeout is ``tcp_idle_timeout``, at most 100 streams open per connection
(QUIC's own stream limit) and 65537 octets buffered per stream. Session tickets are
kept in memory (bounded), so a client resumes its session and may send 0-RTT queries.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)
from aioquic.tls import SessionTicket

from clearwall.config import HostPort
from clearwall.dnsserver import encrypted, tls
from clearwall.dnsserver.server import DNSServer

log = logging.getLogger(__name__)

DOQ_NO_ERROR = 0x0  # RFC 9250 section 4.3
DOQ_PROTOCOL_ERROR = 0x2
DOQ_EXCESSIVE_LOAD = 0x4
_MAX_MESSAGE = 2 + 65535  # the length prefix and the longest DNS message
_MAX_TICKETS = 10_000
_MAX_STREAMS = 100


class Tickets:
    """TLS 1.3 session tickets issued by the listener, each usable once (RFC 8446 8.1)."""

    def __init__(self, limit: int = _MAX_TICKETS) -> None:
        self.limit = limit
        self.tickets: OrderedDict[bytes, SessionTicket] = OrderedDict()

    def add(self, ticket: SessionTicket) -> None:
        """Keep a ticket just issued (the oldest goes when full)."""
        self.tickets[ticket.ticket] = ticket
        while len(self.tickets) > self.limit:
            self.tickets.popitem(last=False)

    def pop(self, label: bytes) -> SessionTicket | None:
        """The ticket a client presents, once."""
        return self.tickets.pop(label, None)


class DoQListener:
    """What the connections of one DoQ listener share: the server, padding, the table."""

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.finisher = encrypted.Finisher(server.config.padding_block)
        # Open connections, least recently active first.
        self.connections: OrderedDict[DoQConnection, None] = OrderedDict()

    def admit(self, conn: DoQConnection) -> None:
        """Take a slot; when the table is full, close the connection idle longest."""
        limit = max(1, self.server.config.max_tcp_connections)
        while len(self.connections) >= limit:
            oldest = next(iter(self.connections))
            self.release(oldest)
            oldest.close_with(DOQ_NO_ERROR, "idle connection closed for a new client")
            self.server.metrics.tcp_evicted += 1
        self.connections[conn] = None

    def release(self, conn: DoQConnection) -> None:
        """Free ``conn``'s slot (idempotent)."""
        self.connections.pop(conn, None)

    def close(self) -> None:
        """Close every connection (the server is stopping)."""
        for conn in list(self.connections):
            conn.close_with(DOQ_NO_ERROR, "server stopping")
        self.connections.clear()


class DoQConnection(QuicConnectionProtocol):
    """One client's QUIC connection; every bidirectional stream is one query."""

    def __init__(self, *args: Any, listener: DoQListener, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener = listener
        self.streams: dict[int, bytearray] = {}
        self.host = ""
        self.port = 0

    def close_with(self, code: int, reason: str) -> None:
        """Close the connection with a DoQ error code."""
        self._quic.close(error_code=code, reason_phrase=reason)
        self.transmit()

    def quic_event_received(self, event: QuicEvent) -> None:
        """Collect each stream's query; answer it when the stream ends."""
        if isinstance(event, StreamDataReceived):
            self._data(event)
        elif isinstance(event, HandshakeCompleted):
            paths = getattr(self._quic, "_network_paths", None)
            if paths:
                addr = paths[0].addr
                self.host, self.port = str(addr[0]), int(addr[1])
                if self.host.startswith("::ffff:"):
                    self.host = self.host[7:]
            self.listener.admit(self)
        elif isinstance(event, StreamReset):
            self.streams.pop(event.stream_id, None)
        elif isinstance(event, ConnectionTerminated):
            self.listener.release(self)
            self.streams.clear()

    def _data(self, event: StreamDataReceived) -> None:
        stream_id = event.stream_id
        if stream_id & 0x2:  # a unidirectional stream: DoQ uses none (section 4.2)
            self.close_with(DOQ_PROTOCOL_ERROR, "unidirectional stream")
            return
        buf = self.streams.get(stream_id)
        if buf is None:
            if len(self.streams) >= _MAX_STREAMS:
                self.close_with(DOQ_EXCESSIVE_LOAD, "too many streams")
                return
            buf = self.streams[stream_id] = bytearray()
        buf += event.data
        if len(buf) > _MAX_MESSAGE:
            self.close_with(DOQ_PROTOCOL_ERROR, "message longer than 65535 octets")
            return
        if not event.end_stream:
            return
        del self.streams[stream_id]
        connections = self.listener.connections
        if self in connections:
            connections.move_to_end(self)
        if len(buf) < 14 or int.from_bytes(buf[:2], "big") != len(buf) - 2:
            self.close_with(DOQ_PROTOCOL_ERROR, "bad length prefix")
            return
        message = bytes(buf[2:])
        if message[:2] != b"\x00\x00":  # section 4.2.1: the message ID MUST be 0
            self.close_with(DOQ_PROTOCOL_ERROR, "message ID is not 0")
            return

        def send(out: bytes | None) -> None:
            if out is None:
                self._quic.reset_stream(stream_id, DOQ_PROTOCOL_ERROR)
            else:
                out = self.listener.finisher(out)
                self._quic.send_stream_data(
                    stream_id, len(out).to_bytes(2, "big") + out, end_stream=True
                )
            self.transmit()

        try:
            encrypted.answer(self.listener.server, message, self.host, self.port, send)
        except Exception:  # a stream that is gone (reset, closed) must not cost the listener
            log.debug("DoQ reply not sent", exc_info=True)


async def listen(server: DNSServer, hp: HostPort) -> tuple[Callable[[], None], int]:
    """Start a DoQ listener on ``hp`` feeding ``server``'s chain: (close it, bound port)."""
    config = server.config
    quic = QuicConfiguration(
        is_client=False,
        alpn_protocols=[tls.ALPN_DOQ],
        idle_timeout=max(1.0, config.tcp_idle_timeout),
        max_datagram_frame_size=None,
    )
    try:
        quic.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ValueError) as exc:
        from clearwall.errors import ConfigError

        raise ConfigError(f"[dns] tls_cert/tls_key for DoQ: {exc}") from exc
    listener = DoQListener(server)
    tickets = Tickets()
    # Our own socket rather than aioquic's serve(): several workers share the port
    # (SO_REUSEPORT; the kernel keeps a client's 4-tuple on one worker).
    family = socket.AF_INET6 if ":" in hp.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if server.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((hp.host, hp.port))
    except OSError:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    _transport, quic_server = await loop.create_datagram_endpoint(
        lambda: QuicServer(
            configuration=quic,
            create_protocol=lambda *a, **k: DoQConnection(*a, listener=listener, **k),
            session_ticket_fetcher=tickets.pop,
            session_ticket_handler=tickets.add,
        ),
        sock=sock,
    )
    port = int(sock.getsockname()[1])

    def close() -> None:
        listener.close()
        quic_server.close()

    return close, port
