"""The primary's listener: SOA queries over UDP and TCP, AXFR (RFC 5936) and IXFR (RFC 1995)
over TCP, each request checked against ``[xfr] allow`` and, when keys exist, TSIG.

``Responder`` turns one request into its response messages with no socket in sight;
``XfrServer`` is the socket code around it. Refusals are logged (at most once per
client every ``LOG_EVERY`` seconds, with a count) and counted; malformed requests get
FORMERR, TSIG failures NOTAUTH with the TSIG error of RFC 8945 section 5.2; nothing a
client sends raises out of the responder.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig

from clearwall.config import HostPort
from clearwall.errors import ConfigError
from clearwall.formats.export import RPZ_NS, rpz_soa
from clearwall.xfr.history import ZoneHistory
from clearwall.xfr.messages import Signer, ZoneRecords, axfr_rrs, ixfr_rrs, pack
from clearwall.xfr.metrics import XfrMetrics

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOG_EVERY = 10.0  # seconds between two refusal log lines for one client
MAX_REQUEST = 4096  # octets: a transfer request is a question, an SOA and a TSIG


@dataclass(frozen=True)
class ServedZone:
    """A zone as served: its history (current version and IXFR steps) and its records."""

    history: ZoneHistory
    records: ZoneRecords


Zones = Mapping[dns.name.Name, ServedZone]


def _header_reply(wire: bytes, rcode: int) -> bytes:
    """A bare reply (no question) for a request too broken to parse: its ID, QR, rcode."""
    (query_id, flags) = struct.unpack_from("!HH", wire)
    opcode = flags & 0x7800
    return struct.pack("!HHHHHH", query_id, 0x8000 | opcode | (rcode & 0xF), 0, 0, 0, 0)


class Responder:
    """Answers one request with its response messages (none: no reply is sent)."""

    def __init__(
        self,
        zones: Callable[[], Zones],
        allow: Sequence[IPNetwork],
        keyring: Mapping[dns.name.Name, dns.tsig.Key],
        metrics: XfrMetrics,
    ) -> None:
        """Serve the zones ``zones()`` returns to clients in ``allow``; with keys, only to
        requests signed with one of them."""
        self.zones = zones
        self.allow = tuple(allow)
        self.keyring = dict(keyring)
        self.metrics = metrics
        self._logged: dict[str, tuple[float, int]] = {}

    def _refuse(self, client: str, reason: str, detail: str) -> None:
        """Count a refusal, and log it unless this client was logged for it just now."""
        self.metrics.refused.labels(reason).inc()
        now = time.monotonic()
        key = f"{client} {reason}"
        last, missed = self._logged.get(key, (0.0, 0))
        if now - last < LOG_EVERY:
            self._logged[key] = (last, missed + 1)
            return
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[key] = (now, 0)
        more = f" ({missed} more since the last report)" if missed else ""
        log.warning("xfr: refused %s from %s: %s%s", reason, client, detail, more)

    def allowed(self, client: str) -> bool:
        """Whether ``client`` lies in an ``[xfr] allow`` network."""
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.allow)

    def answer(self, wire: bytes, client: str, tcp: bool) -> Iterator[bytes]:
        """The response messages for request ``wire`` from ``client``."""
        if len(wire) < 12 or wire[2] & 0x80:
            return  # too short to answer, or a response: never reply to one
        if not self.allowed(client):
            self._refuse(client, "acl", "not in [xfr] allow")
            yield self._simple(wire, dns.rcode.REFUSED)
            return
        try:
            query = dns.message.from_wire(wire, keyring=self.keyring or None)
        except dns.message.UnknownTSIGKey:
            self._refuse(client, "badkey", "unknown TSIG key")
            yield self._tsig_error(wire, dns.rcode.BADKEY)
            return
        except (dns.tsig.BadKey, dns.tsig.BadAlgorithm):
            self._refuse(client, "badkey", "TSIG key name or algorithm does not match")
            yield self._tsig_error(wire, dns.rcode.BADKEY)
            return
        except dns.tsig.BadSignature:
            self._refuse(client, "badsig", "bad TSIG signature")
            yield self._tsig_error(wire, dns.rcode.BADSIG)
            return
        except dns.tsig.BadTime:
            self._refuse(client, "badtime", "TSIG time outside the fudge")
            yield self._tsig_error(wire, dns.rcode.BADTIME)
            return
        except (dns.exception.DNSException, ValueError, struct.error) as exc:
            self.metrics.malformed.inc()
            log.debug("xfr: malformed request from %s: %s", client, exc)
            yield self._simple(wire, dns.rcode.FORMERR)
            return
        if self.keyring and not query.had_tsig:
            self._refuse(client, "unsigned", "request not signed while keys are configured")
            yield self._reply(query, dns.rcode.REFUSED)
            return
        yield from self._query(query, client, tcp)

    def _query(self, query: dns.message.Message, client: str, tcp: bool) -> Iterator[bytes]:
        if query.opcode() != dns.opcode.QUERY:
            self.metrics.requests.labels("other").inc()
            yield self._reply(query, dns.rcode.NOTIMP)
            return
        if len(query.question) != 1:
            self.metrics.malformed.inc()
            yield self._reply(query, dns.rcode.FORMERR)
            return
        question = query.question[0]
        served = self.zones().get(question.name)
        if served is None or question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            self._refuse(client, "zone", f"not a zone served here: {question.name}")
            yield self._reply(query, dns.rcode.REFUSED)
            return
        rdtype = question.rdtype
        history = served.history
        if rdtype == dns.rdatatype.SOA:
            self.metrics.requests.labels("soa").inc()
            yield self._soa(query, served, history.serial)
        elif rdtype == dns.rdatatype.NS:
            self.metrics.requests.labels("ns").inc()
            reply = self._response(query)
            reply.answer.append(
                dns.rrset.from_text(question.name, served.records.ttl, "IN", "NS", RPZ_NS)
            )
            yield reply.to_wire()
        elif rdtype == dns.rdatatype.AXFR:
            self.metrics.requests.labels("axfr").inc()
            if not tcp:  # AXFR over UDP is not defined (RFC 5936 section 4.2)
                self.metrics.malformed.inc()
                yield self._reply(query, dns.rcode.FORMERR)
                return
            zone, serial = history.zone, history.serial
            self.metrics.transfers.labels("axfr").inc()
            yield from pack(
                query.id,
                served.records.question(rdtype),
                axfr_rrs(served.records, zone, serial),
                self._signer(query),
            )
        elif rdtype == dns.rdatatype.IXFR:
            self.metrics.requests.labels("ixfr").inc()
            yield from self._ixfr(query, served, tcp)
        else:
            self._refuse(client, "type", f"{dns.rdatatype.to_text(rdtype)} is not served")
            yield self._reply(query, dns.rcode.REFUSED)

    def _ixfr(self, query: dns.message.Message, served: ServedZone, tcp: bool) -> Iterator[bytes]:
        """RFC 1995: the client's serial is the SOA in the authority section."""
        question = query.question[0]
        soas = [
            r
            for r in query.authority
            if r.rdtype == dns.rdatatype.SOA and r.name == question.name and len(r) == 1
        ]
        if len(soas) != 1 or len(query.authority) != 1:
            self.metrics.malformed.inc()
            yield self._reply(query, dns.rcode.FORMERR)
            return
        soa = soas[0][0]
        assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
        client_serial = int(soa.serial)
        history = served.history
        zone, serial = history.zone, history.serial
        if client_serial == serial or not tcp:
            # Up to date; or over UDP, where the current SOA alone tells the client to
            # come back over TCP (RFC 1995 section 2).
            self.metrics.transfers.labels(
                "ixfr-current" if client_serial == serial else "udp"
            ).inc()
            yield self._soa(query, served, serial)
            return
        signer = self._signer(query)
        question_wire = served.records.question(dns.rdatatype.IXFR)
        diff = history.since(client_serial)
        if diff is None:  # too far behind, or a serial never served: a full transfer
            self.metrics.transfers.labels("ixfr-full").inc()
            rrs = axfr_rrs(served.records, zone, serial)
        else:
            self.metrics.transfers.labels("ixfr").inc()
            rrs = ixfr_rrs(served.records, serial, client_serial, diff)
        yield from pack(query.id, question_wire, rrs, signer)

    # -- small replies -----------------------------------------------------------------

    def _response(self, query: dns.message.Message) -> dns.message.Message:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        return reply

    def _reply(self, query: dns.message.Message, rcode: int) -> bytes:
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.Rcode(rcode))
        return reply.to_wire()

    def _soa(self, query: dns.message.Message, served: ServedZone, serial: int) -> bytes:
        reply = self._response(query)
        records = served.records
        soa_text = rpz_soa(serial, records.ttl, *records.timers)
        reply.answer.append(
            dns.rrset.from_text(query.question[0].name, records.ttl, "IN", "SOA", soa_text)
        )
        return reply.to_wire()

    def _signer(self, query: dns.message.Message) -> Signer | None:
        if not query.had_tsig or not isinstance(query.keyring, dns.tsig.Key):
            return None
        assert query.mac is not None
        return Signer(query.keyring, query.mac, query.id)

    def _simple(self, wire: bytes, rcode: int) -> bytes:
        """A reply with the request's question when it parses, else a bare header."""
        try:
            query = dns.message.from_wire(wire, keyring=False, question_only=True)
        except (dns.exception.DNSException, ValueError, struct.error):
            return _header_reply(wire, rcode)
        reply = dns.message.make_response(query, copy_mode=dns.message.CopyMode.QUESTION)
        reply.set_rcode(dns.rcode.Rcode(rcode))
        return reply.to_wire()

    def _tsig_error(self, wire: bytes, error: int) -> bytes:
        """NOTAUTH with the TSIG error (RFC 8945 section 5.2), unsigned: the key or the
        signature could not be trusted, so there is nothing to sign with."""
        try:
            query = dns.message.from_wire(wire, keyring=False)
        except (dns.exception.DNSException, ValueError, struct.error):
            return _header_reply(wire, dns.rcode.NOTAUTH)
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.NOTAUTH)
        out = reply.to_wire()
        if query.tsig is None:
            return out
        tsig = query.tsig[0]
        rdata = tsig.replace(mac=b"", error=error, time_signed=int(time.time()))
        data: bytes | None = rdata.to_wire()
        assert data is not None
        name = query.tsig.name.to_wire()
        assert name is not None
        record = name + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(data))
        (arcount,) = struct.unpack_from("!H", out, 10)
        return out[:10] + struct.pack("!H", arcount + 1) + out[12:] + record + data


