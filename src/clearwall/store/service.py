"""PolicyService: the one write path for policy, each write atomic with its log entry.

Every method that changes policy runs in one database transaction that also appends the
change's canonical entry to ``log_entries`` (the next index is read from ``log_head``
under ``SELECT … FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, so appends are
serialized). Any exception rolls the whole transaction back: no half order, no rules
without their entry, no entry without its rules. Only after the commit does the optional
``after_commit`` callback run (the CLI passes the ledger's tile/checkpoint sync).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from clearwall.errors import Conflict, NotFound, ScopeError, StoreError
from clearwall.ledger import entries
from clearwall.ledger.merkle import leaf_hash
from clearwall.model import Action, AuthorityKind, Category, OrderStatus, RuleKind
from clearwall.policy.model import Authority, Jurisdiction, Order, RuleSpec
from clearwall.policy.names import normalize_name
from clearwall.store import repositories as repo
from clearwall.store import schema
from clearwall.store.db import Store, utcnow
from clearwall.store.notify import notify_commit
from clearwall.store.records import (
    Appeal,
    AppealStatus,
    CrossBorderRequest,
    RequestStatus,
    Subscription,
)
from clearwall.store.validate import (
    CONTACT_SCHEMES,
    as_date,
    as_utc,
    normalize_code,
    parse_enum,
    parse_networks,
    unique_rules,
)

log = logging.getLogger(__name__)

INSERT_BATCH = 20_000  # rows per executemany: large enough to amortize, small enough for RAM
ProgressCallback = Callable[[int, int], None]  # (rules written, rules in total)

_KIND_TEXT = {k: k.value for k in RuleKind}
_ACTION_TEXT: dict[Action | None, str | None] = {a: a.value for a in Action}
_ACTION_TEXT[None] = None


def lock_log_head(conn: Connection) -> int:
    """Lock the log head inside the caller's write transaction (FOR UPDATE; SQLite holds
    the write lock already) and return the log size."""
    head = schema.log_head
    return int(
        conn.execute(select(head.c.size).where(head.c.id == 1).with_for_update()).scalar_one()
    )


def append_entries(conn: Connection, datas: Sequence[bytes], at: dt.datetime) -> int:
    """Append log entries inside the caller's transaction; return the first one's index.

    The head row is locked first (FOR UPDATE; SQLite holds the write lock already), so
    concurrent writers get consecutive indexes and the head always equals the entry count.
    All rows go in one executemany: a batch of 10k entries costs one round trip, not 10k.
    """
    first = lock_log_head(conn)
    if not datas:
        return first
    conn.execute(
        schema.log_entries.insert(),
        [
            {"idx": first + i, "data": d, "leaf_hash": leaf_hash(d), "created_at": at}
            for i, d in enumerate(datas)
        ],
    )
    head = schema.log_head
    conn.execute(update(head).where(head.c.id == 1).values(size=first + len(datas)))
    # Delivered at commit, so every gateway LISTENing wakes at once (``store.notify``).
    notify_commit(conn, first + len(datas))
    return first


def append_entry(conn: Connection, data: bytes, at: dt.datetime) -> int:
    """Append one log entry inside the caller's transaction and return its index."""
    return append_entries(conn, [data], at)


