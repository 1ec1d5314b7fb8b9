"""The per-query context: raw packet, parsed question/EDNS facts, and what handlers learn.

A context belongs to one query and is never shared, so handlers may set its fields
(``jurisdiction``, ``reply``); the full message is parsed with dnspython only by a
handler that truly needs it, never on the hot path.
"""

from __future__ import annotations

from clearwall.dnsserver import wire

OUR_UDP_PAYLOAD = 1232
"""The largest UDP reply we send, whatever the client offers (DNS flag day 2020)."""


class Context:
    """One query in flight: ``data`` is the raw query, ``q`` its parsed question.

    ``host`` is the client address as text (never logged by default); ``tcp`` says which
    listener received it, deciding whether replies may be truncated.
    """

    __slots__ = (
        "_after_id",
        "_qname",
        "data",
        "host",
        "jurisdiction",
        "port",
        "q",
        "reduced",
        "reply",
        "tcp",
    )

    def __init__(self, data: bytes, host: str, port: int, tcp: bool, q: wire.Question) -> None:
        self.data = data
        self.host = host
        self.port = port
        self.tcp = tcp
        self.q = q
        self.jurisdiction = ""  # set by the jurisdiction handler; "" = no jurisdiction
        self.reply: bytes | None = None  # set by the responder; None = send nothing
        # Set by the responder when the reply was cut to fit ``limit`` (truncated, or a
        # shorter Structured DNS Error): such a rendering is this transport's only.
        self.reduced = False
        self._qname: str | None = None
        self._after_id: bytes | None = None

    @property
    def after_id(self) -> bytes:
        """The query after its ID (``data[2:]``), the fast path's key; made once, so the
        memos that keep it share one object."""
        key = self._after_id
        if key is None:
            key = self._after_id = self.data[2:]
        return key

    @property
    def qname(self) -> str:
        """The question name as canonical text (lowercase, no trailing dot), decoded lazily."""
        name = self._qname
        if name is None:
            name = self._qname = wire.qname_text(self.data, self.q.name_end)
        return name

    @property
    def name_wire(self) -> bytes:
        """The question name in wire form, lowercased (ASCII only, RFC 4343)."""
        return self.data[12 : self.q.name_end].lower()

    @property
    def flag_bits(self) -> int:
        """The query bits that change an answer: RD, AD, CD, DO, EDNS presence."""
        return self.q.bits

    @property
    def cache_key(self) -> tuple[bytes, int, str]:
        """(question with the name lowercased, query bits but RD, jurisdiction): what
        the cache keys an answer by (an RD=0 query is answered from RD=1's entries)."""
        data = self.data
        q = self.q
        return (
            data[12 : q.name_end].lower() + data[q.name_end : q.qend],
            q.bits & ~wire.RD,
            self.jurisdiction,
        )

    @property
    def limit(self) -> int:
        """The largest reply this client can take on this transport."""
        if self.tcp:
            return wire.MAX_UDP
        return self.udp_limit

    @property
    def udp_limit(self) -> int:
        """The largest reply this query could take over UDP (whatever its transport)."""
        q = self.q
        if q.edns:
            return q.payload if q.payload < OUR_UDP_PAYLOAD else OUR_UDP_PAYLOAD
        return wire.MIN_UDP
