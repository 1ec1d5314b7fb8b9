"""The log's entries: canonical JSON for every policy event, and the rule-set digest.

Anyone can recompute a leaf from public data: the entry is canonical JSON (RFC 8785
style: keys sorted, no insignificant whitespace, UTF-8, no floats), and an order's rules
are committed by the Merkle root (RFC 6962 hashing) over their sorted canonical lines, so
that a list of a million names still fits an entry of well under 64 KiB.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterable
from itertools import islice
from typing import Any

from clearwall.errors import LedgerError
from clearwall.ledger.merkle import merkle_root
from clearwall.policy.model import Authority, Jurisdiction, Order, RuleRows, RuleSpec

MAX_ENTRY_SIZE = 65535  # tlog-tiles entry bundles use a 16-bit length prefix

ORDER_PUBLISHED = "order-published"
ORDER_AMENDED = "order-amended"
ORDER_REVOKED = "order-revoked"
ORDER_EXPIRED = "order-expired"
APPEAL_FILED = "appeal-filed"
APPEAL_DECIDED = "appeal-decided"
JURISDICTION_SET = "jurisdiction-set"
"""A jurisdiction as it now stands (created, renamed, or its networks changed): the
networks decide whose orders apply to which clients, so they are policy too."""


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` canonically: sorted keys, compact separators, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def rule_line(rule: RuleSpec) -> bytes:
    """The canonical line of one rule inside an order's rule-set tree.

    ``<kind> <value>`` or ``<kind> <value> <action>`` when the rule overrides the order's
    action, e.g. ``b"subtree example.com"``. Lines sort bytewise.
    """
    text = f"{rule.kind.value} {rule.value}"
    if rule.action is not None:
        text += f" {rule.action.value}"
    return text.encode("ascii")


def sorted_rule_lines(rules: Iterable[RuleSpec]) -> list[bytes]:
    """The sorted, de-duplicated canonical lines of a rule set: the leaves of its tree."""
    if isinstance(rules, RuleRows):
        # The store's rows hold the enum values themselves: the same lines, no objects.
        # They come ordered by (kind, value), which is their bytewise order on SQLite
        # (the sort then only checks it) and distinct (UNIQUE(order_id, kind, value)):
        # duplicates are looked for, not hashed into a set.
        lines = [
            (f"{kind} {value}" if action is None else f"{kind} {value} {action}").encode("ascii")
            for kind, value, action in rules.rows
        ]
        lines.sort()
        if any(map(bytes.__eq__, lines, islice(lines, 1, None))):
            lines = sorted(set(lines))
        return lines
    return sorted({rule_line(r) for r in rules})


def rules_digest(rules: Iterable[RuleSpec]) -> tuple[str, int]:
    """Hex Merkle root over the sorted canonical rule lines, and how many there are."""
    lines = sorted_rule_lines(rules)
    return merkle_root(lines).hex(), len(lines)


def _when(value: dt.date | dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def order_metadata(order: Order, authority: Authority) -> dict[str, Any]:
    """The public metadata of an order as committed on the log."""
    return {
        "id": order.id,
        "authority": {
            "id": authority.id,
            "name": authority.name,
            "kind": authority.kind.value,
            "jurisdiction": authority.jurisdiction,
            "contacts": list(authority.contacts),
        },
        "title": order.title,
        "legal_basis": order.legal_basis,
        "reference": order.reference,
        "category": order.category.value,
        "action": order.action.value,
        "issued": _when(order.issued),
        "effective_from": _when(order.effective_from),
        "expires": _when(order.expires),
        "document_url": order.document_url,
        "all_jurisdictions": order.all_jurisdictions,
    }


def jurisdiction_record(jurisdiction: Jurisdiction) -> dict[str, Any]:
    """The public record of a jurisdiction as committed on the log: code, name and its
    client networks in canonical text, sorted (address family, then address, then
    prefix length)."""
    nets = sorted(
        jurisdiction.networks,
        key=lambda n: (n.version, n.network_address.packed, n.prefixlen),
    )
    return {
        "code": jurisdiction.code,
        "name": jurisdiction.name,
        "networks": [str(n) for n in nets],
    }


def jurisdiction_from_record(record: dict[str, Any]) -> Jurisdiction:
    """The Jurisdiction a ``jurisdiction_record`` describes; ValueError/KeyError/TypeError
    when it is not one."""
    networks = record["networks"]
    if not isinstance(networks, list):
        raise TypeError("networks is not a list")
    return Jurisdiction(
        str(record["code"]),
        str(record["name"]),
        tuple(ipaddress.ip_network(str(n), strict=True) for n in networks),
    )


def _encode(event: dict[str, Any]) -> bytes:
    data = canonical_json(event)
    if len(data) > MAX_ENTRY_SIZE:
        raise LedgerError(f"log entry of {len(data)} bytes exceeds {MAX_ENTRY_SIZE}")
    return data


def order_published(
    order: Order, authority: Authority, rules: Iterable[RuleSpec], at: dt.datetime
) -> bytes:
    """Entry for a newly published order: its metadata and its rule-set digest."""
    digest, count = rules_digest(rules)
    return _encode(
        {
            "type": ORDER_PUBLISHED,
            "time": at.isoformat(),
            "order": order_metadata(order, authority),
            "rules": {"count": count, "digest": digest},
        }
    )


def order_amended(
    order: Order,
    authority: Authority,
    rules: Iterable[RuleSpec],
    added: int,
    removed: int,
    reason: str,
    at: dt.datetime,
) -> bytes:
    """Entry for an order whose rule set or metadata changed: the new digest and the delta."""
    digest, count = rules_digest(rules)
    return _encode(
        {
            "type": ORDER_AMENDED,
            "time": at.isoformat(),
            "order": order_metadata(order, authority),
            "rules": {"count": count, "digest": digest, "added": added, "removed": removed},
            "reason": reason,
        }
    )


def order_revoked(order_id: int, reason: str, at: dt.datetime) -> bytes:
    """Entry for an order withdrawn by its authority or the operator."""
    return _encode(
        {"type": ORDER_REVOKED, "time": at.isoformat(), "order": order_id, "reason": reason}
    )


def order_expired(order_id: int, at: dt.datetime) -> bytes:
    """Entry recording that an order reached its sunset date."""
    return _encode({"type": ORDER_EXPIRED, "time": at.isoformat(), "order": order_id})


def jurisdiction_set(jurisdiction: Jurisdiction, at: dt.datetime) -> bytes:
    """Entry for a jurisdiction created or changed: its whole record as it now stands, so
    the latest entry of a code alone says what the jurisdiction is."""
    return _encode(
        {
            "type": JURISDICTION_SET,
            "time": at.isoformat(),
            "jurisdiction": jurisdiction_record(jurisdiction),
        }
    )


def appeal_filed(appeal_id: int, order_id: int, name: str, reason: str, at: dt.datetime) -> bytes:
    """Entry for an appeal against an order (the appellant's contact is never published)."""
    return _encode(
        {
            "type": APPEAL_FILED,
            "time": at.isoformat(),
            "appeal": appeal_id,
            "order": order_id,
            "name": name,
            "reason": reason,
        }
    )


def appeal_decided(
    appeal_id: int, order_id: int, outcome: str, explanation: str, at: dt.datetime
) -> bytes:
    """Entry for the decision on an appeal (``upheld`` or ``rejected``)."""
    return _encode(
        {
            "type": APPEAL_DECIDED,
            "time": at.isoformat(),
            "appeal": appeal_id,
            "order": order_id,
            "outcome": outcome,
            "explanation": explanation,
        }
    )
