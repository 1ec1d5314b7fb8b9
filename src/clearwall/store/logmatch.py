"""The store held against its log: every order, jurisdiction and request it holds, as the log
states them.

``ledger verify`` folds the whole log (``ledger.logstate``) and asks the store, through
``match_log``, whether what it holds is what the log commits: every order on the log,
each active one stored exactly as its latest version (metadata and rule digest, the
same test the loader applies before it enforces an order), no rules of an order that
does not exist, every jurisdiction on the log as its latest entry states it and every
logged one still stored, and every cross-border request (its filing, its names, its
decision) as its entries state it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from clearwall.ledger.entries import RuleSet
from clearwall.ledger.logstate import Finding, LogState, PolicyCheck, PolicyMatch
from clearwall.ledger.merkle import merkle_root
from clearwall.model import OrderStatus
from clearwall.policy.model import Authority, Order
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store
from clearwall.store.records import RequestStatus


def match_log(store: Store, state: LogState) -> PolicyMatch:
    """The problems of ``store``'s records against ``state`` (a fold of its whole log),
    each naming the order or jurisdiction and the log entry concerned."""
    match = PolicyMatch()
    with store.read() as conn:
        _match_orders(conn, state, match)
        _match_requests(conn, state, match)
        stored = repo.list_jurisdictions(conn)
    for jurisdiction in stored:
        finding, index = state.check_jurisdiction(jurisdiction)
        if finding is Finding.NOT_ON_LOG:
            match.problems.append(f"jurisdiction {jurisdiction.code}: not on the log")
        elif finding is not None:
            match.problems.append(
                f"jurisdiction {jurisdiction.code}: stored name or networks differ from log "
                f"entry {index}"
            )
        else:
            match.jurisdictions += 1
    for code in sorted(set(state.jurisdictions) - {j.code for j in stored}):
        match.problems.append(
            f"jurisdiction {code}: on the log (entry {state.jurisdictions[code][0]}) but not "
            "in the store"
        )
    return match


def checker(store: Store) -> PolicyCheck:
    """``match_log`` bound to ``store``, for ``ledger.audit.audit``."""
    return lambda state: match_log(store, state)


def _match_orders(conn: Any, state: LogState, match: PolicyMatch) -> None:
    authorities = {a.id: a for a in repo.list_authorities(conn)}
    orders = repo.list_orders(conn)
    known = {o.id for o in orders}
    strays = conn.execute(
        select(schema.rules.c.order_id).distinct().where(schema.rules.c.order_id.notin_(known))
    ).scalars()
    for oid in strays:
        match.problems.append(f"rules belong to order {oid}, which does not exist")
    for order in orders:
        logged = state.order(order.id)
        if logged is None or logged.version is None:
            match.problems.append(f"order {order.id}: not on the log")
            continue
        if order.status is not OrderStatus.ACTIVE:
            match.orders += 1
            continue
        problem = _order_problem(conn, state, order, authorities.get(order.authority_id))
        if problem is None:
            match.orders += 1
        else:
            match.problems.append(f"order {order.id}: {problem}")


def _order_problem(
    conn: Any, state: LogState, order: Order, authority: Authority | None
) -> str | None:
    """What is wrong with an active stored order as the log stands, or None."""
    if authority is None:
        return "its authority is missing from the store"
    stored: list[RuleSet] = []

    def rule_set() -> RuleSet:
        stored.append(RuleSet.of(repo.iter_rules(conn, order.id)))
        return stored[0]

    check = state.check_order(order, authority, rule_set)
    match check.finding:
        case None:
            return None
        case Finding.ENDED:
            return f"active in the store but ended by entry {check.index}"
        case Finding.METADATA:
            return f"stored metadata differs from log entry {check.index}"
        case Finding.RULES:
            assert check.logged is not None
            return (
                f"its {stored[0].count} stored rules do not match the digest of log entry "
                f"{check.index} ({check.logged.count} rules): rules were edited behind the "
                "log's back"
            )
        case _:
            return str(check.finding.value)


def _match_requests(conn: Any, state: LogState, match: PolicyMatch) -> None:
    """Each stored request as its ``request-filed`` and ``request-decided`` entries state
    it (the portal shows the rows: an edit behind the log's back is a problem), and every
    logged request still stored."""
    stored = repo.list_requests(conn)
    for r in stored:
        logged = state.requests.get(r.id)
        if logged is None or logged.filed is None:
            match.problems.append(f"request {r.id}: not on the log")
            continue
        index, filed = logged.filed
        lines = sorted(line.encode("ascii") for line in r.rules)
        as_stored = (
            r.authority_id, r.from_jurisdiction, r.to_jurisdiction, r.ask, r.category,
            r.legal_basis, r.reference, r.rules_digest, len(lines),
        )  # fmt: skip
        as_logged = (
            filed.authority.id, filed.authority.jurisdiction, filed.to, filed.ask.value,
            filed.category.value, filed.legal_basis, filed.reference, filed.rules.digest,
            filed.rules.count,
        )  # fmt: skip
        if as_stored != as_logged or merkle_root(lines).hex() != filed.rules.digest:
            match.problems.append(f"request {r.id}: stored filing differs from log entry {index}")
            continue
        decided = logged.decided
        if decided is None:
            if r.status is not RequestStatus.OPEN:
                match.problems.append(
                    f"request {r.id}: stored as {r.status.value} but no decision is on the log"
                )
                continue
        else:
            d_index, d = decided
            if (r.status.value, r.order_id, r.decision, r.decided_by) != (
                d.outcome.value,
                d.order,
                d.reason,
                d.authority.id,
            ):
                match.problems.append(
                    f"request {r.id}: stored decision differs from log entry {d_index}"
                )
                continue
        match.requests += 1
    for rid in sorted(set(state.requests) - {r.id for r in stored}):
        filed_at = state.requests[rid].filed
        where = f" (entry {filed_at[0]})" if filed_at else ""
        match.problems.append(f"request {rid}: on the log{where} but not in the store")
