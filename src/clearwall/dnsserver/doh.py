"""The DNS-over-HTTPS listener (RFC 8484): HTTP/2 and HTTP/1.1 over TLS 1.3 at /dns-query.

ALPN picks the protocol (``h2`` preferred, ``http/1.1`` otherwise). HTTP/2 is spoken by
libnghttp2 through the small C module ``_doh2`` (the library Unbound's https-port uses:
the pure-Python ``h2`` costs about 200 µs per request, several times Unbound's whole
per-query CPU), or by ``h2`` where that module was not built; HTTP/1.1 by ``h11``. Both
are sans-I/O, run over the same connection machinery as TCP and DoT
(``server.TCPConnection``: the connection table with idle-longest eviction, the idle
timeout, reading paused while 64 queries wait or replies go unread, the server's total
of unsent bytes). A query is ``GET /dns-query?dns=<base64url>`` or ``POST /dns-query``
with an ``application/dns-message`` body of at most 65535 octets (RFC 8484 section 4.1);
it is answered as over DoT (``encrypted.answer``: stream fast path, then the chain;
padded), with ``Cache-Control: max-age`` set to the smallest TTL of the reply's records
(section 5.1). Everything else gets a plain HTTP error and the connection lives on:
404 another path, 405 another method, 415 another content type, 413 a body or URL too
long, 400 bad base64url or a message that is no DNS query (a DNS message with a
readable header but a bad body gets a 200 with FORMERR, as over UDP). HTTP/2 streams
run concurrently (at most ``_MAX_STREAMS`` open, SETTINGS_MAX_CONCURRENT_STREAMS), and
replies wait for the client's flow-control window rather than being dropped.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

from clearwall.config import HostPort
from clearwall.dnsserver import encrypted, tls
from clearwall.dnsserver.server import _MAX_PIPELINE, DNSServer, TCPConnection

try:
    from clearwall.dnsserver import _doh2
except ImportError:  # built only where libnghttp2's headers were installed (setup.py)
    _doh2 = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

USE_NGHTTP2 = _doh2 is not None
"""Whether HTTP/2 connections use ``_doh2`` (tests switch it off to run h2 as well)."""

PATH = b"/dns-query"
MEDIA_TYPE = b"application/dns-message"
MAX_MESSAGE = 65535  # RFC 8484 section 6: a DNS message over DoH is at most this long
_MAX_STREAMS = 100  # concurrent HTTP/2 streams per connection (RFC 7540 recommends >= 100)
# The longest request target kept: /dns-query?dns= and a 65535-octet message in
# base64url (87380 characters); longer ones get 413 (the same bound as _doh2.c's).
_MAX_TARGET = 90_000

# Our own response headers need no checking (a third of h2's cost per request); what
# clients send is validated.
_H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_PADS = (b"", b"===", b"==", b"=")


def decode_dns_param(target: bytes) -> bytes | None:
    """The DNS message in a GET target's ``dns`` parameter (base64url, no padding, RFC
    8484 section 4.1), or None when there is none or it does not decode.

    Strict: only the base64url alphabet (no '+', '/', '=' or whitespace), as
    ``base64.urlsafe_b64decode`` with validation would be, at a third of its cost.
    """
    _path, _, query = target.partition(b"?")
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"dns":
            if not value or len(value) > _MAX_TARGET or value.translate(None, bytes(_B64URL)):
                return None
            try:
                return binascii.a2b_base64(
                    value.translate(_FROM_URLSAFE) + _PADS[len(value) % 4], strict_mode=True
                )
            except (binascii.Error, ValueError):
                return None
    return None


class _Request:
    """One HTTP request being read: what it asked and the body so far."""

    __slots__ = ("body", "error", "message")

    def __init__(self) -> None:
        self.error = 0  # an HTTP status to answer instead of a DNS reply (0: none)
        self.message: bytes | None = None  # the DNS query (GET), else the body
        self.body: bytearray | bytes | None = None


def _classify(method: bytes, target: bytes, content_type: bytes | None) -> _Request:
    """Check a request's method, path and content type (body still to come)."""
    req = _Request()
    path = target.partition(b"?")[0]
    if path != PATH:
        req.error = 404
    elif method == b"GET":
        req.message = decode_dns_param(target)
        if req.message is None:
            req.error = 413 if len(target) > _MAX_TARGET else 400
    elif method == b"POST":
        if (content_type or b"").split(b";")[0].strip().lower() != MEDIA_TYPE:
            req.error = 415
        else:
            req.body = bytearray()
    else:
        req.error = 405
    return req


