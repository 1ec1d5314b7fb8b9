"""Structured DNS Error JSON (IETF dnsop draft "Structured Error Data for Filtered DNS").

The EXTRA-TEXT of a block's EDE option is minified I-JSON with ``c`` (contact URIs),
``j`` (justification: order title, authority, legal basis, reference and the order's
public URL), ``o`` (the filtering organisation), ``l`` (language of j/o, required with
them) and ``s`` (sub-error; never with EDE 16 Censored, draft section 7). Size rule
(draft section 5.3): when the reply would overflow the client's UDP size, drop ``j`` and
``o`` first, then the EXTRA-TEXT entirely; ``variants`` gives the three forms.
"""

from __future__ import annotations

import json
from typing import Any

from clearwall.config import BlockConfig
from clearwall.model import EDECode, OrderRef, Verdict

SUB_ERROR_DNS_OPERATOR = 2
"""Draft sub-error 2 "DNS Operator Policy": the operator's own blocks (EDE 15)."""


def order_url(order: OrderRef, public_url: str) -> str:
    """The public page of an order on the transparency portal."""
    return order.url or f"{public_url.rstrip('/')}/orders/{order.id}"


def justification(verdict: Verdict, public_url: str) -> str:
    """The ``j`` text: what order, by whom, on what basis, where to read it."""
    first = verdict.citations[0].order
    parts = [first.title, f"ordered by {first.authority}"]
    if first.legal_basis:
        parts.append(f"basis: {first.legal_basis}")
    if first.reference:
        parts.append(f"ref: {first.reference}")
    text = "; ".join(parts) + f" <{order_url(first, public_url)}>"
    more = len(verdict.citations) - 1
    if more > 0:
        text += f" (+{more} more order{'s' if more > 1 else ''})"
    return text


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def variants(verdict: Verdict, block: BlockConfig) -> tuple[bytes, bytes]:
    """(full, compact) EXTRA-TEXT for a block; compact drops j, o and l; b"" = nothing left.

    Per the draft's client rules, an object without a non-empty ``c``, ``j`` or ``s`` is
    discarded by clients, so such a compact form is sent as no EXTRA-TEXT at all.
    """
    if not verdict.citations:
        return b"", b""
    first = verdict.citations[0].order
    ede = first.ede
    compact: dict[str, Any] = {}
    contacts = [c for c in first.contacts if c]
    if contacts:
        compact["c"] = contacts
    if ede is EDECode.BLOCKED:
        compact["s"] = SUB_ERROR_DNS_OPERATOR
    full = dict(compact)
    full["j"] = justification(verdict, block.public_url)
    full["o"] = block.operator
    full["l"] = block.language
    return _encode(full), (_encode(compact) if compact else b"")
