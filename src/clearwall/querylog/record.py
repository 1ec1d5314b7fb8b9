"""One query-log record: its stored form, and the truncation of client addresses."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

Raw = tuple[float, float, str, str, bytes, str, int, tuple[int, ...], bool]
"""What the data plane queues per answer: (perf_counter time, latency in seconds,
truncated client prefix, jurisdiction, raw query, decision, rcode or -1, order ids, tcp)."""

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
    """One stored query: what the console shows and the export writes."""

    time: float  # Unix seconds, UTC
    client: str  # the client's network prefix, e.g. 192.0.2.0/24
    jurisdiction: str  # "" when the client is in none
    qname: str
    qtype: int
    decision: str  # allow, block, refuse, ratelimit, fail
    orders: tuple[int, ...]  # the orders cited by the answer (blocks: deciding first)
    rcode: int | None  # None: nothing was sent (rate limited)
    latency_ms: float  # from the query's parse to its reply, inside the gateway
    transport: str  # udp or tcp

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
            "transport": self.transport,
        }


def encode_orders(orders: tuple[int, ...]) -> str:
    """Order ids as stored: ``,12,15,`` so that ``LIKE '%,12,%'`` finds one exactly."""
    return "," + ",".join(str(o) for o in orders) + "," if orders else ""


def decode_orders(text: str) -> tuple[int, ...]:
    """The inverse of ``encode_orders``."""
    return tuple(int(x) for x in text.strip(",").split(",") if x)


def question_of(data: bytes) -> tuple[str, int]:
    """(qname, qtype) of a raw query the gateway already parsed (so well-formed)."""
    from clearwall.dnsserver.wire import qname_text

    off = 12
    length = data[off]
    while length:
        off += length + 1
        length = data[off]
    name_end = off + 1
    return qname_text(data, name_end) or ".", int.from_bytes(data[name_end : name_end + 2], "big")
