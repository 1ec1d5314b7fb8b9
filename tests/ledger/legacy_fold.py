"""The log fold and the enforceability check as they were written before the entry model
(store/loader.py ``_logged_state``/``_enforceable``, ledger/nameproof.py ``binds`` and
``LogState.in_force``, up to commit b873473): the oracle ``test_logstate`` holds the one
fold against. Kept as it was, on raw JSON; only the logging is gone, and the order
metadata comes from the encoder (its bytes are the old ones: ``test_entries``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clearwall.ledger import entries
from clearwall.policy.model import Authority, Jurisdiction, Order

ORDER_PUBLISHED = "order-published"
ORDER_AMENDED = "order-amended"
ORDER_REVOKED = "order-revoked"
ORDER_EXPIRED = "order-expired"
JURISDICTION_SET = "jurisdiction-set"


def order_metadata(order: Order, authority: Authority) -> dict[str, Any]:
    """The public metadata of an order as committed on the log (written by the encoder,
    whose bytes ``test_entries`` holds to the old ones)."""
    rules = entries.RuleSet(0, "0" * 64)
    event = entries.OrderPublished(dt.datetime.now(dt.UTC), order, authority, rules)
    return entries.to_json(event)["order"]  # type: ignore[no-any-return]


def jurisdiction_from_record(record: dict[str, Any]) -> Jurisdiction:
    """The Jurisdiction a record describes."""
    networks = record["networks"]
    if not isinstance(networks, list):
        raise TypeError("networks is not a list")
    return Jurisdiction(
        str(record["code"]),
        str(record["name"]),
        tuple(ipaddress.ip_network(str(n), strict=True) for n in networks),
    )


@dataclass
class LoggedState:
    """Per order its latest published/amended event; ended and named orders; per
    jurisdiction code its latest record and that entry's index."""

    latest: dict[int, dict[str, Any]]
    ended: set[int]
    named: set[int]
    jurisdictions: dict[str, tuple[int, Jurisdiction]]


def logged_state(rows: Iterable[tuple[int, bytes]]) -> LoggedState:
    """The old loader's fold."""
    latest: dict[int, dict[str, Any]] = {}
    ended: set[int] = set()
    named: set[int] = set()
    jurisdictions: dict[str, tuple[int, Jurisdiction]] = {}
    for idx, data in rows:
        try:
            event = json.loads(bytes(data))
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            continue
        if kind in (ORDER_PUBLISHED, ORDER_AMENDED):
            event["_index"] = int(idx)
            order_id = int(event["order"]["id"])
            latest[order_id] = event
            named.add(order_id)
        elif kind in (ORDER_REVOKED, ORDER_EXPIRED):
            ended.add(int(event["order"]))
            named.add(int(event["order"]))
        elif kind == JURISDICTION_SET:
            try:
                record = jurisdiction_from_record(event["jurisdiction"])
            except (ValueError, KeyError, TypeError):
                continue
            jurisdictions[record.code] = (int(idx), record)
    return LoggedState(latest, ended, named, jurisdictions)


def enforceable(
    order: Order,
    authority: Authority,
    digest_count: tuple[str, int],
    event: dict[str, Any] | None,
    ended: set[int],
    size: int,
) -> str | None:
    """The old loader's decision: None when enforceable, else why not."""
    if order.log_index is None or order.log_index >= size:
        return "not on the log"
    if order.id in ended:
        return "ended"
    if event is None:
        return "no publishing entry"
    if order_metadata(order, authority) != event["order"]:
        return "metadata"
    digest, count = digest_count
    if digest != event["rules"]["digest"] or count != event["rules"]["count"]:
        return "rules"
    return None


def _parse_time(text: Any) -> dt.datetime | None:
    if text is None:
        return None
    value = dt.datetime.fromisoformat(str(text))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def binds(event: dict[str, Any], jurisdiction: str, at: dt.datetime) -> bool:
    """The old name prover's scope and dates test."""
    order = event["order"]
    scope = order["authority"]["jurisdiction"]
    if not (order.get("all_jurisdictions") or scope == jurisdiction):
        return False
    start, end = _parse_time(order.get("effective_from")), _parse_time(order.get("expires"))
    if start is not None and at < start:
        return False
    return end is None or at < end


def in_force(state: LoggedState, jurisdiction: str, at: dt.datetime) -> list[int]:
    """The old prover's orders binding ``jurisdiction`` at ``at`` (their entry indexes)."""
    return [
        state.latest[oid]["_index"]
        for oid in sorted(state.latest)
        if oid not in state.ended and binds(state.latest[oid], jurisdiction, at)
    ]
