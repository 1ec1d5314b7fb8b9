"""One query-log record: its stored form, and the truncation of client addresses."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

Key = tuple[int, str, bytes, bool, int]
"""How the data plane groups answers: (second on ``time.perf_counter``, client host, the
query after its ID, tcp, rcode or -1). The host never leaves the DNS process."""

Shipped = tuple[int, int, float, float, str, str, bytes, str, int, tuple[int, ...], bool]
"""One group as shipped to the writer: (second, count, latency sum, latency max, client
prefix, jurisdiction, query after its ID, decision, rcode or -1, order ids, tcp)."""

COLUMNS = (
    "time",
    "client",
    "jurisdiction",
    "qname",
    "qtype",
    "decision",
    "orders",
    "rcode",
    "latency_ms",
    "transport",
    "count",
    "latency_max_ms",
)


def truncate(host: str, v4: int, v6: int) -> str:
    """The network prefix of a client address (``192.0.2.0/24``), never the address.

    IPv4-mapped IPv6 addresses are truncated as IPv4; a zone index is dropped; anything
    that is not an address becomes ``unknown``.
    """
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = v4 if ip.version == 4 else v6
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


@dataclass(frozen=True, slots=True)
class Entry:
    """Identical answers within one second, counted: what the console shows and the
    export writes (``count`` is 1 for a query asked once that second)."""

    time: float  # Unix seconds, UTC, to the second
    client: str  # the client's network prefix, e.g. 192.0.2.0/24
    jurisdiction: str  # "" when the client is in none
    qname: str
    qtype: int
    decision: str  # allow, block, refuse, ratelimit, fail
    orders: tuple[int, ...]  # the orders cited by the answer (blocks: deciding first)
    rcode: int | None  # None: nothing was sent (rate limited)
    latency_ms: float  # mean, from the query's parse to its reply, inside the gateway
    transport: str  # udp or tcp
    count: int = 1  # answers this record stands for
    latency_max_ms: float = 0.0

    @property
    def when(self) -> dt.datetime:
        """The time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.time, dt.UTC)

    @property
    def qtype_text(self) -> str:
        """The query type's mnemonic (A, AAAA, …) or its number."""
        import dns.rdatatype

        try:
            return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(self.qtype))
        except ValueError:
            return str(self.qtype)

    @property
    def rcode_text(self) -> str:
        """The rcode's mnemonic, or ``-`` when nothing was sent."""
        if self.rcode is None:
            return "-"
        import dns.rcode

        try:
            return dns.rcode.to_text(dns.rcode.Rcode.make(self.rcode))
        except ValueError:
            return str(self.rcode)

    def to_json(self) -> dict[str, Any]:
        """The export form (JSON lines): ISO time, names for qtype and rcode."""
        return {
            "time": self.when.isoformat().replace("+00:00", "Z"),
            "client": self.client,
            "jurisdiction": self.jurisdiction,
            "qname": self.qname,
            "qtype": self.qtype_text,
            "decision": self.decision,
            "orders": list(self.orders),
            "rcode": self.rcode_text if self.rcode is not None else None,
            "latency_ms": round(self.latency_ms, 3),
            "latency_max_ms": round(self.latency_max_ms, 3),
            "transport": self.transport,
            "count": self.count,
        }


def encode_orders(orders: tuple[int, ...]) -> str:
    """Order ids as stored: ``,12,15,`` so that ``LIKE '%,12,%'`` finds one exactly."""
    return "," + ",".join(str(o) for o in orders) + "," if orders else ""


def decode_orders(text: str) -> tuple[int, ...]:
    """The inverse of ``encode_orders``."""
    return tuple(int(x) for x in text.strip(",").split(",") if x)


def question_of(after_id: bytes) -> tuple[str, int]:
    """(qname, qtype) of a query the gateway already parsed (so well-formed), given
    without its 2-byte ID."""
    from clearwall.dnsserver.wire import qname_text

    data = b"\0\0" + after_id
    off = 12
    length = data[off]
    while length:
        off += length + 1
        length = data[off]
    name_end = off + 1
    return qname_text(data, name_end) or ".", int.from_bytes(data[name_end : name_end + 2], "big")
