"""What the encrypted listeners (DoT, DoH, DoQ) share: answering one query, and padding.

A query that arrives over an encrypted transport is answered as one over TCP (no
truncation, the full Structured DNS Error, no rate-limit slip): first by the chain's
stream fast path when it has one (a repeated cache hit or block, straight from the
reply table, see ``dnsserver.fused``), else by the general path. Replies to EDNS
queries are padded (RFC 7830, block length per RFC 8467); the padded bytes of a
repeated reply are kept, so a repeat costs a dictionary lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from clearwall.dnsserver import wire
from clearwall.dnsserver.context import Context
from clearwall.dnsserver.server import DNSServer, early_reply
from clearwall.errors import DNSWireError

log = logging.getLogger(__name__)

_KEPT_MAX = 20_000  # padded renderings kept; the memo starts afresh when full


class Finisher:
    """Pads replies for an encrypted transport and tells their HTTP freshness lifetime.

    Kept per reply after its ID: (padded reply after its ID, max-age). A cached reply's
    bytes change at most once a second (its TTLs count down), so repeats hit.
    """

    def __init__(self, block: int) -> None:
        self.block = block
        self._kept: dict[bytes, tuple[bytes, int]] = {}

    def __call__(self, reply: bytes) -> bytes:
        """``reply`` padded to the block length when it carries an OPT record."""
        if self.block <= 0 or not (reply[10] or reply[11]):
            return reply  # no padding wanted, or no additional record: no OPT to pad
        return self.finish(reply)[0]

    def finish(self, reply: bytes) -> tuple[bytes, int]:
        """(``reply`` padded, the smallest TTL of its records for Cache-Control)."""
        key = reply[2:]
        kept = self._kept.get(key)
        if kept is None:
            kept = self._first(reply)
            if len(self._kept) >= _KEPT_MAX:
                self._kept = {}
            self._kept[key] = kept
        return reply[:2] + kept[0], kept[1]

    def _first(self, reply: bytes) -> tuple[bytes, int]:
        try:
            padded = wire.pad_reply(reply, self.block) if self.block > 0 else reply
            scan = wire.scan_reply(reply)
        except (DNSWireError, IndexError):
            return reply[2:], 0  # our own replies always scan; anything else: no caching
        if scan.rcode in (wire.NOERROR, wire.NXDOMAIN) and scan.min_all_ttl is not None:
            age = scan.min_all_ttl
        else:
            age = 0
        return padded[2:], age


Send = Callable[[bytes | None], None]


def answer(server: DNSServer, data: bytes, host: str, port: int, send: Send) -> None:
    """Answer one query that arrived on an encrypted transport; ``send`` gets the reply
    (now or later), or None when nothing is to be sent (a response, a fragment).

    ``server`` is the ``DNSServer`` whose dispatcher and metrics the listener shares.
    """
    dispatcher = server.dispatcher
    fast = getattr(dispatcher.chain, "stream_fast", None)
    if fast is not None:
        try:
            out = fast(data, host)
        except Exception:  # a bug there must not cost the query: the chain answers
            log.exception("stream fast path failed")
            out = None
        if out is not None:
            send(out)
            return
    q, early = early_reply(data, server.metrics)
    if q is None:
        send(early)
        return
    dispatcher.run(Context(data, host, port, True, q), send)
