"""Structured DNS Error JSON (IETF dnsop draft "Structured Error Data for Filtered DNS").

The EXTRA-TEXT of a block's EDE option is minified I-JSON with ``c`` (contact URIs),
``j`` (justification: order title, authority, legal basis, reference and the order's
public URL), ``o`` (the filtering organisation), ``l`` (language of j/o, required with
them) and ``s`` (sub-error; never with EDE 16 Censored, draft section 5.2). Size rule
(draft section 5.3): when the reply would overflow the client's UDP size, drop ``j`` and
``o`` first, then the EXTRA-TEXT entirely; ``variants`` gives the three forms.
"""

from __future__ import annotations

import json
from typing import Any

from clearwall.config import BlockConfig
from clearwall.model import Category, EDECode, OrderRef, Verdict

# The draft's Sub-Error Code registry (IANA considerations): the primary cause of a block.
SUB_ERROR_MALWARE = 1
SUB_ERROR_PHISHING = 2
SUB_ERROR_SPAM = 3
SUB_ERROR_DNS_OPERATOR = 6  # "DNS operator policy": applicable to Blocked only

SUB_ERROR_FOR_CATEGORY: dict[Category, int] = {
    Category.MALWARE: SUB_ERROR_MALWARE,
    Category.BOTNET: SUB_ERROR_MALWARE,  # command-and-control of malware
    Category.PHISHING: SUB_ERROR_PHISHING,
    Category.SPAM: SUB_ERROR_SPAM,
}
"""Categories with a sub-error of their own (1-4: applicable to Blocked and Filtered)."""

CONTACT_SCHEMES = ("mailto:", "tel:")
"""The draft's Contact URI Schemes registry: other URIs are not sent in ``c``."""


def sub_error(category: Category, ede: EDECode) -> int | None:
    """The ``s`` of a block: the category's own code with Blocked or Filtered; "DNS
    operator policy" for the operator's other blocks (Blocked); none with Censored (the
    draft defines no sub-error for it)."""
    if ede in (EDECode.BLOCKED, EDECode.FILTERED):
        code = SUB_ERROR_FOR_CATEGORY.get(category)
        if code is not None:
            return code
    if ede is EDECode.BLOCKED:
        return SUB_ERROR_DNS_OPERATOR
    return None


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
    # Only registered contact schemes: a client ignores the rest (draft section 5.3 step
    # 6), and they would cost octets of the reply for nothing.
    contacts = [c for c in first.contacts if c and c.lower().startswith(CONTACT_SCHEMES)]
    if contacts:
        compact["c"] = contacts
    code = sub_error(first.category, ede)
    if code is not None:
        compact["s"] = code
    full = dict(compact)
    full["j"] = justification(verdict, block.public_url)
    full["o"] = block.operator
    full["l"] = block.language
    return _encode(full), (_encode(compact) if compact else b"")
