"""The DNS-over-TLS listener (RFC 7858): TCP's framing and discipline inside TLS 1.3.

A DoT connection is a TCP connection (``server.TCPConnection``: RFC 7766 framing,
pipelined queries answered out of order, the connection table with idle-longest
eviction, the idle timeout, bounded unsent replies per connection and in total) whose
bytes are TLS records (ALPN ``dot``). It differs in three ways: a query is first offered
to the stream fast path (repeated hits and blocks, see ``encrypted.answer``); replies
to EDNS queries are padded (RFC 8467); and the replies ready after one read are written
together, one TLS record and one system call for a pipelined burst instead of one each.
A TLS handshake that has not finished within ``tcp_idle_timeout`` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from clearwall.config import HostPort
from clearwall.dnsserver import encrypted, tls
from clearwall.dnsserver.server import DNSServer, TCPConnection

log = logging.getLogger(__name__)


class DoTConnection(TCPConnection):
    """One client's TLS connection carrying RFC 7766-framed queries."""

    def __init__(self, server: DNSServer, finisher: encrypted.Finisher) -> None:
        super().__init__(server)
        self.finisher = finisher
        self.batch: list[bytes] | None = None  # framed replies waiting for the read's end

    def buffer_updated(self, nbytes: int) -> None:
        """Answer every complete query just received; write the replies ready together."""
        self.batch = []
        try:
            super().buffer_updated(nbytes)
        finally:
            batch, self.batch = self.batch, None
            if batch:
                self._write(b"".join(batch))

    def _handle(self, data: bytes) -> None:
        fast = getattr(self.dispatcher.chain, "stream_fast", None)
        if fast is not None:
            try:
                out = fast(data, self.host)
            except Exception:  # a bug there must not cost the query: the chain answers
                log.exception("stream fast path failed")
                out = None
            if out is not None:
                self._send(out)
                return
        super()._handle(data)

    def _send(self, out: bytes) -> None:
        out = self.finisher(out)
        frame = len(out).to_bytes(2, "big") + out
        if self.batch is not None:
            self.batch.append(frame)
        else:
            self._write(frame)

    def _write(self, frames: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(frames)
            self._touch()
            size = transport.get_write_buffer_size()
            if size or self.unsent:
                self.server.budget.report(self, size)


async def listen(server: DNSServer, hp: HostPort) -> tuple[Callable[[], None], int]:
    """Start a DoT listener on ``hp`` feeding ``server``'s chain: (close it, bound port)."""
    config = server.config
    context = tls.server_context(config.tls_cert, config.tls_key, (tls.ALPN_DOT,))
    finisher = encrypted.Finisher(config.padding_block)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: DoTConnection(server, finisher),
        hp.host,
        hp.port,
        ssl=context,
        ssl_handshake_timeout=max(1.0, config.tcp_idle_timeout),
        reuse_address=True,
        reuse_port=server.reuse_port or None,
        backlog=1024,
    )
    return listener.close, int(listener.sockets[0].getsockname()[1])
