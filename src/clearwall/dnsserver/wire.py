"""The hand-written DNS wire codec of the hot path: parse queries, scan replies, build answers.

Pure functions over ``bytes`` (RFC 1035 section 4, EDNS0 RFC 6891, EDE RFC 8914); no
sockets, no clocks. dnspython is about 40x slower per message, so the per-query path
(header, question, OPT) and the answers clearwall synthesizes are handled here, and the
tests check every function against dnspython.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from clearwall.errors import DNSWireError

# Header flag bits (RFC 1035 section 4.1.1), as they sit in bytes 2 and 3.
QR = 0x80  # byte 2
OPCODE_MASK = 0x78  # byte 2
AA = 0x04  # byte 2
TC = 0x02  # byte 2
RD = 0x01  # byte 2
RA = 0x80  # byte 3
AD = 0x20  # byte 3
CD = 0x10  # byte 3

# Response codes (RFC 1035 section 4.1.1, RFC 6891 section 9 for BADVERS).
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16

# Record types and classes used by the codec.
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_HINFO = 13
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_NSEC = 47
TYPE_NSEC3 = 50
TYPE_ANY = 255
CLASS_IN = 1

OPTION_EDE = 15  # RFC 8914 section 2
DO_BIT = 0x8000  # in the OPT TTL's low 16 bits (RFC 3225)
MAX_UDP = 65535
MIN_UDP = 512  # without EDNS (RFC 1035 section 2.3.4)
MAX_NAME = 255

_H = struct.Struct("!HBBHHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_QTAIL = struct.Struct("!HH")


class Question:
    """The parsed question and EDNS facts of a query, as offsets into its raw bytes.

    ``name_end`` is the offset just past the QNAME's root label; the question section
    is ``data[12:qend]``. A plain slotted class: it is built once per query.
    """

    __slots__ = (
        "bits",
        "do",
        "edns",
        "edns_version",
        "name_end",
        "payload",
        "qclass",
        "qend",
        "qtype",
    )

    def __init__(
        self,
        name_end: int,
        qtype: int,
        qclass: int,
        edns: bool = False,
        payload: int = MIN_UDP,
        do: bool = False,
        edns_version: int = 0,
        bits: int = 0,
    ) -> None:
        # ``bits``: the query bits that change an answer (RD, AD, CD, DO, EDNS presence),
        # packed as one int for cache keys: RD=0x01, CD=0x10, AD=0x20, DO=0x100,
        # EDNS=0x200. AD counts: a query with AD=1 asks for the AD bit (RFC 6840 5.7).
        self.bits = bits
        self.name_end = name_end
        self.qend = name_end + 4
        self.qtype = qtype
        self.qclass = qclass
        self.edns = edns
        self.payload = payload  # the client's advertised UDP size, at least 512
        self.do = do
        self.edns_version = edns_version

    def __repr__(self) -> str:
        return (
            f"Question(qtype={self.qtype}, qclass={self.qclass}, edns={self.edns}, "
            f"payload={self.payload}, do={self.do})"
        )


class NotAQuery(DNSWireError):
    """The message is a response (QR=1) or has an opcode other than QUERY."""


def skip_name(data: bytes, off: int) -> int:
    """Offset just past the (possibly compressed) name at ``off``; raise on bad input.

    A compression pointer ends the name in place (RFC 1035 section 4.1.4), so no pointer
    is followed here and loops cannot occur.
    """
    end = len(data)
    total = 0
    while True:
        if off >= end:
            raise DNSWireError("name runs past the message")
        length = data[off]
        if length == 0:
            return off + 1
        if length >= 0xC0:
            if off + 1 >= end:
                raise DNSWireError("truncated compression pointer")
            return off + 2
        if length > 63:
            raise DNSWireError("reserved label type")
        total += length + 1
        if total > MAX_NAME:
            raise DNSWireError("name longer than 255 octets")
        off += length + 1


def read_name(data: bytes, off: int) -> tuple[str, int]:
    """Decode the name at ``off`` to lowercase text without trailing dot, following pointers.

    Returns the text and the offset just past the name as stored at ``off``. Pointers
    must point strictly backwards (that rules out loops). Labels holding a dot or a
    non-printable octet are escaped RFC 1035 style (``\\.``, ``\\DDD``) so they can never
    be mistaken for two labels by the policy matcher.
    """
    labels: list[str] = []
    end = len(data)
    after = -1
    total = 0
    limit = off
    while True:
        if off >= end:
            raise DNSWireError("name runs past the message")
        length = data[off]
        if length >= 0xC0:
            if off + 1 >= end:
                raise DNSWireError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[off + 1]
            if after < 0:
                after = off + 2
            if target >= limit:
                raise DNSWireError("forward or looping compression pointer")
            off = limit = target
            continue
        if length == 0:
            break
        if length > 63:
            raise DNSWireError("reserved label type")
        total += length + 1
        if total > MAX_NAME:
            raise DNSWireError("name longer than 255 octets")
        raw = data[off + 1 : off + 1 + length]
        if len(raw) != length:
            raise DNSWireError("label runs past the message")
        labels.append(label_text(raw.lower()))
        off += length + 1
    return ".".join(labels), (after if after >= 0 else off + 1)


def label_text(raw: bytes) -> str:
    """Presentation form of one lowercase label; escapes anything a matcher could misread."""
    if raw.isalnum() or all(c in _PLAIN for c in raw):
        return raw.decode("ascii")
    out = []
    for c in raw:
        if c in _PLAIN:
            out.append(chr(c))
        elif 0x21 <= c <= 0x7E and c not in b".\\":
            out.append("\\" + chr(c) if c in b'"();@$' else chr(c))
        elif c == 0x2E:
            out.append("\\.")
        elif c == 0x5C:
            out.append("\\\\")
        else:
            out.append(f"\\{c:03d}")
    return "".join(out)


_PLAIN = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")


_PLAIN_DELETE = bytes(_PLAIN) + b"."


def qname_text(data: bytes, name_end: int) -> str:
    """Text form of a query's (uncompressed) question name: ``read_name(data, 12)[0]``,
    with a fast path for the usual names made only of letters, digits, '-' and '_'."""
    parts = []
    off = 12
    length = data[12]
    while length:
        parts.append(data[off + 1 : off + 1 + length])
        off += length + 1
        length = data[off]
    raw = b".".join(parts).lower()
    # Plain when nothing but plain octets remain after deleting them, and no label held
    # a dot of its own (the joined text then has exactly len(parts) - 1 dots).
    if not raw.translate(None, _PLAIN_DELETE) and raw.count(b".") == len(parts) - 1:
        return raw.decode("ascii")
    return read_name(data, 12)[0]


def question_equal(data: bytes, question: bytes) -> bool:
    """Whether ``data`` (a message) holds ``question`` (name, QTYPE, QCLASS) right after its
    header: the name compared without ASCII case (RFC 4343), QTYPE and QCLASS exactly.

    Only the name's octets may be folded: QTYPE 65-90 and 0x4100-0x5AFF hold ASCII
    capitals, so folding the whole question would take a reply for TYPE65 (0x0041) as
    one for TYPE97 (0x0061) and never match a query for HTTPS (65) (RFC 5452 section 9.1).
    Label length octets are at most 63, below 'A', so folding never changes a name's shape.
    """
    name_end = 12 + len(question) - 4
    return (
        len(data) >= name_end + 4
        and data[name_end : name_end + 4] == question[-4:]
        and data[12:name_end].lower() == question[:-4].lower()
    )


def wire_to_text(name_wire: bytes) -> str:
    """Text form (lowercase, no trailing dot) of an uncompressed wire name; "" for the root."""
    return read_name(name_wire, 0)[0]


def text_to_wire(name: str) -> bytes:
    """Uncompressed wire form of a plain text name (no escapes); "" or "." is the root."""
    name = name.rstrip(".")
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) <= 63:
            raise DNSWireError(f"bad label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise DNSWireError("name longer than 255 octets")
    return bytes(out)


def parse_query(data: bytes) -> Question:
    """Parse a query's header, single question and OPT record (RFC 1035, RFC 6891).

    Raises ``NotAQuery`` for responses and non-QUERY opcodes and ``DNSWireError`` for
    anything malformed: the caller answers FORMERR when at least the 12-octet header was
    readable. The question name must not be compressed (nothing precedes it). The
    common layouts (no records, or one OPT right after the question) take a fast path.
    """
    end = len(data)
    if end < 12:
        raise DNSWireError("message shorter than a header")
    if data[2] & 0xF8:
        raise NotAQuery("response or opcode other than QUERY")
    if data[4] or data[5] != 1:
        raise DNSWireError("query must hold exactly one question")
    off = 12
    try:
        length = data[12]
        while length:
            if length > 63:
                raise DNSWireError("compressed or reserved label in question")
            off += length + 1
            length = data[off]
    except IndexError:
        raise DNSWireError("question name runs past the message") from None
    if off > 266:  # 12 + 255 - 1: the name is longer than 255 octets
        raise DNSWireError("name longer than 255 octets")
    name_end = off + 1
    qend = off + 5
    if qend > end:
        raise DNSWireError("question truncated")
    qtype = (data[name_end] << 8) | data[name_end + 1]
    qclass = (data[name_end + 2] << 8) | data[name_end + 3]
    counts_ = data[6:12]
    if counts_ == b"\0\0\0\0\0\0":
        if qend != end:
            raise DNSWireError("trailing octets after the question")
        return Question(name_end, qtype, qclass, bits=(data[2] & 0x01) | (data[3] & 0x30))
    if (
        counts_ == b"\0\0\0\0\0\1"
        and qend + 11 <= end
        and data[qend] == 0
        and data[qend + 1] == 0
        and data[qend + 2] == TYPE_OPT
    ):
        # RFC 6891 section 6.1.2: root owner, TYPE, CLASS=payload, TTL=ext-rcode,
        # version, DO and Z, then RDLEN.
        if qend + 11 + ((data[qend + 9] << 8) | data[qend + 10]) != end:
            raise DNSWireError("OPT record length does not match the message")
        payload = (data[qend + 3] << 8) | data[qend + 4]
        do = data[qend + 7] & 0x80
        return Question(
            name_end,
            qtype,
            qclass,
            True,
            payload if payload > MIN_UDP else MIN_UDP,
            bool(do),
            data[qend + 6],
            (data[2] & 0x01) | (data[3] & 0x30) | 0x200 | (0x100 if do else 0),
        )
    q = Question(name_end, qtype, qclass)
    an = (data[6] << 8) | data[7]
    ns = (data[8] << 8) | data[9]
    ar = (data[10] << 8) | data[11]
    if ar:
        _parse_opt(data, qend, an + ns, ar, q)
    elif _skip_records(data, qend, an + ns) != end:
        raise DNSWireError("trailing octets after the last record")
    q.bits = (data[2] & 0x01) | (data[3] & 0x30) | (0x200 if q.edns else 0) | (0x100 if q.do else 0)
    return q


def _skip_records(data: bytes, off: int, count: int) -> int:
    end = len(data)
    for _ in range(count):
        off = skip_name(data, off)
        if off + 10 > end:
            raise DNSWireError("record header truncated")
        rdlen = _U16.unpack_from(data, off + 8)[0]
        off += 10 + rdlen
        if off > end:
            raise DNSWireError("record data truncated")
    return off


def _parse_opt(data: bytes, off: int, skip: int, ar: int, q: Question) -> None:
    off = _skip_records(data, off, skip)
    end = len(data)
    seen = False
    for _ in range(ar):
        name_start = off
        off = skip_name(data, off)
        if off + 10 > end:
            raise DNSWireError("record header truncated")
        rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, off)
        off += 10 + rdlen
        if off > end:
            raise DNSWireError("record data truncated")
        if rtype == TYPE_OPT:
            # RFC 6891 section 6.1.1: one OPT, owned by the root.
            if seen or data[name_start] != 0:
                raise DNSWireError("duplicate OPT or OPT not owned by the root")
            seen = True
            q.edns = True
            q.payload = min(max(rclass, MIN_UDP), MAX_UDP)
            q.edns_version = (ttl >> 16) & 0xFF
            q.do = bool(ttl & DO_BIT)
    if off != end:
        raise DNSWireError("trailing octets after the last record")


def response_flags(
    query_b2: int, rcode: int, *, aa: bool = False, ad: bool = False, cd: bool = False
) -> bytes:
    """Bytes 2-3 of a response header: QR, the query's opcode and RD echoed, RA set."""
    b2 = QR | (query_b2 & (OPCODE_MASK | RD)) | (AA if aa else 0)
    b3 = RA | (AD if ad else 0) | (CD if cd else 0) | (rcode & 0x0F)
    return bytes((b2, b3))


