"""DDR: answers ``_dns.resolver.arpa`` SVCB queries with this gateway's encrypted endpoints
(RFC 9462 Discovery of Designated Resolvers), so that clients upgrade by themselves.

One SVCB record (RFC 9460, DNS parameters per RFC 9461) per encrypted listener, DoT
first, then DoH, then DoQ: ``alpn`` (``dot``; ``h2,http/1.1``; ``doq``), ``port``, for
DoH ``dohpath=/dns-query{?dns}``, and the listener's address as ``ipv4hint`` or
``ipv6hint`` unless it is a wildcard. The target name is the first DNS name of the
listeners' certificate: a client doing verified discovery (RFC 9462 section 4.2) checks
that this certificate also covers the address it sent the query to, so the certificate
should name the gateway's plain DNS addresses too (``clearwall init``'s does, for
loopback). Other types at that name get NODATA. The handler exists only when an
encrypted listener is configured; listeners bound to port 0 are announced with the
port the kernel chose.
"""

from __future__ import annotations

import ipaddress
import struct

from clearwall.dnsserver import wire
from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import OUR_UDP_PAYLOAD, Context
from clearwall.dnsserver.handlers.base import Handler, Result, Services
from clearwall.errors import DNSWireError

NAME = wire.text_to_wire("_dns.resolver.arpa")
TYPE_SVCB = 64
TTL = 300
DOH_PATH = b"/dns-query{?dns}"  # RFC 9461 section 5: a URI template with the dns variable
_ALPN = {"dot": (b"dot",), "doh": (b"h2", b"http/1.1"), "doq": (b"doq",)}
_KEY_ALPN, _KEY_PORT, _KEY_IPV4HINT, _KEY_IPV6HINT, _KEY_DOHPATH = 1, 3, 4, 6, 7


def _param(key: int, value: bytes) -> bytes:
    return struct.pack("!HH", key, len(value)) + value


def svcb_rdata(priority: int, target: bytes, kind: str, host: str, port: int) -> bytes:
    """The SVCB RDATA of one listener (SvcParams in increasing key order, RFC 9460 2.2)."""
    alpn = b"".join(bytes((len(a),)) + a for a in _ALPN[kind])
    params = _param(_KEY_ALPN, alpn) + _param(_KEY_PORT, struct.pack("!H", port))
    address = ipaddress.ip_address(host)
    if not address.is_unspecified:
        key = _KEY_IPV4HINT if address.version == 4 else _KEY_IPV6HINT
        params += _param(key, address.packed)
    if kind == "doh":
        params += _param(_KEY_DOHPATH, DOH_PATH)
    return struct.pack("!H", priority) + target + params


class DDR:
    """Answers ``_dns.resolver.arpa``; passes every other query on."""

    def __init__(
        self, target: bytes, listeners: dict[str, list[tuple[str, int]]], next_handler: Handler
    ) -> None:
        self.target = target
        self.listeners = listeners  # the server's bound encrypted listeners, filled at start
        self.next = next_handler
        self._records: tuple[tuple[object, ...], bytes, int] | None = None

    def __call__(self, ctx: Context) -> Result:
        """The SVCB answer for ``_dns.resolver.arpa``, NODATA for its other types."""
        q = ctx.q
        if q.name_end - 12 != len(NAME) or ctx.name_wire != NAME:
            return self.next(ctx)
        records, count = self._answers() if q.qtype == TYPE_SVCB else (b"", 0)
        data = ctx.data
        body = (
            data[:2]
            + bytes((wire.QR | wire.AA | (data[2] & wire.RD), wire.RA | (data[3] & wire.CD)))
            + wire.counts(1, count, 0, 1 if q.edns else 0)
            + data[12 : q.qend]
            + records
            + (wire.opt_record(OUR_UDP_PAYLOAD, do=q.do) if q.edns else b"")
        )
        return Answer(AnswerKind.LOCAL, body, reason="DDR: designated encrypted resolvers")

    def _answers(self) -> tuple[bytes, int]:
        """The SVCB records of the bound listeners (made again when they change)."""
        snapshot = tuple((k, tuple(v)) for k, v in sorted(self.listeners.items()))
        kept = self._records
        if kept is not None and kept[0] == snapshot:
            return kept[1], kept[2]
        records = []
        priority = 1
        for kind in ("dot", "doh", "doq"):
            for host, port in self.listeners.get(kind, ()):
                rdata = svcb_rdata(priority, self.target, kind, host, port)
                records.append(wire.answer_rr(TYPE_SVCB, TTL, rdata))
                priority += 1
        out = b"".join(records)
        self._records = (snapshot, out, len(records))
        return out, len(records)


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """On when an encrypted listener is configured (its certificate names the target)."""
    assert next_handler is not None
    config = services.config
    if not config.encrypted:
        return None
    from clearwall.dnsserver.tls import certificate_names

    names, _ips = certificate_names(config.tls_cert)
    target = b"\x00"
    for name in names:
        try:
            target = wire.text_to_wire(name)
            break
        except (DNSWireError, UnicodeEncodeError):  # a wildcard or non-ASCII name: not a target
            continue
    return DDR(target, services.listeners, next_handler)
