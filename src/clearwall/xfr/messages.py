"""Zone transfers as DNS messages: AXFR (RFC 5936) and IXFR (RFC 1995) streams, TSIG-signed.

A zone of a million triggers is a few million records: rendering each with dnspython
would take minutes, so records are written here as wire bytes. Record data is spelled
once per policy from ``formats.export.rpz_rdata`` (through dnspython's rdata parser),
and each owner is its relative labels followed by a compression pointer to the
question name, which is the zone apex at offset 12 of every message (RFC 1035 section
4.1.4). Messages carry the question, fill up to ``MAX_MESSAGE`` octets and, when the
request was signed, each carries its own TSIG record (RFC 8945 section 5.3.1: the first
over the request's MAC, the next ones over the previous MAC).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator, Mapping

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from clearwall.formats.export import RPZ_NS, rpz_rdata, rpz_soa
from clearwall.model import Action
from clearwall.xfr.history import Absent, State
from clearwall.xfr.zones import Policy, Zone

MAX_MESSAGE = 16384  # octets before the TSIG record; BIND's transfer message size
FUDGE = 300  # seconds of clock skew a TSIG signature allows (RFC 8945 section 10)
_APEX = b"\xc0\x0c"  # a pointer to the question name
_HEADER = struct.Struct("!HHHHHH")
_RR_TAIL = struct.Struct("!HHIH")
_QR_AA = 0x8400  # QR and AA set, opcode QUERY, rcode NOERROR


def _bytes(value: bytes | None) -> bytes:
    """dnspython's ``to_wire()`` without a file: the bytes (typed as optional there)."""
    assert value is not None
    return value


def owner_wire(owner: str) -> bytes:
    """An owner name relative to the zone, in wire form ending in a pointer to the apex."""
    if owner == "@":
        return _APEX
    return b"".join(bytes((len(label),)) + label.encode("ascii") for label in owner.split(".")) + (
        _APEX
    )


class ZoneRecords:
    """A zone's records in wire form: the SOA for a serial, the records of each trigger."""

    def __init__(
        self,
        zone: str,
        ttl: int,
        timers: tuple[int, int, int],
        sinkhole_v4: str = "0.0.0.0",
        sinkhole_v6: str = "::",
    ) -> None:
        """Spell the records of ``zone`` (absolute name) with these TTL and SOA timers
        (refresh, retry, expire) and sinkhole addresses."""
        self.origin = dns.name.from_text(zone)
        self.origin_wire = _bytes(self.origin.to_wire())
        self.ttl = ttl
        self.timers = timers
        self._tails: dict[Policy, tuple[bytes, ...]] = {}
        for policy in (None, *Action):
            tails = []
            for rdtype, text in rpz_rdata(policy, sinkhole_v4, sinkhole_v6):
                tails.append(self._tail(rdtype, text))
            self._tails[policy] = tuple(tails)
        self._ns = _APEX + self._tail("NS", RPZ_NS)

    def _tail(self, rdtype: str, text: str) -> bytes:
        """Type, class, TTL, length and data of one record (no name compression inside)."""
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        wire = _bytes(rdata.to_wire())
        return _RR_TAIL.pack(rdata.rdtype, dns.rdataclass.IN, self.ttl, len(wire)) + wire

    def soa(self, serial: int) -> bytes:
        """The apex SOA record at ``serial``."""
        return _APEX + self._tail("SOA", rpz_soa(serial, self.ttl, *self.timers))

    def ns(self) -> bytes:
        """The apex NS record (a zone without one does not load in BIND)."""
        return self._ns

    def records(self, owner: str, policy: Policy) -> tuple[bytes, ...]:
        """The records stating ``policy`` at ``owner``."""
        name = owner_wire(owner)
        return tuple(name + tail for tail in self._tails[policy])

    def question(self, rdtype: int) -> bytes:
        """The question section: the zone apex, ``rdtype``, class IN."""
        return self.origin_wire + struct.pack("!HH", rdtype, dns.rdataclass.IN)


def zone_rrs(records: ZoneRecords, zone: Zone) -> Iterator[bytes]:
    """Every trigger's records, owners sorted."""
    policies = zone.policies
    for owner in zone.owners():
        yield from records.records(owner, policies[owner])


def axfr_rrs(records: ZoneRecords, zone: Zone, serial: int) -> Iterator[bytes]:
    """A full transfer: SOA, every record, SOA (RFC 5936 section 2.2)."""
    soa = records.soa(serial)
    yield soa
    yield records.ns()
    yield from zone_rrs(records, zone)
    yield soa


def ixfr_rrs(
    records: ZoneRecords,
    serial: int,
    client_serial: int,
    diff: Mapping[str, tuple[State, State]],
) -> Iterator[bytes]:
    """An incremental transfer of one condensed difference (RFC 1995 section 4): the new
    SOA, the client's SOA and the records deleted, the new SOA and the records added,
    the new SOA."""
    new = records.soa(serial)
    yield new
    yield records.soa(client_serial)
    for owner in sorted(diff):
        before = diff[owner][0]
        if not isinstance(before, Absent):
            yield from records.records(owner, before)
    yield new
    for owner in sorted(diff):
        after = diff[owner][1]
        if not isinstance(after, Absent):
            yield from records.records(owner, after)
    yield new


class Signer:
    """Signs the messages of one response with the key that signed its request."""

    def __init__(self, key: dns.tsig.Key, request_mac: bytes, original_id: int) -> None:
        """Sign with ``key``, chained to the request's MAC (RFC 8945 section 5.3)."""
        self.key = key
        self.request_mac = request_mac
        self.original_id = original_id
        self._ctx: object | None = None

    def sign(self, message: bytes) -> bytes:
        """``message`` with its TSIG record appended (and counted in ARCOUNT)."""
        now = int(time.time())
        template = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            dns.rdataclass.ANY,
            dns.rdatatype.TSIG,
            self.key.algorithm,
            now,
            FUDGE,
            b"",
            self.original_id,
            0,
            b"",
        )
        rdata, self._ctx = dns.tsig.sign(  # type: ignore[no-untyped-call]
            message, self.key, template, now, self.request_mac, self._ctx, True
        )
        data = _bytes(rdata.to_wire())
        tsig = (
            _bytes(self.key.name.to_wire())
            + _RR_TAIL.pack(dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(data))
            + data
        )
        (arcount,) = struct.unpack_from("!H", message, 10)
        return message[:10] + struct.pack("!H", arcount + 1) + message[12:] + tsig


def pack(
    query_id: int,
    question: bytes,
    rrs: Iterable[bytes],
    signer: Signer | None = None,
    limit: int = MAX_MESSAGE,
) -> Iterator[bytes]:
    """The records ``rrs`` packed into as few messages as fit ``limit`` octets each
    (one message at least), each with the question, signed when ``signer`` is given."""
    room = limit - _HEADER.size - len(question)
    batch: list[bytes] = []
    size = 0
    for rr in rrs:
        if batch and size + len(rr) > room:
            yield _message(query_id, question, batch, signer)
            batch, size = [], 0
        batch.append(rr)
        size += len(rr)
    yield _message(query_id, question, batch, signer)


def _message(query_id: int, question: bytes, rrs: list[bytes], signer: Signer | None) -> bytes:
    wire = _HEADER.pack(query_id, _QR_AA, 1, len(rrs), 0, 0) + question + b"".join(rrs)
    return signer.sign(wire) if signer is not None else wire