def counts(qd: int, an: int, ns: int, ar: int) -> bytes:
    """Bytes 4-11 of a header: the four section counts."""
    return struct.pack("!HHHH", qd, an, ns, ar)


def opt_record(
    payload: int, *, do: bool = False, ext_rcode: int = 0, options: bytes = b""
) -> bytes:
    """An OPT pseudo-record (RFC 6891 section 6.1.2) with the given options."""
    ttl = ((ext_rcode & 0xFF) << 24) | (DO_BIT if do else 0)
    return b"\x00" + struct.pack("!HHIH", TYPE_OPT, payload, ttl, len(options)) + options


def ede_option(code: int, text: bytes = b"") -> bytes:
    """An Extended DNS Error option (RFC 8914 section 2): INFO-CODE then EXTRA-TEXT."""
    return struct.pack("!HHH", OPTION_EDE, 2 + len(text), code) + text


def answer_rr(rtype: int, ttl: int, rdata: bytes, rclass: int = CLASS_IN) -> bytes:
    """A record owned by the question name (compression pointer to offset 12)."""
    return b"\xc0\x0c" + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def synthetic_soa(ttl: int, serial: int) -> bytes:
    """A SOA owned by the question name whose MINIMUM makes negative answers short-lived.

    RFC 2308 section 3: a negative answer is cached for min(SOA TTL, MINIMUM); without
    a SOA, downstream caches would not cache the block at all or guess a lifetime.
    """
    rdata = (
        b"\xc0\x0c"  # MNAME: the name itself (a synthesized answer has no real primary)
        + b"\x07blocked\xc0\x0c"  # RNAME
        + struct.pack("!IIIII", serial & 0xFFFFFFFF, ttl, ttl, ttl, ttl)
    )
    return answer_rr(TYPE_SOA, ttl, rdata)


