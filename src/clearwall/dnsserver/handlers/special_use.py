"""Special use: what a resolver answers itself and never forwards (RFC 6761, RFC 6303).

Unbound's default local zones (1.17), with the same data, flags and TTLs:

* ``localhost.`` (RFC 6761 section 6.3): every name at or below it has A 127.0.0.1 and
  AAAA ::1, and the zone's NS and SOA; other types are NODATA.
* The loopback reverse zones ``127.in-addr.arpa.``, ::1's and ::'s (RFC 6303 sections
  4.2 and 4.3), with the PTR of 127.0.0.1 and ::1 to ``localhost.``.
* Empty zones: ``invalid.`` (RFC 6761 section 6.4), ``onion.`` (RFC 7686),
  ``home.arpa.`` (RFC 8375), the reverse zones of this-network, private, link-local,
  limited-broadcast and documentation addresses (RFC 6303 section 4), of the shared
  address space 100.64/10 (RFC 6598, RFC 7793) and of IPv6 ULA, link-local, site-local
  and documentation prefixes (RFC 6303 section 4.4-4.6): NXDOMAIN below the apex, SOA
  and NS at it.

Every answer is authoritative (AA) with TTL 10800 and the SOA ``localhost.
nobody.invalid. 1 3600 1200 604800 10800``, negative ones with that SOA owned by the zone
(RFC 2308 section 3). ``[dns.special_use] forward`` lists built-in zones to forward
instead (an internal resolver upstream may serve ``10.in-addr.arpa`` or ``home.arpa``).
``test.`` (RFC 6761 section 6.2) is not among them, unlike Unbound: test beds, ours
included, serve it.

Queries no resolver forwards are answered here too, as Unbound answers them: classes
other than IN and ANY get REFUSED (CHAOS ``version.bind`` and ``id.server`` would
otherwise reveal the upstream's software and host), zone transfers (AXFR, IXFR) get
REFUSED, and meta-types (OPT, TKEY, TSIG, MAILB, MAILA, 128-248, RFC 6895 section 3.1)
get FORMERR. QTYPE ANY goes on to the RFC 8482 handler.

None of these answers is cached (there is nothing to count down): each costs one
suffix lookup on the general path.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from clearwall.dnsserver import wire
from clearwall.dnsserver.answer import Answer, AnswerKind
from clearwall.dnsserver.context import OUR_UDP_PAYLOAD, Context
from clearwall.dnsserver.handlers.base import Handler, Result, Services

TTL = 10800
_SOA_RDATA = (
    wire.text_to_wire("localhost")
    + wire.text_to_wire("nobody.invalid")
    + struct.pack("!IIIII", 1, 3600, 1200, 604800, 10800)
)
_LOCALHOST = wire.text_to_wire("localhost")
_TYPE_PTR = 12
_TYPE_AXFR = 252
_TYPE_IXFR = 251
# RFC 6895 section 3.1 meta-types, refused with FORMERR as Unbound does.
_META_TYPES = frozenset({wire.TYPE_OPT, 249, 250, 253, 254, *range(128, 249)})
_CLASS_ANY = 255


def _nibbles(address: str) -> str:
    """The ip6.arpa name of a full IPv6 address given as 32 hex digits."""
    return ".".join(reversed(address)) + ".ip6.arpa"


_LOOPBACK6 = _nibbles("0" * 31 + "1")
_UNSPECIFIED6 = _nibbles("0" * 32)


@dataclass(frozen=True)
class Zone:
    """One local zone: its apex and its records by owner, names in lowercase wire form."""

    name: str  # lowercase text, no trailing dot
    apex: bytes
    data: Mapping[bytes, Mapping[int, tuple[bytes, ...]]]
    redirect: bool = False  # every name below answers with the apex's records


def _zone(
    name: str,
    extra: Mapping[str, Mapping[int, tuple[bytes, ...]]] | None = None,
    redirect: bool = False,
) -> Zone:
    """A zone with the SOA and NS at its apex, and ``extra`` records by owner text."""
    apex = wire.text_to_wire(name)
    data: dict[bytes, dict[int, tuple[bytes, ...]]] = {
        apex: {wire.TYPE_SOA: (_SOA_RDATA,), wire.TYPE_NS: (_LOCALHOST,)}
    }
    for owner, records in (extra or {}).items():
        data.setdefault(wire.text_to_wire(owner), {}).update(records)
    return Zone(name, apex, data, redirect)


def _zones() -> dict[str, Zone]:
    ptr_localhost = {_TYPE_PTR: (_LOCALHOST,)}
    loopback = {wire.TYPE_A: (bytes((127, 0, 0, 1)),), wire.TYPE_AAAA: (bytes(15) + b"\x01",)}
    zones = [
        _zone("localhost", {"localhost": loopback}, redirect=True),
        _zone("127.in-addr.arpa", {"1.0.0.127.in-addr.arpa": ptr_localhost}),
        _zone(_LOOPBACK6, {_LOOPBACK6: ptr_localhost}),
        _zone(_UNSPECIFIED6),
        _zone("invalid"),
        _zone("onion"),
        _zone("home.arpa"),
        _zone("0.in-addr.arpa"),
        _zone("10.in-addr.arpa"),
        *(_zone(f"{n}.172.in-addr.arpa") for n in range(16, 32)),
        _zone("168.192.in-addr.arpa"),
        _zone("254.169.in-addr.arpa"),
        _zone("2.0.192.in-addr.arpa"),
        _zone("100.51.198.in-addr.arpa"),
        _zone("113.0.203.in-addr.arpa"),
        _zone("255.255.255.255.in-addr.arpa"),
        *(_zone(f"{n}.100.in-addr.arpa") for n in range(64, 128)),
        _zone("d.f.ip6.arpa"),
        _zone("8.e.f.ip6.arpa"),
        _zone("9.e.f.ip6.arpa"),
        _zone("a.e.f.ip6.arpa"),
        _zone("b.e.f.ip6.arpa"),
        _zone("8.b.d.0.1.0.0.2.ip6.arpa"),
    ]
    return {z.name: z for z in zones}


ZONES: Mapping[str, Zone] = _zones()
"""The built-in local zones by apex name (lowercase, no trailing dot)."""

CLASS_REFUSED = Answer(AnswerKind.REFUSED, reason="class other than IN", ede=b"")
"""Queries of classes other than IN and ANY: REFUSED without EDE, as Unbound."""


class SpecialUse:
    """Answers special-use names and never-forwarded queries; passes the rest on."""

    def __init__(self, zones: Mapping[str, Zone], next_handler: Handler) -> None:
        self.zones = {zone.apex: zone for zone in zones.values()}
        # Every zone's last label: a name ending otherwise is none of ours, which one
        # endswith on the text name (made for the query policy anyway) tells.
        self.endings = tuple(sorted({name.rsplit(".", 1)[-1] for name in zones}))
        self.next = next_handler

    def __call__(self, ctx: Context) -> Result:
        """Answer locally what is ours; everything else goes on."""
        q = ctx.q
        qtype = q.qtype
        if q.qclass != wire.CLASS_IN and q.qclass != _CLASS_ANY:
            return CLASS_REFUSED
        if qtype in (_TYPE_AXFR, _TYPE_IXFR):
            return _echo_error(ctx, wire.REFUSED, "zone transfer")
        if qtype in _META_TYPES:
            return _echo_error(ctx, wire.FORMERR, "meta-type asked")
        if qtype != wire.TYPE_ANY and ctx.qname.endswith(self.endings):
            zone = self._zone_of(ctx.data, q.name_end)
            if zone is not None:
                return _local(ctx, zone)
        return self.next(ctx)

    def _zone_of(self, data: bytes, name_end: int) -> Zone | None:
        """The most specific local zone holding the question name, if any (compared on
        its wire suffixes, so a label holding a dot is never taken for two)."""
        off = 12
        while True:
            zone = self.zones.get(data[off:name_end].lower())
            if zone is not None:
                return zone
            length = data[off]
            if not length:
                return None
            off += length + 1


def _echo_error(ctx: Context, rcode: int, reason: str) -> Answer:
    """REFUSED/FORMERR as Unbound sends them for transfers and meta-types: the query's
    question and OPT, its RD and CD bits, and RA clear (no recursion is offered for it)."""
    data = ctx.data
    q = ctx.q
    body = (
        data[:2]
        + bytes((wire.QR | (data[2] & (wire.OPCODE_MASK | wire.RD)), (data[3] & wire.CD) | rcode))
        + wire.counts(1, 0, 0, 1 if q.edns else 0)
        + data[12 : q.qend]
        + (wire.opt_record(OUR_UDP_PAYLOAD, do=q.do) if q.edns else b"")
    )
    return Answer(AnswerKind.REFUSED, body, reason=reason)


def _local(ctx: Context, zone: Zone) -> Answer:
    """The authoritative answer of ``zone`` for the question (see the module docstring)."""
    q = ctx.q
    qtype = q.qtype
    owner = zone.apex if zone.redirect else ctx.name_wire
    records = zone.data.get(owner)
    rcode = wire.NOERROR
    rdatas: tuple[bytes, ...] = ()
    if records is not None:
        rdatas = records.get(qtype, ())
    elif not any(len(other) > len(owner) and other.endswith(owner) for other in zone.data):
        rcode = wire.NXDOMAIN  # neither a name with records nor an empty non-terminal
    answers = b"".join(wire.answer_rr(qtype, TTL, rdata) for rdata in rdatas)
    authority = b""
    if not rdatas:
        # The SOA owned by the zone's apex: a pointer to where the apex ends the
        # question name.
        apex_at = q.name_end - len(zone.apex)
        authority = (
            struct.pack(
                "!HHHIH", 0xC000 | apex_at, wire.TYPE_SOA, wire.CLASS_IN, TTL, len(_SOA_RDATA)
            )
            + _SOA_RDATA
        )
    data = ctx.data
    body = (
        data[:2]
        + bytes((wire.QR | wire.AA | (data[2] & wire.RD), wire.RA | (data[3] & wire.CD) | rcode))
        + wire.counts(1, len(rdatas), 1 if authority else 0, 1 if q.edns else 0)
        + data[12 : q.qend]
        + answers
        + authority
        + (wire.opt_record(OUR_UDP_PAYLOAD, do=q.do) if q.edns else b"")
    )
    return Answer(AnswerKind.LOCAL, body, reason=f"special-use name (local zone {zone.name})")


def build(services: Services, next_handler: Handler | None) -> Handler | None:
    """Always on; ``[dns.special_use] forward`` leaves zones out."""
    assert next_handler is not None
    forward = set(services.config.special_use.forward)
    zones = {name: zone for name, zone in ZONES.items() if name not in forward}
    return SpecialUse(zones, next_handler)