class DoHConnection(TCPConnection):
    """One client's TLS connection carrying HTTP/2 or HTTP/1.1 DoH requests."""

    def __init__(self, server: DNSServer, finisher: encrypted.Finisher) -> None:
        super().__init__(server)
        self.finisher = finisher
        self.h2: h2.connection.H2Connection | None = None
        self.h2c: Any = None  # a _doh2.Session (libnghttp2) in place of self.h2
        self.h1: h11.Connection | None = None
        self.requests: dict[int, _Request] = {}  # open HTTP/2 streams being read
        self.blocked: dict[int, bytes] = {}  # replies waiting for a flow-control window
        self.h1_busy = False  # an HTTP/1.1 request is being answered
        self.h1_request: _Request | None = None
        self.feeding = False  # inside _process
        # HTTP/2 output made while feeding: one chunk per response, written together at
        # the end of the read with writelines (a TLS record each, one system call).
        self.batch: list[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection, then speak the protocol ALPN chose."""
        super().connection_made(transport)
        if self.transport is None or self.transport.is_closing():
            return
        ssl_object = self.transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn == "h2" and USE_NGHTTP2:
            self.h2c = _doh2.Session(self._h2c_request)
            self._flush()
        elif alpn == "h2":
            conn = self.h2 = h2.connection.H2Connection(config=_H2_CONFIG)
            conn.local_settings = h2.settings.Settings(
                client=False,
                initial_values={
                    h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _MAX_STREAMS,
                    h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 4 * _MAX_TARGET,
                },
            )
            conn.initiate_connection()
            self._flush()
        else:
            self.h1 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_TARGET + 8192)

    # -- input --------------------------------------------------------------------------

    def _process(self) -> None:
        """Feed what was received to the HTTP parser unless reading is paused."""
        if self.processing or self.paused:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        data = bytes(memoryview(self.buf)[self.start : self.end])
        self.start = self.end = 0
        self.processing = self.feeding = True
        self.batch = []
        try:
            if self.h2c is not None:
                if data:
                    self._h2c_feed(data)
            elif self.h2 is not None:
                if data:
                    self._h2_feed(data)
            elif self.h1 is not None:
                if data:
                    self.h1.receive_data(data)
                self._h1_next()  # requests h11 holds may wait for a reply just sent
        finally:
            self.processing = self.feeding = False
            self._flush()
            batch, self.batch = self.batch, None
            if batch and self.transport is not None and not self.transport.is_closing():
                self.transport.writelines(batch)
                self._report()

    def _h2c_feed(self, data: bytes) -> None:
        try:
            self.h2c.receive(data)
        except ValueError:  # a protocol error: the GOAWAY is queued
            self._flush()
            self.close()
            return
        if not self.h2c.wants():  # the client said GOAWAY and nothing is left to send
            self._flush()
            self.close()

    def _h2c_request(
        self,
        stream: int,
        method: bytes,
        target: bytes,
        content_type: bytes | None,
        body: bytes | None,
        too_long: bool,
    ) -> None:
        """One complete HTTP/2 request from ``_doh2`` (nghttp2 checked its framing)."""
        self._touch()
        req = _classify(method, target, content_type)
        if too_long:  # a body over 65535 octets, or a path too long to be kept
            req.body, req.error = None, 413
        elif not req.error:
            if req.body is not None:  # POST
                req.body = body or b""
            elif body is not None:
                req.error = 400  # a body on a GET
        self._run(stream, req)

    def _h2_feed(self, data: bytes) -> None:
        conn = self.h2
        assert conn is not None
        try:
            events = conn.receive_data(data)

        except h2.exceptions.ProtocolError:
            self._flush()  # the GOAWAY h2 queued
            self.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._h2_request(event)
            elif isinstance(event, h2.events.DataReceived):
                self._h2_data(event)
            elif isinstance(event, h2.events.StreamEnded):
                stream_id = event.stream_id or 0
                req = self.requests.pop(stream_id, None)
                if req is not None:
                    self._run(stream_id, req)
            elif isinstance(event, h2.events.WindowUpdated):
                self._h2_unblock()
            elif isinstance(event, h2.events.StreamReset):
                self.requests.pop(event.stream_id or 0, None)
                self.blocked.pop(event.stream_id or 0, None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.close()
                return

    def _h2_request(self, event: h2.events.RequestReceived) -> None:
        method = target = content_type = None
        for name, value in event.headers or ():  # bytes: header_encoding is None
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b"content-type":
                content_type = value
        self._touch()
        stream_id = event.stream_id or 0
        req = _classify(bytes(method or b""), bytes(target or b""), content_type)
        if event.stream_ended is None:  # a body follows (StreamEnded comes after it)
            self.requests[stream_id] = req
        else:
            self._run(stream_id, req)

    def _h2_data(self, event: h2.events.DataReceived) -> None:
        conn = self.h2
        assert conn is not None
        stream_id = event.stream_id
        assert stream_id is not None
        size = event.flow_controlled_length or 0
        if size:  # give the window back at once: bodies are bounded by us, not by it
            conn.acknowledge_received_data(size, stream_id)
        req = self.requests.get(stream_id)
        if req is None or req.error:
            return
        if req.body is None:
            req.error = 400  # a body on a GET
            return
        req.body += event.data or b""
        if len(req.body) > MAX_MESSAGE:
            req.body = None
            req.error = 413

    def _h1_next(self) -> None:
        conn = self.h1
        assert conn is not None
        while not self.h1_busy and not self.paused:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    self._h1_respond(exc.error_status_hint, b"", close=True)
                self.close()
                return
            if isinstance(event, h11.Request):
                self._touch()
                headers = dict(event.headers)
                req = _classify(event.method, event.target, headers.get(b"content-type"))
                length = headers.get(b"content-length")
                if req.body is not None and length is not None and int(length) > MAX_MESSAGE:
                    req.error = 413
                self.h1_request = req
            elif isinstance(event, h11.Data):
                current = self.h1_request
                if current is not None and not current.error:
                    if current.body is None:
                        current.error = 400
                    else:
                        current.body += event.data
                        if len(current.body) > MAX_MESSAGE:
                            current.body, current.error = None, 413
            elif isinstance(event, h11.EndOfMessage):
                done, self.h1_request = self.h1_request, None
                if done is not None:
                    self.h1_busy = True
                    self._run(0, done)
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return
            else:  # NEED_DATA or PAUSED (a response is owed first)
                return

    # -- answering ----------------------------------------------------------------------

    def _run(self, stream: int, req: _Request) -> None:
        """Answer one complete request (``stream``: its HTTP/2 stream; 0 for HTTP/1.1)."""
        if req.error:
            self._respond(stream, req.error, b"")
            return
        message = req.message if req.body is None else bytes(req.body)
        if message is None or len(message) < 12:
            self._respond(stream, 400, b"")
            return
        # HTTP/1.1 answers one request at a time: reading pauses while it is answered,
        # so pipelined requests wait in the socket, not in our memory.
        limit = _MAX_PIPELINE if self.h1 is None else 1
        self.pending += 1
        if self.pending >= limit and not self.pipeline_full:
            self.pipeline_full = True
            self.update_reading()

        def send(out: bytes | None) -> None:
            self.pending -= 1
            if out is None:
                self._respond(stream, 400, b"")
            else:
                padded, age = self.finisher.finish(out)
                self._respond(stream, 200, padded, age)
            if self.pipeline_full and self.pending < max(1, limit // 2):
                self.pipeline_full = False
                self.update_reading()

        encrypted.answer(self.server, message, self.host, self.port, send)

    def _respond(self, stream: int, status: int, body: bytes, age: int = -1) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.h2c is not None:
            self.h2c.respond(stream, status, body, age)
        elif self.h2 is not None:
            self._h2_respond(stream, status, body, age)
        else:
            self._h1_respond(status, body, close=status == 413, age=age)
            if not self.feeding:
                self._h1_next()  # a pipelined request may be waiting for this reply
        self._touch()
        # Each response is a TLS record of its own (not one record per read as on DoT):
        # some clients (dnsperf's DoH mode among them) take at most one DNS response
        # from each TLS read and would lose the others. While a read is being answered
        # the records are gathered and leave in one system call (_process).
        self._flush()

    def _h2_respond(self, stream: int, status: int, body: bytes, age: int) -> None:
        conn = self.h2
        assert conn is not None
        headers: list[tuple[bytes, bytes]] = [(b":status", str(status).encode())]
        if status == 200:
            headers += [
                (b"content-type", MEDIA_TYPE),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"max-age=%d" % max(age, 0)),
            ]
        else:
            headers.append((b"content-length", b"0"))
        try:
            conn.send_headers(stream, headers, end_stream=not body)
        except h2.exceptions.StreamClosedError:
            return  # the client reset the stream meanwhile
        except h2.exceptions.ProtocolError:
            return
        if body:
            self.blocked[stream] = body
            self._h2_unblock()

    def _h2_unblock(self) -> None:
        """Send what the flow-control windows allow of the waiting replies."""
        conn = self.h2
        assert conn is not None
        for stream in list(self.blocked):
            body = self.blocked[stream]
            try:
                window = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                while body and window > 0:
                    chunk, body = body[:window], body[window:]
                    conn.send_data(stream, chunk, end_stream=not body)
                    window = min(
                        conn.local_flow_control_window(stream) if body else 0,
                        conn.max_outbound_frame_size,
                    )
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                body = b""
            if body:
                self.blocked[stream] = body
            else:
                del self.blocked[stream]

    def _h1_respond(self, status: int, body: bytes, close: bool = False, age: int = -1) -> None:
        conn = self.h1
        assert conn is not None
        headers: list[tuple[bytes, bytes]] = [(b"content-length", str(len(body)).encode())]
        if status == 200:
            headers += [(b"content-type", MEDIA_TYPE), (b"cache-control", b"max-age=%d" % age)]
        if close:
            headers.append((b"connection", b"close"))
        out: list[Any] = [h11.Response(status_code=status, headers=headers)]
        if body:
            out.append(h11.Data(data=body))
        out.append(h11.EndOfMessage())
        try:
            data = b"".join(conn.send(event) or b"" for event in out)
        except h11.LocalProtocolError:
            self.close()
            return
        transport = self.transport
        if transport is not None:
            transport.write(data)
        self.h1_busy = False
        if conn.our_state is h11.MUST_CLOSE or close:
            self.close()
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()

    def connection_lost(self, exc: Exception | None) -> None:
        """Release the slot and drop the protocol state (the libnghttp2 session holds a
        bound method of this connection: without this, a cycle)."""
        super().connection_lost(exc)
        self.h2c = self.h2 = self.h1 = None
        self.requests.clear()
        self.blocked.clear()

    def _flush(self) -> None:
        """Write what the HTTP/2 connection has queued (or add it to the read's batch)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.h2c is not None:
            data = self.h2c.output()
        elif self.h2 is not None:
            data = self.h2.data_to_send()
        else:
            return
        if data:
            if self.batch is not None:
                self.batch.append(data)
                return
            transport.write(data)
            self._report()

    def _report(self) -> None:
        transport = self.transport
        if transport is not None:
            size = transport.get_write_buffer_size()
            if size or self.unsent:
                self.server.budget.report(self, size)


async def listen(server: DNSServer, hp: HostPort) -> tuple[Callable[[], None], int]:
    """Start a DoH listener on ``hp`` feeding ``server``'s chain: (close it, bound port)."""
    config = server.config
    context = tls.server_context(config.tls_cert, config.tls_key, tls.ALPN_DOH)
    finisher = encrypted.Finisher(config.padding_block)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: DoHConnection(server, finisher),
        hp.host,
        hp.port,
        ssl=context,
        ssl_handshake_timeout=max(1.0, config.tcp_idle_timeout),
        reuse_address=True,
        reuse_port=server.reuse_port or None,
        backlog=1024,
    )
    return listener.close, int(listener.sockets[0].getsockname()[1])