def error_reply(data: bytes, rcode: int, q: Question | None = None, ede: bytes = b"") -> bytes:
    """A bare error reply: FORMERR/SERVFAIL/REFUSED/NOTIMP/BADVERS, echoing what is readable.

    With a parsed question the question is echoed and, for an EDNS client, an OPT with
    ``ede`` (a ready EDE option) is appended; a header-only query gets a header-only reply.
    """
    b2 = data[2]
    if q is None:
        return data[:2] + response_flags(b2, rcode) + counts(0, 0, 0, 0)
    if q.edns:
        opt = opt_record(1232, do=q.do, ext_rcode=rcode >> 4, options=ede)
        return (
            data[:2]
            + response_flags(b2, rcode, cd=bool(data[3] & CD))
            + counts(1, 0, 0, 1)
            + data[12 : q.qend]
            + opt
        )
    return (
        data[:2]
        + response_flags(b2, rcode, cd=bool(data[3] & CD))
        + counts(1, 0, 0, 0)
        + data[12 : q.qend]
    )


def rejection_reply(data: bytes, rcode: int) -> bytes:
    """FORMERR or NOTIMP to a query that ``parse_query`` refused (its header readable).

    The question section is echoed when it reads whole, and an OPT is added when the
    query holds one anywhere it can be found, whatever its owner or how many there are
    (the DO bit of the first is echoed): a reply without OPT tells an EDNS client the
    server has no EDNS (RFC 6891 sections 6.1.1 and 7), the RFC 7873 cookie probe
    (QDCOUNT=0 with a COOKIE option) included.
    """
    qd, an, ns, ar = struct.unpack_from("!HHHH", data, 4)
    question = b""
    opt_ttl = -1
    off = 12
    try:
        for _ in range(qd):
            at = off
            while data[at]:
                if data[at] > 63:
                    raise DNSWireError("compressed or reserved label in question")
                at += data[at] + 1
            off = at + 5
            if off > len(data):
                raise DNSWireError("question truncated")
        question = data[12:off]
        for _ in range(an + ns + ar):
            at = skip_name(data, off)
            if at + 10 > len(data):
                break
            rtype, _rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, at)
            if rtype == TYPE_OPT and opt_ttl < 0:
                opt_ttl = ttl
            off = at + 10 + rdlen
    except (DNSWireError, IndexError):
        pass  # echo what was readable
    head = data[:2] + response_flags(data[2], rcode, cd=bool(data[3] & CD))
    if opt_ttl < 0:
        return head + counts(qd if question else 0, 0, 0, 0) + question
    opt = opt_record(1232, do=bool(opt_ttl & DO_BIT))
    return head + counts(qd if question else 0, 0, 0, 1) + question + opt