class _Udp(asyncio.DatagramProtocol):
    """SOA queries (and refusals) over UDP: one reply datagram per request at most."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the socket to reply on."""
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """Answer one request (at most one datagram back)."""
        if self.transport is None or len(data) > MAX_REQUEST:
            return
        try:
            reply = next(self.responder.answer(data, str(addr[0]), tcp=False), None)
        except Exception:  # a bug must not stop the listener; it is logged
            log.exception("xfr: error answering a UDP request from %s", addr[0])
            return
        if reply is not None:
            self.transport.sendto(reply, addr)


class XfrServer:
    """Listens on UDP and TCP and runs the responder; ``start``/``stop``."""

    def __init__(
        self,
        responder: Responder,
        idle_timeout: float = 30.0,
        max_connections: int = 64,
    ) -> None:
        """Serve ``responder`` with these TCP limits."""
        self.responder = responder
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.addresses: list[tuple[str, int]] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._udp: list[asyncio.DatagramTransport] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, listen: Sequence[HostPort]) -> None:
        """Bind every address (UDP and TCP on the same port; port 0 picks one)."""
        loop = asyncio.get_running_loop()
        for hp in listen:
            try:
                server = await asyncio.start_server(
                    self._client, hp.host, hp.port, reuse_address=True
                )
                self._servers.append(server)
                host, port = server.sockets[0].getsockname()[:2]
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self.responder), local_addr=(host, port)
                )
            except OSError as exc:
                await self.stop()
                raise ConfigError(
                    f"[xfr] listen: cannot listen on {hp}: {exc.strerror or exc}"
                ) from exc
            self._udp.append(transport)
            self.addresses.append((host, port))
            log.info("xfr: serving RPZ zones on %s (UDP and TCP)", HostPort(host, port))

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        for transport in self._udp:
            transport.close()
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._udp.clear()
        self._servers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        if len(self._connections) >= self.max_connections:
            self.responder.metrics.refused.labels("connections").inc()
            writer.close()
            return
        assert task is not None
        self._connections.add(task)
        metrics = self.responder.metrics
        try:
            while True:
                prefix = await asyncio.wait_for(reader.readexactly(2), self.idle_timeout)
                (length,) = struct.unpack("!H", prefix)
                if length > MAX_REQUEST:
                    metrics.malformed.inc()
                    return
                wire = await asyncio.wait_for(reader.readexactly(length), self.idle_timeout)
                sent = 0
                for message in self.responder.answer(wire, client, tcp=True):
                    writer.write(struct.pack("!H", len(message)) + message)
                    sent += len(message) + 2
                    await writer.drain()
                metrics.bytes_sent.inc(sent)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("xfr: error serving %s over TCP", client)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