class PolicyService:
    """Every policy write (CLI and web API alike) goes through one instance of this class.

    ``actor_jurisdiction`` on a write means "an authority of this jurisdiction asks":
    acting on anything outside it raises ScopeError and writes nothing. Operators pass
    ``None``.
    """

    def __init__(
        self,
        store: Store,
        *,
        after_commit: Callable[[], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        """Bind the service to ``store``; ``after_commit`` runs after each logged write."""
        self.store = store
        self.after_commit = after_commit
        self.clock = clock

    @contextlib.contextmanager
    def _logged_write(self) -> Iterator[Connection]:
        """A write transaction holding the log head from its first statement.

        Logged writes then run one after the other on PostgreSQL too (SQLite's ``BEGIN
        IMMEDIATE`` already serializes them), so what a write checks first (the order is
        still active, the reference is free, the appeal is open) still holds when its
        entry is appended: two gateways' jobs expiring the same order log it once.
        """
        with self.store.write() as conn:
            lock_log_head(conn)
            yield conn

    def _committed(self) -> None:
        """Run the after-commit hook; its failure never undoes the committed write."""
        if self.after_commit is None:
            return
        try:
            self.after_commit()
        except Exception as exc:  # the ledger re-derives tiles from entries on next start
            log.warning("after-commit hook failed (the write is committed): %s", exc)

    # -- jurisdictions and authorities ---------------------------------------------

    def add_jurisdiction(
        self,
        code: str,
        name: str,
        networks: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    ) -> Jurisdiction:
        """Create a jurisdiction with its client networks, and its log entry, in one
        transaction; Conflict when the code exists or a network belongs to another."""
        code = normalize_code(code)
        if not name.strip():
            raise StoreError("a jurisdiction needs a name")
        cidrs = parse_networks(networks)
        j = schema.jurisdictions
        with self._logged_write() as conn:
            if conn.execute(select(j.c.code).where(j.c.code == code)).first() is not None:
                raise Conflict(f"jurisdiction {code!r} already exists")
            self._check_networks_free(conn, code, cidrs)
            conn.execute(j.insert().values(code=code, name=name.strip()))
            self._insert_networks(conn, code, cidrs)
            jurisdiction = self._log_jurisdiction(conn, code)
        self._committed()
        return jurisdiction

    def update_jurisdiction(
        self,
        code: str,
        *,
        name: str | None = None,
        add_networks: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        remove_networks: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    ) -> Jurisdiction:
        """Rename a jurisdiction and/or add and remove client networks, with the log entry
        of its new record, in one transaction. NotFound for an unknown code or a network
        to remove that it does not have; Conflict for a network another one has. A change
        that changes nothing writes nothing."""
        code = normalize_code(code)
        if name is not None and not name.strip():
            raise StoreError("a jurisdiction needs a name")
        adding = parse_networks(add_networks)
        removing = parse_networks(remove_networks)
        both = set(adding) & set(removing)
        if both:
            raise StoreError(f"network {sorted(both)[0]} is both added and removed")
        j, n = schema.jurisdictions, schema.jurisdiction_networks
        with self._logged_write() as conn:
            current = repo.get_jurisdiction(conn, code)
            have = {str(net) for net in current.networks}
            for cidr in removing:
                if cidr not in have:
                    raise NotFound(f"jurisdiction {code!r} has no network {cidr}")
            adding = [c for c in adding if c not in have]
            self._check_networks_free(conn, code, adding)
            renamed = name is not None and name.strip() != current.name
            if not renamed and not adding and not removing:
                return current
            if renamed:
                assert name is not None
                conn.execute(update(j).where(j.c.code == code).values(name=name.strip()))
            if removing:
                conn.execute(
                    delete(n).where(and_(n.c.jurisdiction == code, n.c.cidr.in_(removing)))
                )
            self._insert_networks(conn, code, adding)
            jurisdiction = self._log_jurisdiction(conn, code)
        self._committed()
        return jurisdiction

    @staticmethod
    def _check_networks_free(conn: Connection, code: str, cidrs: Sequence[str]) -> None:
        """Conflict when another jurisdiction already has one of ``cidrs``."""
        if not cidrs:
            return
        n = schema.jurisdiction_networks
        taken = conn.execute(
            select(n.c.cidr, n.c.jurisdiction).where(
                and_(n.c.cidr.in_(list(cidrs)), n.c.jurisdiction != code)
            )
        ).first()
        if taken is not None:
            raise Conflict(f"network {taken.cidr} already belongs to {taken.jurisdiction!r}")

    @staticmethod
    def _insert_networks(conn: Connection, code: str, cidrs: Sequence[str]) -> None:
        if cidrs:
            conn.execute(
                schema.jurisdiction_networks.insert(),
                [{"jurisdiction": code, "cidr": c} for c in cidrs],
            )

    def _log_jurisdiction(self, conn: Connection, code: str) -> Jurisdiction:
        """Append the jurisdiction's record as it now stands (inside the transaction)."""
        jurisdiction = repo.get_jurisdiction(conn, code)
        now = self.clock()
        append_entry(conn, entries.encode(entries.JurisdictionSet(now, jurisdiction)), now)
        return jurisdiction

    def add_authority(
        self,
        name: str,
        kind: AuthorityKind | str,
        jurisdiction: str,
        contacts: Iterable[str] = (),
        *,
        actor_jurisdiction: str | None = None,
    ) -> Authority:
        """Create an authority that may act in exactly ``jurisdiction``."""
        kind_value: AuthorityKind = parse_enum(AuthorityKind, kind, "authority kind")
        jurisdiction = normalize_code(jurisdiction)
        if actor_jurisdiction is not None and actor_jurisdiction != jurisdiction:
            raise ScopeError(
                f"an authority of {actor_jurisdiction!r} cannot create authorities in "
                f"{jurisdiction!r}"
            )
        if not name.strip():
            raise StoreError("an authority needs a name")
        contact_list = [c.strip() for c in contacts if c.strip()]
        for contact in contact_list:
            if not contact.lower().startswith(CONTACT_SCHEMES):
                raise StoreError(
                    f"invalid contact {contact!r}: use a mailto:, tel: or http(s):// URI"
                )
        with self.store.write() as conn:
            repo.get_jurisdiction(conn, jurisdiction)
            result = conn.execute(
                schema.authorities.insert().values(
                    name=name.strip(),
                    kind=kind_value.value,
                    jurisdiction=jurisdiction,
                    contacts=json.dumps(contact_list),
                    created_at=self.clock(),
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            return repo.get_authority(conn, int(pk[0]))

    # -- orders ----------------------------------------------------------------------

    def add_order(
        self,
        authority_id: int,
        title: str,
        legal_basis: str,
        reference: str,
        category: Category | str,
        action: Action | str,
        rules: Iterable[RuleSpec],
        issued: dt.date | str | None = None,
        effective_from: dt.date | dt.datetime | str | None = None,
        expires: dt.date | dt.datetime | str | None = None,
        document_url: str = "",
        all_jurisdictions: bool = False,
        actor_jurisdiction: str | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Order:
        """Publish an order with its rules: rows and log entry in one transaction.

        Conflict when the authority already has an active order with the same reference
        (re-importing a list into an existing order is ``amend_order``).
        """
        category_value: Category = parse_enum(Category, category, "category")
        action_value: Action = parse_enum(Action, action, "action")
        for what, text in (
            ("title", title),
            ("legal basis", legal_basis),
            ("reference", reference),
        ):
            if not text.strip():
                raise StoreError(f"an order needs a {what}")
        now = self.clock()
        start = as_utc(effective_from, "effective-from date") or now
        end = as_utc(expires, "expiry date")
        if end is not None and end <= start:
            raise StoreError(f"order expires ({end.isoformat()}) before it takes effect")
        issued_date = as_date(issued, start.date())
        rule_list = unique_rules(rules)
        # The digest is pure CPU: computed before the write lock is taken.
        rule_set = entries.RuleSet.of(rule_list)
        with self._logged_write() as conn:
            authority = repo.get_authority(conn, authority_id)
            self._check_scope(authority, actor_jurisdiction, "publish orders for")
            order = self._publish_order(
                conn,
                authority,
                title=title,
                legal_basis=legal_basis,
                reference=reference,
                category=category_value,
                action=action_value,
                rules=rule_list,
                rule_set=rule_set,
                issued=issued_date,
                start=start,
                end=end,
                document_url=document_url,
                all_jurisdictions=all_jurisdictions,
                now=now,
                progress=progress,
            )
        self._committed()
        return order

    def _publish_order(
        self,
        conn: Connection,
        authority: Authority,
        *,
        title: str,
        legal_basis: str,
        reference: str,
        category: Category,
        action: Action,
        rules: Sequence[RuleSpec],
        rule_set: entries.RuleSet,
        issued: dt.date,
        start: dt.datetime,
        end: dt.datetime | None,
        document_url: str,
        all_jurisdictions: bool,
        now: dt.datetime,
        progress: ProgressCallback | None,
    ) -> Order:
        """Insert an order, its rules and its ``order-published`` entry inside the caller's
        logged write (the caller has checked who may publish it)."""
        o = schema.orders
        if all_jurisdictions:
            why = all_jurisdictions_refusal(authority, category)
            if why:
                raise ScopeError(why)
        clash = conn.execute(
            select(o.c.id).where(
                and_(
                    o.c.authority_id == authority.id,
                    o.c.reference == reference.strip(),
                    o.c.status == OrderStatus.ACTIVE.value,
                )
            )
        ).first()
        if clash is not None:
            raise Conflict(
                f"authority {authority.id} already has active order {clash.id} with "
                f"reference {reference.strip()!r} (amend it instead)"
            )
        result = conn.execute(
            o.insert().values(
                authority_id=authority.id,
                title=title.strip(),
                legal_basis=legal_basis.strip(),
                reference=reference.strip(),
                category=category.value,
                action=action.value,
                issued=issued,
                effective_from=start,
                expires=end,
                document_url=document_url.strip(),
                status=OrderStatus.ACTIVE.value,
                all_jurisdictions=all_jurisdictions,
                created_at=now,
                log_index=None,
                rules_digest=rule_set.digest,
                rule_count=rule_set.count,
                revoked_reason=None,
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        order_id = int(pk[0])
        self._insert_rules(conn, order_id, rules, progress)
        order = repo.get_order(conn, order_id)
        data = entries.encode(entries.OrderPublished(now, order, authority, rule_set))
        index = append_entry(conn, data, now)
        conn.execute(update(o).where(o.c.id == order_id).values(log_index=index))
        return repo.get_order(conn, order_id)

    @staticmethod
    def _insert_rules(
        conn: Connection,
        order_id: int,
        rules: Sequence[RuleSpec],
        progress: ProgressCallback | None,
    ) -> None:
        """Insert rules in bulk inside the caller's transaction (no ORM object per rule).

        SQLite gets the driver's ``executemany`` directly; PostgreSQL gets ``COPY``, the
        fastest way in, on the same connection and so in the same transaction.
        """
        total = len(rules)
        if progress is not None:
            progress(0, total)
        for start in range(0, total, INSERT_BATCH):
            batch = [
                (order_id, _KIND_TEXT[r.kind], r.value, _ACTION_TEXT[r.action])
                for r in rules[start : start + INSERT_BATCH]
            ]
            if conn.dialect.name == "postgresql":
                driver = conn.connection.driver_connection
                assert driver is not None
                with (
                    driver.cursor() as cur,
                    cur.copy("COPY rules (order_id, kind, value, action) FROM STDIN") as copy,
                ):
                    for row in batch:
                        copy.write_row(row)
            else:
                conn.exec_driver_sql(
                    "INSERT INTO rules (order_id, kind, value, action) VALUES (?, ?, ?, ?)",
                    batch,
                )
            if progress is not None:
                progress(min(start + INSERT_BATCH, total), total)

    def amend_order(
        self,
        order_id: int,
        add: Iterable[RuleSpec] = (),
        remove: Iterable[RuleSpec] = (),
        reason: str = "",
        actor_jurisdiction: str | None = None,
        *,
        progress: ProgressCallback | None = None,
    ) -> Order:
        """Add and/or remove rules of an active order, logged as one ``order-amended`` entry.

        Rules already present are not added again and absent ones are not removed; when
        nothing changes no entry is written (re-importing the same list is idempotent).
        """
        add_list = unique_rules(add)
        remove_keys = {(r.kind.value, r.value) for r in remove}
        r = schema.rules
        o = schema.orders
        with self._logged_write() as conn:
            order = repo.get_order(conn, order_id)
            authority = repo.get_authority(conn, order.authority_id)
            self._check_scope(authority, actor_jurisdiction, "amend orders of")
            if order.status is not OrderStatus.ACTIVE:
                raise Conflict(f"order {order_id} is {order.status.value}; it cannot be amended")
            existing: dict[tuple[str, str], str | None] = {
                (kind, value): action
                for kind, value, action in conn.execute(
                    select(r.c.kind, r.c.value, r.c.action).where(r.c.order_id == order_id)
                )
            }
            to_remove = [k for k in remove_keys if k in existing]
            to_add = [
                x
                for x in add_list
                if (x.kind.value, x.value) not in existing
                and (x.kind.value, x.value) not in remove_keys
            ]
            if not to_remove and not to_add:
                return order
            if to_remove:
                stmt = delete(r).where(
                    and_(
                        r.c.order_id == bindparam("oid"),
                        r.c.kind == bindparam("k"),
                        r.c.value == bindparam("v"),
                    )
                )
                for start in range(0, len(to_remove), INSERT_BATCH):
                    conn.execute(
                        stmt,
                        [
                            {"oid": order_id, "k": k, "v": v}
                            for k, v in to_remove[start : start + INSERT_BATCH]
                        ],
                    )
            self._insert_rules(conn, order_id, to_add, progress)
            for key in to_remove:
                del existing[key]
            final = [
                RuleSpec(RuleKind(k), v, Action(a) if a else None) for (k, v), a in existing.items()
            ]
            final.extend(to_add)
            rule_set = entries.RuleSet.of(final)
            now = self.clock()
            conn.execute(
                update(o)
                .where(o.c.id == order_id)
                .values(rules_digest=rule_set.digest, rule_count=rule_set.count)
            )
            amended = entries.OrderAmended(
                now,
                order,
                authority,
                rule_set,
                len(to_add),
                len(to_remove),
                reason.strip(),
            )
            append_entry(conn, entries.encode(amended), now)
            order = repo.get_order(conn, order_id)
        self._committed()
        return order

    def revoke_order(
        self, order_id: int, reason: str, actor_jurisdiction: str | None = None
    ) -> Order:
        """Withdraw an active order; its rules stop being enforced at the next snapshot."""
        if not reason.strip():
            raise StoreError("revoking an order needs a reason")
        o = schema.orders
        with self._logged_write() as conn:
            order = repo.get_order(conn, order_id)
            authority = repo.get_authority(conn, order.authority_id)
            self._check_scope(authority, actor_jurisdiction, "revoke orders of")
            if order.status is not OrderStatus.ACTIVE:
                raise Conflict(f"order {order_id} is already {order.status.value}")
            now = self.clock()
            conn.execute(
                update(o)
                .where(o.c.id == order_id)
                .values(status=OrderStatus.REVOKED.value, revoked_reason=reason.strip())
            )
            append_entry(
                conn, entries.encode(entries.OrderRevoked(now, order_id, reason.strip())), now
            )
            order = repo.get_order(conn, order_id)
        self._committed()
        return order

    def expire_due(self, now: dt.datetime | None = None) -> list[int]:
        """Mark active orders past their sunset as expired, one log entry each; their ids."""
        at = now or self.clock()
        o = schema.orders
        with self._logged_write() as conn:
            due = list(
                conn.execute(
                    select(o.c.id)
                    .where(
                        and_(
                            o.c.status == OrderStatus.ACTIVE.value,
                            o.c.expires.is_not(None),
                            o.c.expires <= at,
                        )
                    )
                    .order_by(o.c.id)
                ).scalars()
            )
            if due:
                conn.execute(
                    update(o).where(o.c.id.in_(due)).values(status=OrderStatus.EXPIRED.value)
                )
                append_entries(conn, [entries.encode(entries.OrderExpired(at, i)) for i in due], at)
        if due:
            self._committed()
        return [int(i) for i in due]

    @staticmethod
    def _check_scope(authority: Authority, actor_jurisdiction: str | None, verb: str) -> None:
        if actor_jurisdiction is not None and authority.jurisdiction != actor_jurisdiction:
            raise ScopeError(
                f"an authority of {actor_jurisdiction!r} cannot {verb} "
                f"{authority.jurisdiction!r} (authority {authority.id})"
            )

    # -- appeals ---------------------------------------------------------------------

    def file_appeal(self, order_id: int, name: str, contact: str, reason: str) -> Appeal:
        """File an appeal against a published order; the filing is a log entry."""
        canonical = normalize_name(name)
        if not contact.strip() or not reason.strip():
            raise StoreError("an appeal needs a contact and a reason")
        t = schema.appeals
        with self._logged_write() as conn:
            order = repo.get_order(conn, order_id)
            if order.log_index is None:
                raise NotFound(f"no published order {order_id}")
            now = self.clock()
            result = conn.execute(
                t.insert().values(
                    order_id=order_id,
                    name=canonical,
                    contact=contact.strip(),
                    reason=reason.strip(),
                    status=AppealStatus.OPEN.value,
                    decision="",
                    filed_at=now,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            appeal_id = int(pk[0])
            filed = entries.AppealFiled(now, appeal_id, order_id, canonical, reason.strip())
            data = entries.encode(filed)
            index = append_entry(conn, data, now)
            conn.execute(update(t).where(t.c.id == appeal_id).values(filed_log_index=index))
            appeal = repo.get_appeal(conn, appeal_id)
        self._committed()
        return appeal

    def decide_appeal(
        self,
        appeal_id: int,
        outcome: AppealStatus | str,
        explanation: str,
        actor_jurisdiction: str | None = None,
    ) -> Appeal:
        """Decide an open appeal (``upheld`` or ``rejected``); the decision is a log entry."""
        status = parse_enum(AppealStatus, outcome, "appeal outcome")
        if status is AppealStatus.OPEN:
            raise StoreError("an appeal is decided as upheld or rejected")
        if not explanation.strip():
            raise StoreError("a decision needs an explanation")
        t = schema.appeals
        with self._logged_write() as conn:
            appeal = repo.get_appeal(conn, appeal_id)
            order = repo.get_order(conn, appeal.order_id)
            authority = repo.get_authority(conn, order.authority_id)
            self._check_scope(authority, actor_jurisdiction, "decide appeals against")
            if appeal.status is not AppealStatus.OPEN:
                raise Conflict(f"appeal {appeal_id} is already {appeal.status.value}")
            now = self.clock()
            decided = entries.AppealDecided(
                now, appeal_id, appeal.order_id, status.value, explanation.strip()
            )
            data = entries.encode(decided)
            index = append_entry(conn, data, now)
            conn.execute(
                update(t)
                .where(t.c.id == appeal_id)
                .values(
                    status=status.value,
                    decision=explanation.strip(),
                    decided_at=now,
                    decided_log_index=index,
                )
            )
            appeal = repo.get_appeal(conn, appeal_id)
        self._committed()
        return appeal

    # -- cross-border requests ---------------------------------------------------------

    def file_request(
        self,
        authority_id: int,
        to_jurisdiction: str,
        ask: entries.RequestAsk | str,
        category: Category | str,
        legal_basis: str,
        reference: str,
        rules: Iterable[RuleSpec],
        actor_jurisdiction: str | None = None,
    ) -> CrossBorderRequest:
        """File a request by an authority to another jurisdiction, with its
        ``request-filed`` entry, in one transaction. It changes no policy anywhere: only
        the receiving jurisdiction's own order (``accept_request``) can."""
        ask_value: entries.RequestAsk = parse_enum(entries.RequestAsk, ask, "request ask")
        category_value: Category = parse_enum(Category, category, "category")
        for what, text in (("legal basis", legal_basis), ("reference", reference)):
            if not text.strip():
                raise StoreError(f"a request needs a {what}")
        rule_list = unique_rules(rules)
        if not rule_list:
            raise StoreError("a request needs at least one name")
        if any(r.kind.is_allow for r in rule_list):
            raise StoreError("a request names what to block or unblock; it holds no allow rules")
        to_code = normalize_code(to_jurisdiction)
        lines = entries.sorted_rule_lines(rule_list)
        rule_set = entries.RuleSet.of(rule_list)
        t = schema.requests
        with self._logged_write() as conn:
            authority = repo.get_authority(conn, authority_id)
            self._check_scope(authority, actor_jurisdiction, "file requests for")
            repo.get_jurisdiction(conn, to_code)
            if to_code == authority.jurisdiction:
                raise StoreError(
                    f"a request goes to another jurisdiction; {authority.name!r} publishes "
                    f"orders in {to_code!r} itself"
                )
            now = self.clock()
            result = conn.execute(
                t.insert().values(
                    authority_id=authority.id,
                    from_jurisdiction=authority.jurisdiction,
                    to_jurisdiction=to_code,
                    ask=ask_value.value,
                    category=category_value.value,
                    legal_basis=legal_basis.strip(),
                    reference=reference.strip(),
                    rules="\n".join(line.decode("ascii") for line in lines),
                    rule_count=rule_set.count,
                    rules_digest=rule_set.digest,
                    status=RequestStatus.OPEN.value,
                    decision="",
                    filed_at=now,
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            request_id = int(pk[0])
            filed = entries.RequestFiled(
                now,
                request_id,
                authority,
                to_code,
                ask_value,
                category_value,
                legal_basis.strip(),
                reference.strip(),
                rule_set,
            )
            index = append_entry(conn, entries.encode(filed), now)
            conn.execute(update(t).where(t.c.id == request_id).values(filed_log_index=index))
            request = repo.get_request(conn, request_id)
        self._committed()
        return request

    def accept_request(
        self,
        request_id: int,
        authority_id: int,
        legal_basis: str,
        reference: str,
        *,
        title: str = "",
        action: Action | str = Action.NXDOMAIN,
        expires: dt.date | dt.datetime | str | None = None,
        document_url: str = "",
        reason: str = "",
        actor_jurisdiction: str | None = None,
    ) -> tuple[CrossBorderRequest, Order]:
        """Accept an open request: an order of the receiving jurisdiction, by its own
        ``authority_id`` on its own ``legal_basis``, with the request's names (blocked,
        or for a lift request excepted by allow rules), and the ``request-decided`` entry
        that names it, in one transaction. ScopeError unless the authority (and the
        caller) belongs to the receiving jurisdiction."""
        action_value: Action = parse_enum(Action, action, "action")
        for what, text in (("legal basis", legal_basis), ("reference", reference)):
            if not text.strip():
                raise StoreError(f"accepting a request needs the order's {what}")
        with self._logged_write() as conn:
            request, authority = self._deciding(
                conn, request_id, authority_id, actor_jurisdiction, "accept"
            )
            lift = request.ask == entries.RequestAsk.LIFT.value
            rules = [_allow(rule) if lift else rule for rule in _rule_specs(request.rules)]
            now = self.clock()
            end = as_utc(expires, "expiry date")
            if end is not None and end <= now:
                raise StoreError(f"order expires ({end.isoformat()}) before it takes effect")
            order = self._publish_order(
                conn,
                authority,
                title=title.strip()
                or f"Request {request.id} of {request.from_jurisdiction}: {request.reference}",
                legal_basis=legal_basis,
                reference=reference,
                category=Category(request.category),
                action=action_value,
                rules=rules,
                rule_set=entries.RuleSet.of(rules),
                issued=now.date(),
                start=now,
                end=end,
                document_url=document_url,
                all_jurisdictions=False,
                now=now,
                progress=None,
            )
            request = self._close(
                conn, request, authority, entries.RequestOutcome.ACCEPTED, reason, order.id, now
            )
        self._committed()
        return request, order

    def refuse_request(
        self,
        request_id: int,
        authority_id: int,
        reason: str,
        actor_jurisdiction: str | None = None,
    ) -> CrossBorderRequest:
        """Refuse an open request with a reason, by an authority of the receiving
        jurisdiction; the refusal is a log entry and changes no policy."""
        if not reason.strip():
            raise StoreError("refusing a request needs a reason")
        with self._logged_write() as conn:
            request, authority = self._deciding(
                conn, request_id, authority_id, actor_jurisdiction, "refuse"
            )
            request = self._close(
                conn,
                request,
                authority,
                entries.RequestOutcome.REFUSED,
                reason,
                None,
                self.clock(),
            )
        self._committed()
        return request

    def withdraw_request(
        self,
        request_id: int,
        reason: str,
        authority_id: int | None = None,
        actor_jurisdiction: str | None = None,
    ) -> CrossBorderRequest:
        """Withdraw an open request, by an authority of the requesting jurisdiction (the
        filing one when ``authority_id`` is None); the withdrawal is a log entry."""
        if not reason.strip():
            raise StoreError("withdrawing a request needs a reason")
        with self._logged_write() as conn:
            request = repo.get_request(conn, request_id)
            authority = repo.get_authority(conn, authority_id or request.authority_id)
            if authority.jurisdiction != request.from_jurisdiction:
                raise ScopeError(
                    f"only an authority of {request.from_jurisdiction!r} may withdraw "
                    f"request {request_id}"
                )
            self._check_scope(authority, actor_jurisdiction, "withdraw requests of")
            if request.status is not RequestStatus.OPEN:
                raise Conflict(f"request {request_id} is already {request.status.value}")
            request = self._close(
                conn,
                request,
                authority,
                entries.RequestOutcome.WITHDRAWN,
                reason,
                None,
                self.clock(),
            )
        self._committed()
        return request

    def _deciding(
        self,
        conn: Connection,
        request_id: int,
        authority_id: int,
        actor_jurisdiction: str | None,
        verb: str,
    ) -> tuple[CrossBorderRequest, Authority]:
        """The open request and the deciding authority, after checking that both the
        authority and the caller belong to the receiving jurisdiction."""
        request = repo.get_request(conn, request_id)
        authority = repo.get_authority(conn, authority_id)
        if authority.jurisdiction != request.to_jurisdiction:
            raise ScopeError(
                f"only an authority of {request.to_jurisdiction!r} may {verb} request "
                f"{request_id} ({authority.name!r} is of {authority.jurisdiction!r})"
            )
        self._check_scope(authority, actor_jurisdiction, f"{verb} requests to")
        if request.status is not RequestStatus.OPEN:
            raise Conflict(f"request {request_id} is already {request.status.value}")
        return request, authority

    @staticmethod
    def _close(
        conn: Connection,
        request: CrossBorderRequest,
        authority: Authority,
        outcome: entries.RequestOutcome,
        reason: str,
        order_id: int | None,
        now: dt.datetime,
    ) -> CrossBorderRequest:
        """Append the ``request-decided`` entry and record the outcome on the row."""
        t = schema.requests
        decided = entries.RequestDecided(
            now, request.id, authority, outcome, reason.strip(), order_id
        )
        index = append_entry(conn, entries.encode(decided), now)
        conn.execute(
            update(t)
            .where(t.c.id == request.id)
            .values(
                status=RequestStatus(outcome.value).value,
                decision=reason.strip(),
                decided_by=authority.id,
                order_id=order_id,
                decided_at=now,
                decided_log_index=index,
            )
        )
        return repo.get_request(conn, request.id)

    # -- subscriptions (not policy changes: no log entry) -------------------------------

    def add_subscription(
        self,
        order_id: int,
        source: str,
        format: str = "auto",
        refresh_seconds: int = 86_400,
        actor_jurisdiction: str | None = None,
    ) -> Subscription:
        """Subscribe an order to a list file or URL; refreshes import via ``amend_order``."""
        if refresh_seconds < 60:
            raise StoreError("refresh interval must be at least 60 seconds")
        t = schema.subscriptions
        with self.store.write() as conn:
            order = repo.get_order(conn, order_id)
            self._check_scope(
                repo.get_authority(conn, order.authority_id), actor_jurisdiction, "subscribe"
            )
            result = conn.execute(
                t.insert().values(
                    order_id=order_id,
                    source=source.strip(),
                    format=format,
                    refresh_seconds=refresh_seconds,
                    last_status="",
                )
            )
            pk = result.inserted_primary_key
            assert pk is not None
            row = conn.execute(select(t).where(t.c.id == int(pk[0]))).one()
            return repo.subscription_from_row(row)

    def record_refresh(
        self, subscription_id: int, status: str, at: dt.datetime | None = None
    ) -> None:
        """Record the outcome of a subscription refresh."""
        t = schema.subscriptions
        with self.store.write() as conn:
            result = conn.execute(
                update(t)
                .where(t.c.id == subscription_id)
                .values(last_refresh=at or self.clock(), last_status=status)
            )
            if result.rowcount == 0:
                raise NotFound(f"no subscription {subscription_id}")


SECURITY_CATEGORIES = frozenset(
    {Category.MALWARE, Category.PHISHING, Category.BOTNET, Category.SPAM}
)
"""The categories of a security feed: what a CERT may order for all jurisdictions."""


def all_jurisdictions_refusal(authority: Authority, category: Category) -> str:
    """Why ``authority`` may not issue an all-jurisdiction order of ``category`` ('' when
    it may): the operator's own security team may, and a CERT may for a security feed
    (malware, phishing, botnet, spam), which each jurisdiction can opt out of by an
    exception order of its own. Courts and regulators never bind other jurisdictions."""
    if authority.kind is AuthorityKind.OPERATOR:
        return ""
    if authority.kind is AuthorityKind.CERT and category in SECURITY_CATEGORIES:
        return ""
    allowed = ", ".join(sorted(c.value for c in SECURITY_CATEGORIES))
    return (
        f"only operator authorities, and CERTs for security categories ({allowed}), may "
        f"issue all-jurisdiction orders ({authority.name!r} is a {authority.kind.value}, "
        f"the category {category.value})"
    )


_ALLOW_OF = {
    RuleKind.EXACT: RuleKind.ALLOW_EXACT,
    RuleKind.SUBTREE: RuleKind.ALLOW_SUBTREE,
    RuleKind.WILDCARD: RuleKind.ALLOW_WILDCARD,
    RuleKind.RESPONSE_IP: RuleKind.ALLOW_RESPONSE_IP,
}


def _allow(rule: RuleSpec) -> RuleSpec:
    """The exception for what a block rule selects: an allow rule of the jurisdiction's
    own order outranks any block of the same name, a foreign feed's included."""
    return RuleSpec(_ALLOW_OF.get(rule.kind, rule.kind), rule.value)


def _rule_specs(lines: Iterable[str]) -> list[RuleSpec]:
    """Rules from their canonical lines (``entries.rule_line``)."""
    specs = []
    for line in lines:
        kind, value, *action = line.split(" ")
        specs.append(RuleSpec(RuleKind(kind), value, Action(action[0]) if action else None))
    return specs