def truncated_reply(reply: bytes, qend: int, opt: bytes = b"") -> bytes:
    """Header and question of ``reply`` with TC set and no records (RFC 1035 4.2.1, 7766)."""
    return (
        reply[:2]
        + bytes((reply[2] | TC, reply[3]))
        + counts(1, 0, 0, 1 if opt else 0)
        + reply[12:qend]
        + opt
    )


def build_query(
    qid: int,
    name_wire: bytes,
    qtype: int,
    qclass: int,
    *,
    rd: bool = True,
    ad: bool = False,
    cd: bool = False,
    do: bool = False,
    payload: int = 1232,
) -> bytes:
    """An upstream query with one question and an OPT record (``ad``: ask for the AD bit
    without asking for DNSSEC records, RFC 6840 section 5.7)."""
    flags = bytes((RD if rd else 0, (AD if ad else 0) | (CD if cd else 0)))
    return (
        _U16.pack(qid)
        + flags
        + counts(1, 0, 0, 1)
        + name_wire
        + _QTAIL.pack(qtype, qclass)
        + opt_record(payload, do=do)
    )


@dataclass(slots=True)
class ReplyScan:
    """What the data plane needs from an upstream reply, found in one pass."""

    rcode: int
    ancount: int
    # Tuples, not lists: a scan lives as long as its cached answer, and an empty tuple
    # is one shared object.
    ttl_offsets: tuple[int, ...] = ()  # every non-OPT TTL field
    min_ttl: int | None = None  # smallest TTL among answer records (None: no answers)
    soa_ttl: int | None = None  # min(SOA TTL, SOA MINIMUM) from the authority section
    min_all_ttl: int | None = None  # smallest TTL of any non-OPT record
    cnames: tuple[str, ...] = ()  # CNAME targets in the answer
    addresses: tuple[str, ...] = ()  # A/AAAA addresses in the answer
    opt_start: int = -1
    opt_end: int = -1
    truncated: bool = False


