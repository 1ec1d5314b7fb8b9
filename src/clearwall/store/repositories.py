"""Read queries over the schema, returning the policy model's frozen values (never rows)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Row, Table, and_, func, select

from clearwall.errors import NotFound
from clearwall.model import Action, AuthorityKind, Category, OrderStatus, RuleKind
from clearwall.policy.model import (
    Authority,
    CompiledOrder,
    Jurisdiction,
    Order,
    RuleRows,
    RuleSpec,
)
from clearwall.store import schema
from clearwall.store.records import (
    ApiToken,
    Appeal,
    AppealStatus,
    CrossBorderRequest,
    RequestStatus,
    Subscription,
    TokenRole,
)

RULE_FETCH_BATCH = 50_000


def jurisdiction_from_rows(code: str, name: str, cidrs: list[str]) -> Jurisdiction:
    """Build a Jurisdiction value, networks sorted by address family then prefix."""
    nets = sorted(
        (ipaddress.ip_network(c) for c in cidrs),
        key=lambda n: (n.version, n.network_address.packed, n.prefixlen),
    )
    return Jurisdiction(code=code, name=name, networks=tuple(nets))


def list_jurisdictions(conn: Connection) -> list[Jurisdiction]:
    """Every jurisdiction with its networks, ordered by code."""
    j, n = schema.jurisdictions, schema.jurisdiction_networks
    nets: dict[str, list[str]] = {}
    for code, cidr in conn.execute(select(n.c.jurisdiction, n.c.cidr)):
        nets.setdefault(code, []).append(cidr)
    rows = conn.execute(select(j.c.code, j.c.name).order_by(j.c.code)).all()
    return [jurisdiction_from_rows(r.code, r.name, nets.get(r.code, [])) for r in rows]


def get_jurisdiction(conn: Connection, code: str) -> Jurisdiction:
    """The jurisdiction ``code``; NotFound when it does not exist."""
    j, n = schema.jurisdictions, schema.jurisdiction_networks
    row = conn.execute(select(j.c.code, j.c.name).where(j.c.code == code)).first()
    if row is None:
        raise NotFound(f"no jurisdiction {code!r}")
    cidrs = list(conn.execute(select(n.c.cidr).where(n.c.jurisdiction == code)).scalars())
    return jurisdiction_from_rows(row.code, row.name, cidrs)


def authority_from_row(row: Row[Any]) -> Authority:
    """Map an ``authorities`` row to an Authority value."""
    return Authority(
        id=int(row.id),
        name=row.name,
        kind=AuthorityKind(row.kind),
        jurisdiction=row.jurisdiction,
        contacts=tuple(json.loads(row.contacts or "[]")),
    )


def _row_by_id(conn: Connection, table: Table, row_id: int, what: str) -> Row[Any]:
    """The row of ``table`` whose ``id`` is ``row_id``; NotFound naming ``what`` otherwise."""
    row = conn.execute(select(table).where(table.c.id == row_id)).first()
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    return row


def get_authority(conn: Connection, authority_id: int) -> Authority:
    """The authority ``authority_id``; NotFound when it does not exist."""
    return authority_from_row(_row_by_id(conn, schema.authorities, authority_id, "authority"))


def list_authorities(conn: Connection, jurisdiction: str | None = None) -> list[Authority]:
    """Authorities ordered by id, optionally only those of one jurisdiction."""
    a = schema.authorities
    query = select(a).order_by(a.c.id)
    if jurisdiction is not None:
        query = query.where(a.c.jurisdiction == jurisdiction)
    return [authority_from_row(r) for r in conn.execute(query)]


def order_from_row(row: Row[Any]) -> Order:
    """Map an ``orders`` row to an Order value."""
    return Order(
        id=int(row.id),
        authority_id=int(row.authority_id),
        title=row.title,
        legal_basis=row.legal_basis,
        reference=row.reference,
        category=Category(row.category),
        action=Action(row.action),
        issued=row.issued,
        effective_from=row.effective_from,
        expires=row.expires,
        document_url=row.document_url or "",
        status=OrderStatus(row.status),
        all_jurisdictions=bool(row.all_jurisdictions),
        log_index=None if row.log_index is None else int(row.log_index),
    )


def get_order(conn: Connection, order_id: int) -> Order:
    """The order ``order_id``; NotFound when it does not exist."""
    return order_from_row(_row_by_id(conn, schema.orders, order_id, "order"))


def list_orders(
    conn: Connection,
    *,
    authority_id: int | None = None,
    jurisdiction: str | None = None,
    status: OrderStatus | None = None,
) -> list[Order]:
    """Orders ordered by id, filtered by authority, authority jurisdiction and/or status."""
    o, a = schema.orders, schema.authorities
    query = select(o).order_by(o.c.id)
    if authority_id is not None:
        query = query.where(o.c.authority_id == authority_id)
    if jurisdiction is not None:
        query = query.join(a, a.c.id == o.c.authority_id).where(a.c.jurisdiction == jurisdiction)
    if status is not None:
        query = query.where(o.c.status == status.value)
    return [order_from_row(r) for r in conn.execute(query)]


def iter_rules(conn: Connection, order_id: int) -> Iterator[RuleSpec]:
    """The rules of one order in (kind, value) order, streamed from the database."""
    r = schema.rules
    query = (
        select(r.c.kind, r.c.value, r.c.action)
        .where(r.c.order_id == order_id)
        .order_by(r.c.kind, r.c.value)
        .execution_options(yield_per=RULE_FETCH_BATCH)
    )
    kinds, actions = _KINDS, _ACTIONS
    for kind, value, action in conn.execute(query):
        # Dict lookups rather than Enum calls: a quarter of reading 1M rules (compiles,
        # exports); an unknown value still raises the Enum's ValueError.
        yield RuleSpec(
            kinds.get(kind) or RuleKind(kind),
            value,
            (actions.get(action) or Action(action)) if action else None,
        )


_KINDS = {kind.value: kind for kind in RuleKind}
_ACTIONS = {action.value: action for action in Action}


def rule_rows(conn: Connection, order_id: int) -> RuleRows:
    """All rules of one order as text rows, read with the database driver's own cursor:
    what a whole compile reads (a million rules: 0.6 s, against 2.4 s as RuleSpecs).

    An order whose rules share one kind and one action (the common big list) is read as
    one text instead (``RuleRows.of_text``: the database joins the values, and no tuple
    per rule is made; a million rules: 0.35 s against 0.59 s as rows). Any other order,
    or one whose values are not printable ASCII, comes as rows."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    mark = {"qmark": "?", "numeric": ":1", "named": ":id"}.get(conn.dialect.paramstyle, "%s")
    params: Any = {"id": order_id} if mark == ":id" else (order_id,)
    cursor = raw.cursor()
    try:
        if conn.dialect.name == "sqlite":
            found = _rule_text_sqlite(cursor, order_id)
        elif conn.dialect.name == "postgresql":
            found = _rule_text_postgresql(cursor, order_id)
        else:
            found = None
        if found is not None:
            return found
        # In iter_rules' order, so that a compile builds the very same tables.
        cursor.execute(
            f"SELECT kind, value, action FROM rules WHERE order_id = {mark} ORDER BY kind, value",
            params,
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    # Both drivers (sqlite3, psycopg) give tuples of str and None: taken as they are.
    return RuleRows(rows if isinstance(rows, list) else list(rows))


# What tells whether an order's rules share one kind and one action: every action NULL
# (count(action) = 0) or every one the same (count(action) = count(*), min = max).
_UNIFORM = "count(*), min(kind), max(kind), count(action), min(action), max(action)"


def _uniform(count: int, agg: tuple[Any, ...]) -> tuple[str, str | None] | None:
    """The (kind, action) every rule has, from a ``_UNIFORM`` row over ``count`` rules,
    or None when they do not all share one."""
    total, low_kind, high_kind, actions, low_action, high_action = agg
    if total != count or low_kind != high_kind:
        return None
    if actions == 0:
        return str(low_kind), None
    if actions == total and low_action == high_action:
        return str(low_kind), str(low_action)
    return None


def _rule_text_sqlite(cursor: Any, order_id: int) -> RuleRows | None:
    """``rule_rows``' text form on SQLite, or None (rows must be read).

    Measured on a million rules: the values joined in (kind, value) order come from the
    (order_id, kind, value) index alone (0.22 s, with the ids' range); the actions are not
    in it, but an order's rows usually are one run of ids (inserted in one go), which is
    read in table order (0.11 s: ``+order_id`` keeps SQLite off the index, whose order
    would cost a page lookup per row, 0.21 s, as any other order pays).

    group_concat takes the subquery's rows in their order (SQLite documents no order
    before 3.44's ``ORDER BY`` inside the call; every version does so): were it ever
    otherwise, the digest would find the lines out of order and sort them itself."""
    cursor.execute(
        "SELECT count(*), min(id), max(id), group_concat(value, char(10)) FROM "
        "(SELECT id, value FROM rules WHERE order_id = ? ORDER BY kind, value)",
        (order_id,),
    )
    count, low, high, text = cursor.fetchone()
    if not count:
        return None
    if high - low + 1 == count:
        cursor.execute(
            f"SELECT {_UNIFORM} FROM rules WHERE id BETWEEN ? AND ? AND +order_id = ?",
            (low, high, order_id),
        )
    else:
        cursor.execute(f"SELECT {_UNIFORM} FROM rules WHERE order_id = ?", (order_id,))
    pair = _uniform(count, cursor.fetchone())
    return None if pair is None else RuleRows.of_text(pair[0], pair[1], text, count)


def _rule_text_postgresql(cursor: Any, order_id: int) -> RuleRows | None:
    """``rule_rows``' text form on PostgreSQL, or None (rows must be read): one query,
    the values joined in bytewise order (``COLLATE "C"``, the order the digest needs,
    whatever the database's collation)."""
    cursor.execute(
        f"SELECT {_UNIFORM}, string_agg(value, E'\\n' ORDER BY value COLLATE \"C\") "
        "FROM rules WHERE order_id = %s",
        (order_id,),
    )
    row = cursor.fetchone()
    count = int(row[0])
    if not count:
        return None
    pair = _uniform(count, tuple(row[:6]))
    return None if pair is None else RuleRows.of_text(pair[0], pair[1], row[6], count)


def order_rules(conn: Connection, order_id: int) -> tuple[RuleSpec, ...]:
    """All rules of one order."""
    return tuple(iter_rules(conn, order_id))


def compiled_order(conn: Connection, order_id: int) -> CompiledOrder:
    """An order with its authority and rules."""
    order = get_order(conn, order_id)
    return CompiledOrder(
        order, get_authority(conn, order.authority_id), order_rules(conn, order_id)
    )


def appeal_from_row(row: Row[Any]) -> Appeal:
    """Map an ``appeals`` row to an Appeal value."""
    return Appeal(
        id=int(row.id),
        order_id=int(row.order_id),
        name=row.name,
        contact=row.contact,
        reason=row.reason,
        status=AppealStatus(row.status),
        decision=row.decision or "",
        filed_at=row.filed_at,
        decided_at=row.decided_at,
        filed_log_index=None if row.filed_log_index is None else int(row.filed_log_index),
        decided_log_index=None if row.decided_log_index is None else int(row.decided_log_index),
    )


def get_appeal(conn: Connection, appeal_id: int) -> Appeal:
    """The appeal ``appeal_id``; NotFound when it does not exist."""
    return appeal_from_row(_row_by_id(conn, schema.appeals, appeal_id, "appeal"))


def list_appeals(conn: Connection, order_id: int | None = None) -> list[Appeal]:
    """Appeals ordered by id, optionally of one order."""
    t = schema.appeals
    query = select(t).order_by(t.c.id)
    if order_id is not None:
        query = query.where(t.c.order_id == order_id)
    return [appeal_from_row(r) for r in conn.execute(query)]


def request_from_row(row: Row[Any]) -> CrossBorderRequest:
    """Map a ``requests`` row to a CrossBorderRequest value."""
    return CrossBorderRequest(
        id=int(row.id),
        authority_id=int(row.authority_id),
        from_jurisdiction=row.from_jurisdiction,
        to_jurisdiction=row.to_jurisdiction,
        ask=row.ask,
        category=row.category,
        legal_basis=row.legal_basis,
        reference=row.reference,
        rules=tuple(line for line in row.rules.split("\n") if line),
        rules_digest=row.rules_digest,
        status=RequestStatus(row.status),
        decision=row.decision or "",
        filed_at=row.filed_at,
        decided_by=None if row.decided_by is None else int(row.decided_by),
        order_id=None if row.order_id is None else int(row.order_id),
        decided_at=row.decided_at,
        filed_log_index=None if row.filed_log_index is None else int(row.filed_log_index),
        decided_log_index=None if row.decided_log_index is None else int(row.decided_log_index),
    )


def get_request(conn: Connection, request_id: int) -> CrossBorderRequest:
    """The request ``request_id``; NotFound when it does not exist."""
    return request_from_row(_row_by_id(conn, schema.requests, request_id, "request"))


def list_requests(
    conn: Connection,
    *,
    jurisdiction: str | None = None,
    order_id: int | None = None,
) -> list[CrossBorderRequest]:
    """Requests ordered by id: those sent by or to ``jurisdiction``, or the one an
    order answers (``order_id``)."""
    t = schema.requests
    query = select(t).order_by(t.c.id)
    if jurisdiction is not None:
        query = query.where(
            (t.c.from_jurisdiction == jurisdiction) | (t.c.to_jurisdiction == jurisdiction)
        )
    if order_id is not None:
        query = query.where(t.c.order_id == order_id)
    return [request_from_row(r) for r in conn.execute(query)]


def feed_exceptions(conn: Connection, feed_id: int) -> list[tuple[int, str, int]]:
    """The active orders of single jurisdictions that except names of an all-jurisdiction
    order (``feed_id``) for their clients: (order id, jurisdiction, names excepted), by
    order id. An exception is an allow rule for exactly a name the feed blocks (an
    ``allow-subtree x`` for its ``subtree x``); driven from the allow rules, which are few,
    through the rules' (order, kind, value) index, however large the feed."""
    e, f, o, a = schema.rules.alias("e"), schema.rules.alias("f"), schema.orders, schema.authorities
    blocked = (
        select(f.c.id)
        .where(
            and_(
                f.c.order_id == feed_id,
                f.c.kind == func.substr(e.c.kind, len("allow-") + 1),
                f.c.value == e.c.value,
            )
        )
        .exists()
    )
    query = (
        select(o.c.id, a.c.jurisdiction, func.count())
        .select_from(e.join(o, o.c.id == e.c.order_id).join(a, a.c.id == o.c.authority_id))
        .where(
            and_(
                e.c.kind.like("allow-%"),
                o.c.status == OrderStatus.ACTIVE.value,
                o.c.all_jurisdictions.is_(False),
                blocked,
            )
        )
        .group_by(o.c.id, a.c.jurisdiction)
        .order_by(o.c.id)
    )
    return [(int(i), str(j), int(n)) for i, j, n in conn.execute(query)]


def subscription_from_row(row: Row[Any]) -> Subscription:
    """Map a ``subscriptions`` row to a Subscription value."""
    return Subscription(
        id=int(row.id),
        order_id=int(row.order_id),
        source=row.source,
        format=row.format,
        refresh_seconds=int(row.refresh_seconds),
        last_refresh=row.last_refresh,
        last_status=row.last_status or "",
    )


def list_subscriptions(conn: Connection, order_id: int | None = None) -> list[Subscription]:
    """Subscriptions ordered by id, optionally of one order."""
    t = schema.subscriptions
    query = select(t).order_by(t.c.id)
    if order_id is not None:
        query = query.where(t.c.order_id == order_id)
    return [subscription_from_row(r) for r in conn.execute(query)]


def token_from_row(row: Row[Any]) -> ApiToken:
    """Map an ``api_tokens`` row to an ApiToken value (the hash stays in the database)."""
    return ApiToken(
        id=int(row.id),
        role=TokenRole(row.role),
        authority_id=None if row.authority_id is None else int(row.authority_id),
        label=row.label or "",
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
