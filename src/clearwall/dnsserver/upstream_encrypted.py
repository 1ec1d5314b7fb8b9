"""Encrypted upstreams: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484) to resolvers
the operator names in ``[dns.upstream] servers`` as ``tls://IP:PORT#name`` or
``https://host/dns-query``.

The upstream handler picks this transport per server (plain servers keep the socket
transport), so failover runs across kinds in the configured order. Certificates are
verified against ``[dns.upstream] ca_file`` (else the system's trust store) and the
server's name (or IP address): one that does not verify fails the attempt like a
timeout, and nothing is sent on it.

* **DoT**: one TLS connection per server, reused for every query and pipelined (RFC
  7766 section 6.2.1.1): queries go out as they come, replies are matched by ID, and the
  connection is closed after ``_IDLE`` quiet seconds (or when the server closes it; the
  next query opens another). Queries are padded to 128-octet blocks (RFC 8467 section
  4.1); the upstream's padding is removed from what is relayed.
* **DoH**: POST ``application/dns-message`` with httpx (HTTP/2 when the server offers it,
  many queries as streams of one connection; HTTP/1.1 keep-alive otherwise), imported
  only when such a server is configured. The URL's host name, when it is not an address,
  is resolved by the system's resolver: do not make that resolver this gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from clearwall.config import EncryptedUpstream
from clearwall.dnsserver import tls, wire
from clearwall.errors import DNSWireError

log = logging.getLogger(__name__)

QUERY_PADDING = 128  # RFC 8467 section 4.1: clients pad queries to 128-octet blocks
_IDLE = 10.0  # seconds an unused upstream connection stays open
_MAX_REPLY = 65535


class _DoTLink:
    """One pipelined TLS connection to one DoT upstream, opened on demand."""

    def __init__(self, server: EncryptedUpstream, context: ssl.SSLContext) -> None:
        self.server = server
        self.context = context
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.waiting: dict[bytes, asyncio.Future[bytes]] = {}
        self.idle: asyncio.TimerHandle | None = None

    async def query(self, query: bytes) -> bytes:
        """Send ``query`` on the connection (opening it if needed); its reply."""
        writer = await self._connected()
        qid = query[:2]
        if qid in self.waiting:
            raise OSError("query ID already in flight on this connection")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bytes] = loop.create_future()
        self.waiting[qid] = fut
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            return await fut
        finally:
            self.waiting.pop(qid, None)
            if not self.waiting and self.writer is not None:
                self.idle = loop.call_later(_IDLE, self.close)

    async def _connected(self) -> asyncio.StreamWriter:
        if self.writer is not None and not self.writer.is_closing():
            return self.writer
        if self.connecting is not None:
            await asyncio.shield(self.connecting)
            if self.writer is None:
                raise OSError("connection to the upstream failed")
            return self.writer
        loop = asyncio.get_running_loop()
        self.connecting = loop.create_future()
        try:
            server = self.server
            reader, writer = await asyncio.open_connection(
                server.host, server.port, ssl=self.context, server_hostname=server.name
            )
            self.writer = writer
            self.reader_task = asyncio.ensure_future(self._read(reader, writer))
            return writer
        finally:
            self.connecting.set_result(None)
            self.connecting = None

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        error: BaseException = OSError("the upstream closed the connection")
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                message = await reader.readexactly(size)
                fut = self.waiting.get(message[:2])
                if fut is not None and not fut.done():
                    fut.set_result(message)
        except (asyncio.IncompleteReadError, OSError, ssl.SSLError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                error = exc
        except asyncio.CancelledError:
            error = OSError("connection closed")
        finally:
            if self.writer is writer:
                self.writer = None
            writer.close()
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(OSError(str(error)))

    def close(self) -> None:
        """Close the connection (pending queries fail; the next one reconnects)."""
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.reader_task is not None:
            self.reader_task.cancel()
            self.reader_task = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EncryptedUpstreams:
    """The ``EncryptedTransport`` of the upstream handler: DoT and DoH, one instance per
    gateway, connections kept per server."""

    def __init__(self, ca_file: str = "") -> None:
        self.ca_file = ca_file
        self._dot_context: ssl.SSLContext | None = None
        self._links: dict[EncryptedUpstream, _DoTLink] = {}
        self._http: Any = None  # an httpx.AsyncClient, made at the first DoH query

    async def query(self, server: EncryptedUpstream, query: bytes, timeout: float) -> bytes:
        """Send ``query`` to ``server`` and return its reply (without padding); raise
        OSError or TimeoutError (a certificate that does not verify is an OSError)."""
        async with asyncio.timeout(timeout):
            if server.scheme == "tls":
                reply = await self._dot(server, wire.pad_reply(query, QUERY_PADDING))
            else:
                reply = await self._doh(server, wire.pad_reply(query, QUERY_PADDING), timeout)
        try:
            return wire.strip_padding(reply)
        except (DNSWireError, IndexError, ValueError) as exc:
            raise DNSWireError(f"malformed reply from {server}") from exc

    async def _dot(self, server: EncryptedUpstream, query: bytes) -> bytes:
        if self._dot_context is None:
            self._dot_context = tls.client_context(self.ca_file, (tls.ALPN_DOT,))
        link = self._links.get(server)
        if link is None:
            link = self._links[server] = _DoTLink(server, self._dot_context)
        return await link.query(query)

    async def _doh(self, server: EncryptedUpstream, query: bytes, timeout: float) -> bytes:
        import httpx  # only gateways with a DoH upstream hold the HTTP client

        if self._http is None:
            self._http = httpx.AsyncClient(
                http2=True,
                verify=tls.client_context(self.ca_file),
                timeout=timeout,
                limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=_IDLE),
            )
        try:
            response = await self._http.post(
                server.url,
                content=query,
                headers={
                    "content-type": "application/dns-message",
                    "accept": "application/dns-message",
                },
            )
        except httpx.TimeoutException as exc:
            raise TimeoutError(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise OSError(f"{server}: {exc}") from exc
        if response.status_code != 200:
            raise OSError(f"{server}: HTTP {response.status_code}")
        if response.headers.get("content-type", "").split(";")[0] != "application/dns-message":
            raise OSError(f"{server}: not a DNS message ({response.headers.get('content-type')})")
        body: bytes = response.content
        if len(body) > _MAX_REPLY:
            raise OSError(f"{server}: reply longer than a DNS message")
        return body

    async def close(self) -> None:
        """Close every upstream connection."""
        for link in self._links.values():
            link.close()
        self._links.clear()
        if self._http is not None:
            with contextlib.suppress(Exception):
                await self._http.aclose()
            self._http = None