def scan_reply(data: bytes) -> ReplyScan:
    """Walk every record of a reply once (RFC 1035 section 4.1.3); raise on malformed input."""
    if len(data) < 12:
        raise DNSWireError("reply shorter than a header")
    _id, b2, b3, qd, an, ns, ar = _H.unpack_from(data)
    scan = ReplyScan(rcode=b3 & 0x0F, ancount=an, truncated=bool(b2 & TC))
    off = 12
    end = len(data)
    for _ in range(qd):
        off = skip_name(data, off) + 4
        if off > end:
            raise DNSWireError("question truncated")
    offsets: list[int] = []
    cnames: list[str] = []
    addresses: list[str] = []
    for index in range(an + ns + ar):
        start = off
        off = skip_name(data, off)
        if off + 10 > end:
            raise DNSWireError("record header truncated")
        rtype, _rclass, ttl, rdlen = _RR_FIXED.unpack_from(data, off)
        rdata_at = off + 10
        off = rdata_at + rdlen
        if off > end:
            raise DNSWireError("record data truncated")
        if rtype == TYPE_OPT:
            if index < an + ns or scan.opt_start >= 0:
                raise DNSWireError("misplaced or duplicate OPT")
            scan.opt_start, scan.opt_end = start, off
            scan.rcode |= ((ttl >> 24) & 0xFF) << 4
            continue
        if ttl > 0x7FFFFFFF:  # RFC 2181 section 8: treat as zero
            ttl = 0
        offsets.append(rdata_at - 6)
        if scan.min_all_ttl is None or ttl < scan.min_all_ttl:
            scan.min_all_ttl = ttl
        if index < an:
            if scan.min_ttl is None or ttl < scan.min_ttl:
                scan.min_ttl = ttl
            if rtype == TYPE_CNAME:
                cnames.append(read_name(data, rdata_at)[0])
            elif rtype == TYPE_A and rdlen == 4:
                addresses.append(socket.inet_ntop(socket.AF_INET, data[rdata_at:off]))
            elif rtype == TYPE_AAAA and rdlen == 16:
                addresses.append(socket.inet_ntop(socket.AF_INET6, data[rdata_at:off]))
        elif index < an + ns and rtype == TYPE_SOA:
            at = skip_name(data, skip_name(data, rdata_at))
            if at + 20 > off:
                raise DNSWireError("SOA record data truncated")
            minimum = _U32.unpack_from(data, at + 16)[0]
            scan.soa_ttl = min(ttl, minimum)
    if off != end:
        raise DNSWireError("trailing octets after the last record")
    if offsets:
        scan.ttl_offsets = tuple(offsets)
    if cnames:
        scan.cnames = tuple(cnames)
    if addresses:
        scan.addresses = tuple(addresses)
    return scan


