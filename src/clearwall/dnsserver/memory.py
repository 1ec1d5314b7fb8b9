"""In-memory twin of the upstream transports (plain and encrypted): answers from a table,
no sockets.

For docs and fast tests: ``MemoryUpstream({"www.example.": [("A", 300, "192.0.2.1")]})``
answers A queries for www.example, NXDOMAIN (with a SOA) for anything else. Cold path:
it uses dnspython.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

Record = tuple[str, int, str]  # (type, ttl, rdata text)


class MemoryUpstream:
    """An ``UpstreamTransport`` answering from ``records`` (owner name -> records)."""

    def __init__(self, records: Mapping[str, Sequence[Record]]) -> None:
        self.records = {k.lower().rstrip(".") + ".": list(v) for k, v in records.items()}
        self.queries: list[bytes] = []

    def _answer(self, query: bytes, tcp: bool = False) -> bytes:
        self.queries.append(query)
        q = dns.message.from_wire(query)
        r = dns.message.make_response(q)
        name = q.question[0].name
        rdtype = q.question[0].rdtype
        records = self.records.get(name.to_text().lower())
        if records is None:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(
                dns.rrset.from_text(
                    name.parent() if len(name) > 1 else name,
                    300,
                    "IN",
                    "SOA",
                    "ns.invalid. hostmaster.invalid. 1 3600 600 86400 60",
                )
            )
        for rtype, ttl, text in records or ():
            if dns.rdatatype.from_text(rtype) in (rdtype, dns.rdatatype.CNAME):
                r.answer.append(dns.rrset.from_text(name, ttl, "IN", rtype, text))
        try:
            out: bytes = r.to_wire(max_size=65535 if tcp else 0)
        except dns.exception.TooBig:  # over UDP: as a real server does, set TC, send no data
            r.answer.clear()
            r.authority.clear()
            r.flags |= dns.flags.TC
            out = r.to_wire()
        return out

    async def udp(
        self, server: tuple[str, int], query: bytes, timeout: float, check: Callable[[bytes], bool]
    ) -> bytes:
        """Answer at once (TC and no data when the reply exceeds the query's UDP size)."""
        return self._answer(query)

    async def tcp(self, server: tuple[str, int], query: bytes, timeout: float) -> bytes:
        """Answer at once."""
        return self._answer(query, tcp=True)

    async def query(self, server: object, query: bytes, timeout: float) -> bytes:
        """The ``EncryptedTransport`` side (DoT, DoH upstreams): answer at once, never
        truncated, as over a stream."""
        return self._answer(query, tcp=True)