def ede_options(reply: bytes, opt_start: int, opt_end: int) -> list[bytes]:
    """The EDE options (RFC 8914 section 2) of the OPT record at ``opt_start``, each as
    its option bytes (code, length, INFO-CODE, EXTRA-TEXT), ready to be sent on."""
    out = []
    off = opt_start + 11  # owner (root), TYPE, CLASS, TTL, RDLENGTH
    while off + 4 <= opt_end:
        code, length = struct.unpack_from("!HH", reply, off)
        end = off + 4 + length
        if end > opt_end:
            break
        if code == OPTION_EDE and length >= 2:
            out.append(reply[off:end])
        off = end
    return out


def clamp_ttls(reply: bytes, offsets: Sequence[int], low: int, high: int) -> bytes:
    """Copy of ``reply`` with every TTL at ``offsets`` within ``low``..``high`` (a TTL
    above 2**31 - 1 counts as 0 first, RFC 2181 section 8); ``reply`` itself when no
    TTL changes."""
    buf: bytearray | None = None
    for off in offsets:
        ttl = _U32.unpack_from(reply, off)[0]
        new = 0 if ttl > 0x7FFFFFFF else ttl
        new = low if new < low else high if new > high else new
        if new != ttl:
            if buf is None:
                buf = bytearray(reply)
            _U32.pack_into(buf, off, new)
    return reply if buf is None else bytes(buf)


def minimal_sections(reply: bytes, qtype: int) -> bytes:
    """``reply`` without the sections a client does not need, as Unbound's default
    ``minimal-responses: yes`` sends it (less amplification, fewer cache bytes).

    A positive answer (NOERROR with an RRset of the asked type, QTYPE not NS, no
    NSEC/NSEC3 in the authority section: a wildcard proof must stay) keeps only its
    answer section; a negative one (NXDOMAIN, or NOERROR without answers whose
    authority section holds a SOA or no NS) keeps its authority section; anything else
    (referrals, NS answers, CNAMEs to nothing of the type) stays whole. The OPT record
    always stays. Records only point backwards (RFC 1035 section 4.1.4), so cutting
    after a section keeps every name readable.
    """
    _id, _b2, b3, qd, an, ns, ar = _H.unpack_from(reply)
    if qd != 1 or not (ns or ar):
        return reply
    off = skip_name(reply, 12) + 4
    answer_types = set()
    authority_types = set()
    answer_end = authority_end = off
    opt = b""
    extra = False
    for index in range(an + ns + ar):
        start = off
        at = skip_name(reply, off)
        if at + 10 > len(reply):
            raise DNSWireError("record header truncated")
        rtype, _rclass, _ttl, rdlen = _RR_FIXED.unpack_from(reply, at)
        off = at + 10 + rdlen
        if index < an:
            answer_types.add(rtype)
            answer_end = authority_end = off
        elif index < an + ns:
            authority_types.add(rtype)
            authority_end = off
        elif rtype == TYPE_OPT:
            opt = reply[start:off]
        else:
            extra = True
    rcode = b3 & 0x0F
    if (
        rcode == NOERROR
        and qtype in answer_types
        and qtype != TYPE_NS
        and not authority_types & {TYPE_NSEC, TYPE_NSEC3}
    ):
        keep, nscount = answer_end, 0
    elif rcode == NXDOMAIN or (
        rcode == NOERROR
        and not an
        and (TYPE_SOA in authority_types or TYPE_NS not in authority_types)
    ):
        if not extra:
            return reply
        keep, nscount = authority_end, ns
    else:
        return reply
    return reply[:6] + struct.pack("!HHH", an, nscount, 1 if opt else 0) + reply[12:keep] + opt


def cname_loop(reply: bytes) -> bool:
    """Whether the CNAME chain of the answer section, followed from the question name,
    comes back to a name it passed (RFC 1034 section 3.6.2: a chain must end)."""
    an = _U16.unpack_from(reply, 6)[0]
    name, off = read_name(reply, 12)
    off += 4
    links: dict[str, str] = {}
    for _ in range(an):
        owner, at = read_name(reply, off)
        rtype, _rclass, _ttl, rdlen = _RR_FIXED.unpack_from(reply, at)
        if rtype == TYPE_CNAME:
            links[owner] = read_name(reply, at + 10)[0]
        off = at + 10 + rdlen
    seen = {name}
    while name in links:
        name = links[name]
        if name in seen:
            return True
        seen.add(name)
    return False


def append_option(reply: bytes, opt_start: int, option: bytes) -> bytes:
    """Copy of ``reply`` with ``option`` added to its OPT record, which must be last."""
    rdlen_at = opt_start + 9  # owner (root, 1), TYPE, CLASS, TTL, then RDLENGTH
    rdlen = _U16.unpack_from(reply, rdlen_at)[0] + len(option)
    return reply[:rdlen_at] + _U16.pack(rdlen) + reply[rdlen_at + 2 :] + option


def patch_ttls(
    reply: bytes, offsets: Sequence[int], ttls: Sequence[int], age: int, floor: int = 0
) -> bytes:
    """Copy of ``reply`` with each TTL at ``offsets`` lowered by ``age`` (never below floor)."""
    buf = bytearray(reply)
    pack = _U32.pack_into
    for off, ttl in zip(offsets, ttls, strict=True):
        pack(buf, off, max(ttl - age, floor))
    return bytes(buf)


def read_ttls(reply: bytes, offsets: Sequence[int]) -> tuple[int, ...]:
    """The TTL values at ``offsets``, clamped per RFC 2181 section 8."""
    out = []
    for off in offsets:
        ttl = _U32.unpack_from(reply, off)[0]
        out.append(0 if ttl > 0x7FFFFFFF else ttl)
    return tuple(out)


def set_ttls(reply: bytes, offsets: Sequence[int], ttl: int) -> bytes:
    """Copy of ``reply`` with every TTL at ``offsets`` set to ``ttl`` (serve-stale)."""
    buf = bytearray(reply)
    for off in offsets:
        _U32.pack_into(buf, off, ttl)
    return bytes(buf)


OPTION_PADDING = 12  # RFC 7830 section 3


def find_opt(reply: bytes) -> tuple[int, int]:
    """(start, end) of the reply's OPT record, (-1, -1) when it has none; raise on
    malformed input. The OPT record is found wherever it sits in the additional section."""
    _id, _b2, _b3, qd, an, ns, ar = _H.unpack_from(reply)
    off = 12
    for _ in range(qd):
        off = skip_name(reply, off) + 4
    end = len(reply)
    for index in range(an + ns + ar):
        start = off
        off = skip_name(reply, off)
        if off + 10 > end:
            raise DNSWireError("record header truncated")
        rtype = (reply[off] << 8) | reply[off + 1]
        rdlen = (reply[off + 8] << 8) | reply[off + 9]
        off += 10 + rdlen
        if off > end:
            raise DNSWireError("record data truncated")
        if rtype == TYPE_OPT and index >= an + ns:
            return start, off
    return -1, -1


def _without_option(reply: bytes, opt_start: int, opt_end: int, code: int) -> bytes:
    """``reply`` with every ``code`` option of its OPT record (at opt_start) removed."""
    kept = []
    off = opt_start + 11
    found = False
    while off + 4 <= opt_end:
        option, length = struct.unpack_from("!HH", reply, off)
        nxt = off + 4 + length
        if option == code:
            found = True
        else:
            kept.append(reply[off:nxt])
        off = nxt
    if not found:
        return reply
    rdata = b"".join(kept)
    return (
        reply[: opt_start + 9] + _U16.pack(len(rdata)) + rdata + reply[opt_end:]  # OPT RDLEN
    )


def strip_padding(reply: bytes) -> bytes:
    """``reply`` without any EDNS Padding option (RFC 7830): an encrypted upstream's
    padding means nothing to our client, and plain transports are never padded."""
    start, end = find_opt(reply)
    if start < 0:
        return reply
    return _without_option(reply, start, end, OPTION_PADDING)


def pad_reply(reply: bytes, block: int) -> bytes:
    """``reply`` padded to a multiple of ``block`` octets with an RFC 7830 Padding option
    (RFC 8467 section 4.1, Block-Length Padding), for an encrypted transport.

    Only a reply that already carries an OPT record is padded (RFC 7830 section 3: never
    when the query had no EDNS, and our replies to EDNS queries always carry one); a
    Padding option already there is replaced. A reply whose padded length would pass
    65535 octets is left unpadded (it cannot grow).
    """
    if block <= 0:
        return reply
    start, end = find_opt(reply)
    if start < 0:
        return reply
    reply = _without_option(reply, start, end, OPTION_PADDING)
    end = start + 11 + _U16.unpack_from(reply, start + 9)[0]
    size = len(reply) + 4
    fill = -size % block
    if size + fill > MAX_UDP:
        return reply
    rdlen = end - start - 11 + 4 + fill
    option = struct.pack("!HH", OPTION_PADDING, fill) + bytes(fill)
    return reply[: start + 9] + _U16.pack(rdlen) + reply[start + 11 : end] + option + reply[end:]
