"""PolicyService on real SQLite and PostgreSQL: CRUD, scoping, atomicity, idempotence, the log."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from clearwall.errors import Conflict, InvalidName, NotFound, ScopeError, StoreError
from clearwall.ledger import entries
from clearwall.ledger.merkle import leaf_hash
from clearwall.model import Action, Category, OrderStatus, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store, schema
from clearwall.store import service as service_module
from clearwall.store.reader import PolicyReader
from clearwall.store.records import AppealStatus

COURT, REGULATOR, OPERATOR = 1, 2, 3
J = 2  # the fixture's jurisdictions are the log's first entries (one jurisdiction-set each)


def rules(*names: str, kind: RuleKind = RuleKind.SUBTREE) -> list[RuleSpec]:
    """Rules of one kind over ``names``."""
    return [RuleSpec(kind, n) for n in names]


def add(svc: PolicyService, authority: int = COURT, **kw: Any) -> Any:
    """Add an order with sensible defaults."""
    args: dict[str, Any] = {
        "title": "Order on example sites",
        "legal_basis": "Fictional Act s. 1",
        "reference": "REF-1",
        "category": "court-order",
        "action": "nxdomain",
        "rules": rules("blocked.example", "other.example"),
    }
    args.update(kw)
    return svc.add_order(authority, **args)


def counts(store: Store) -> tuple[int, int, int]:
    """(orders, rules, log entries) rows in the store."""
    with store.read() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (schema.orders, schema.rules, schema.log_entries)
        )


def test_jurisdictions_and_authorities_round_trip(service: PolicyService) -> None:
    xa = PolicyReader(service.store).jurisdiction("xa")
    assert xa.name == "Demo Republic A"
    assert [str(n) for n in xa.networks] == ["127.0.0.0/8", "::1/128"]
    assert [j.code for j in PolicyReader(service.store).jurisdictions()] == ["xa", "xb"]
    court = PolicyReader(service.store).authority(COURT)
    assert (court.name, court.kind.value, court.jurisdiction) == ("Court A", "court", "xa")
    assert court.contacts == ("mailto:court@a.example",)
    assert [a.id for a in PolicyReader(service.store).authorities("xa")] == [COURT, OPERATOR]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.add_jurisdiction("xa", "again"), Conflict),
        (lambda s: s.add_jurisdiction("x", "too short"), StoreError),
        (lambda s: s.add_jurisdiction("xc", "bad net", ["10.0.0.1/8"]), StoreError),
        (lambda s: s.add_jurisdiction("xc", "taken", ["127.77.0.0/16"]), Conflict),
        (lambda s: s.add_authority("A", "king", "xa"), StoreError),
        (lambda s: s.add_authority("A", "court", "zz"), NotFound),
        (lambda s: s.add_authority("A", "court", "xa", ["court@example"]), StoreError),
        (lambda s: PolicyReader(s.store).authority(99), NotFound),
        (lambda s: PolicyReader(s.store).order(99), NotFound),
        (lambda s: PolicyReader(s.store).jurisdiction("zz"), NotFound),
        (lambda s: add(s, authority=99), NotFound),
        (lambda s: add(s, category="gossip"), StoreError),
        (lambda s: add(s, action="explode"), StoreError),
        (lambda s: add(s, title=" "), StoreError),
        (lambda s: add(s, effective_from="2030-01-02", expires="2030-01-01"), StoreError),
        (lambda s: add(s, expires="not a date"), StoreError),
        (lambda s: add(s, rules=[RuleSpec(RuleKind.EXACT, "Bad Name")]), InvalidName),
        (lambda s: add(s, rules=[RuleSpec(RuleKind.RESPONSE_IP, "10.0.0.1/8")]), StoreError),
    ],
)
def test_bad_input_writes_nothing(
    service: PolicyService, call: Callable[[PolicyService], Any], error: type[Exception]
) -> None:
    before = counts(service.store)
    with pytest.raises(error):
        call(service)
    assert counts(service.store) == before


def test_add_order_publishes_one_entry(service: PolicyService) -> None:
    order = add(
        service,
        rules=[*rules("b.example", "a.example"), RuleSpec(RuleKind.RESPONSE_IP, "192.0.2.0/24")],
        issued="2026-01-05",
        effective_from="2026-01-10",
        expires=dt.datetime(2027, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        document_url="https://court.a.example/orders/1",
    )
    assert order.log_index == J and order.status is OrderStatus.ACTIVE
    assert order.effective_from == dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    assert order.expires == dt.datetime(2027, 1, 1, 10, tzinfo=dt.UTC)
    assert order.expires.tzinfo is dt.UTC
    assert order.issued == dt.date(2026, 1, 5)
    stored = PolicyReader(service.store).order_rules(order.id)
    assert stored == (
        RuleSpec(RuleKind.RESPONSE_IP, "192.0.2.0/24"),
        RuleSpec(RuleKind.SUBTREE, "a.example"),
        RuleSpec(RuleKind.SUBTREE, "b.example"),
    )
    [entry] = service.store.log_entries(J)
    assert entry.index == J and entry.leaf_hash == leaf_hash(entry.data)
    at = dt.datetime.fromisoformat(__import__("json").loads(entry.data)["time"])
    # The digest the service computed before taking the lock is the rule set's own.
    authority = PolicyReader(service.store).authority(COURT)
    published = entries.OrderPublished(at, order, authority, entries.RuleSet.of(stored))
    assert entries.parse(entry.data) == published
    assert entry.data == entries.encode(published)
    assert service.store.log_size() == J + 1


@pytest.mark.parametrize(
    ("authority", "actor", "all_jurisdictions", "allowed"),
    [
        (COURT, "xa", False, True),
        (COURT, "xb", False, False),
        (REGULATOR, "xa", False, False),
        (REGULATOR, "xb", False, True),
        (COURT, None, True, False),  # only operators may act for all jurisdictions
        (OPERATOR, None, True, True),
        (OPERATOR, "xb", True, False),
    ],
)
def test_order_scoping(
    service: PolicyService,
    authority: int,
    actor: str | None,
    all_jurisdictions: bool,
    allowed: bool,
) -> None:
    call = lambda: add(  # noqa: E731
        service, authority=authority, actor_jurisdiction=actor, all_jurisdictions=all_jurisdictions
    )
    if allowed:
        assert call().all_jurisdictions is all_jurisdictions
        return
    with pytest.raises(ScopeError):
        call()
    assert counts(service.store) == (0, 0, J)


def test_scope_on_amend_revoke_and_appeals(service: PolicyService) -> None:
    order = add(service)
    before = counts(service.store)
    with pytest.raises(ScopeError):
        service.amend_order(order.id, add=rules("new.example"), actor_jurisdiction="xb")
    with pytest.raises(ScopeError):
        service.revoke_order(order.id, "no", actor_jurisdiction="xb")
    appeal = service.file_appeal(order.id, "blocked.example", "mailto:me@x.example", "mistake")
    with pytest.raises(ScopeError):
        service.decide_appeal(appeal.id, "upheld", "ok", actor_jurisdiction="xb")
    assert counts(service.store)[:2] == before[:2]
    assert service.store.log_size() == before[2] + 1  # only the appeal filing


def test_failure_mid_order_leaves_nothing(service: PolicyService) -> None:
    """A failure after half the rules are written rolls back rules, order and entry."""
    many = rules(*(f"n{i}.example" for i in range(service_module.INSERT_BATCH + 10)))

    def explode(done: int, total: int) -> None:
        if done >= service_module.INSERT_BATCH:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        service.add_order(COURT, "t", "lb", "r", "court-order", "nxdomain", many, progress=explode)
    assert counts(service.store) == (0, 0, J)
    assert service.store.log_size() == J


def test_failure_writing_the_entry_leaves_nothing(
    service: PolicyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> int:
        raise StoreError("log head unavailable")

    monkeypatch.setattr(service_module, "append_entry", broken)
    with pytest.raises(StoreError):
        add(service)
    assert counts(service.store) == (0, 0, J)


def test_duplicate_reference_conflicts(service: PolicyService) -> None:
    add(service)
    with pytest.raises(Conflict):
        add(service)
    assert counts(service.store) == (1, 2, J + 1)


def test_amend_is_idempotent_and_logged(service: PolicyService) -> None:
    order = add(service)
    same = service.amend_order(order.id, add=rules("blocked.example", "other.example"))
    assert same == order and service.store.log_size() == J + 1
    service.amend_order(order.id, add=rules("third.example"), remove=rules("other.example"))
    assert service.store.log_size() == J + 2
    current = PolicyReader(service.store).order_rules(order.id)
    assert [r.value for r in current] == ["blocked.example", "third.example"]
    amended = service.store.log_entries(J + 1)[0].data
    event = __import__("json").loads(amended)
    assert event["type"] == "order-amended"
    assert (event["rules"]["added"], event["rules"]["removed"]) == (1, 1)
    assert event["rules"]["digest"] == entries.rules_digest(current)[0]
    service.amend_order(order.id, add=rules("third.example"), remove=rules("nothing.example"))
    assert service.store.log_size() == J + 2


def test_revoke_and_expire(service: PolicyService) -> None:
    a = add(service, reference="A")
    b = add(service, reference="B", expires="2020-06-01", effective_from="2020-01-01")
    with pytest.raises(StoreError):
        service.revoke_order(a.id, " ")
    revoked = service.revoke_order(a.id, "set aside on appeal")
    assert revoked.status is OrderStatus.REVOKED
    assert PolicyReader(service.store).order_revoked_reason(a.id) == "set aside on appeal"
    with pytest.raises(Conflict):
        service.revoke_order(a.id, "again")
    with pytest.raises(Conflict):
        service.amend_order(a.id, add=rules("x.example"))
    assert service.expire_due(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == [b.id]
    assert service.expire_due() == []
    assert PolicyReader(service.store).order(b.id).status is OrderStatus.EXPIRED
    kinds = [__import__("json").loads(e.data)["type"] for e in service.store.log_entries()]
    assert kinds == [
        *["jurisdiction-set"] * J,
        *["order-published", "order-published", "order-revoked", "order-expired"],
    ]


def test_appeals(service: PolicyService) -> None:
    order = add(service)
    appeal = service.file_appeal(order.id, "Blocked.Example.", "mailto:me@x.example", "wrong")
    assert appeal.name == "blocked.example" and appeal.status is AppealStatus.OPEN
    assert appeal.filed_log_index == J + 1
    decided = service.decide_appeal(appeal.id, "rejected", "the order stands", "xa")
    assert decided.status is AppealStatus.REJECTED and decided.decided_log_index == J + 2
    assert decided.decided_at is not None and decided.decided_at.tzinfo is dt.UTC
    with pytest.raises(Conflict):
        service.decide_appeal(appeal.id, "upheld", "changed my mind")
    assert PolicyReader(service.store).appeals(order.id) == [decided]
    with pytest.raises(NotFound):
        service.file_appeal(99, "x.example", "c", "r")


def test_subscriptions(service: PolicyService) -> None:
    order = add(service)
    sub = service.add_subscription(order.id, "https://lists.example/a.txt", "domains", 3600)
    service.record_refresh(sub.id, "ok: 2 rules")
    [stored] = PolicyReader(service.store).subscriptions(order.id)
    assert stored.last_status == "ok: 2 rules" and stored.last_refresh is not None


def test_concurrent_writers_get_consecutive_indexes(service: PolicyService) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        svc = PolicyService(service.store)
        try:
            for i in range(4):
                add(svc, reference=f"T{n}-{i}", rules=rules(f"w{n}-{i}.example"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [e.index for e in service.store.log_entries()] == list(range(J + 12))
    assert sorted(o.log_index for o in PolicyReader(service.store).orders()) == list(
        range(J, J + 12)
    )  # type: ignore[type-var]


def test_bulk_rules_round_trip(service: PolicyService) -> None:
    many = rules(*(f"host{i}.bulk.example" for i in range(45_000)))
    order = add(service, rules=many, category=Category.MALWARE, action=Action.SINKHOLE)
    assert PolicyReader(service.store).order(order.id).log_index == J
    with service.store.read() as conn:
        n = conn.execute(select(func.count()).select_from(schema.rules)).scalar_one()
    assert n == 45_000
    assert entries.rules_digest(
        PolicyReader(service.store).order_rules(order.id)
    ) == entries.rules_digest(many)


def test_rule_added_behind_the_log_is_visible_in_store_only(service: PolicyService) -> None:
    """A rule inserted straight into the table is in the store, but the order it joins is
    no longer enforced (its rules do not hash to the logged digest) and the audit's
    store check names it."""
    from clearwall.store.loader import load_policy
    from clearwall.store.logmatch import match_log

    order = add(service)
    enforced = [c.order.id for c in load_policy(service.store)[0]]
    assert enforced == [order.id] and match_log(service.store, log_state(service)).problems == []
    with service.store.write() as conn:
        conn.execute(
            insert(schema.rules).values(order_id=order.id, kind="exact", value="x.example")
        )
    assert len(PolicyReader(service.store).order_rules(order.id)) == 3
    assert load_policy(service.store)[0] == []  # not enforced
    [problem] = match_log(service.store, log_state(service)).problems
    assert problem.startswith(f"order {order.id}: its 3 stored rules do not match the digest")


def log_state(service: PolicyService) -> Any:
    """The fold of the store's whole log."""
    from clearwall.ledger.logstate import fold

    return fold((e.index, e.data) for e in service.store.log_entries())


def test_batch_append_gives_consecutive_indexes(service: PolicyService) -> None:
    """append_entries writes a batch under one head lock; the head equals the entry count."""
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    before = service.store.log_size()
    batch = [entries.encode(entries.OrderExpired(at, i)) for i in range(1, 251)]
    with service.store.write() as conn:
        first = service_module.append_entries(conn, batch, at)
        assert service_module.append_entries(conn, [], at) == first + len(batch)
    assert first == before
    assert service.store.log_size() == before + len(batch)
    stored = service.store.log_entries()[before:]
    assert [e.data for e in stored] == batch
    assert [e.leaf_hash for e in stored] == [leaf_hash(d) for d in batch]


def test_expiring_several_orders_logs_each_once(service: PolicyService) -> None:
    old = dict(effective_from="2020-01-01", expires="2020-06-01")
    ids = [add(service, reference=f"E{i}", **old).id for i in range(3)]
    assert service.expire_due(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == ids
    expired = [
        __import__("json").loads(e.data)
        for e in service.store.log_entries()
        if b'"order-expired"' in e.data
    ]
    assert [e["order"] for e in expired] == ids


def test_jurisdiction_changes_are_logged_with_their_record(service: PolicyService) -> None:
    def last() -> dict[str, Any]:
        size = service.store.log_size()
        event = json.loads(service.store.log_entries(size - 1)[0].data)
        assert event["type"] == entries.JurisdictionSet.TYPE
        return event["jurisdiction"]  # type: ignore[no-any-return]

    first = [json.loads(e.data)["jurisdiction"] for e in service.store.log_entries(0, J)]
    assert first == [
        {"code": "xa", "name": "Demo Republic A", "networks": ["127.0.0.0/8", "::1/128"]},
        {"code": "xb", "name": "Demo Republic B", "networks": ["127.77.0.0/16"]},
    ]
    service.add_jurisdiction("xc", "Demo Republic C", ["10.77.1.0/24"])
    assert last() == {"code": "xc", "name": "Demo Republic C", "networks": ["10.77.1.0/24"]}
    service.update_jurisdiction("xc", add_networks=["2001:db8::/32", "10.0.0.0/24"])
    assert last()["networks"] == ["10.0.0.0/24", "10.77.1.0/24", "2001:db8::/32"]
    service.update_jurisdiction("xc", remove_networks=["10.77.1.0/24"], name="Republic C")
    assert last() == {
        "code": "xc",
        "name": "Republic C",
        "networks": ["10.0.0.0/24", "2001:db8::/32"],
    }
    size = service.store.log_size()
    assert service.update_jurisdiction("xc", add_networks=["10.0.0.0/24"]).code == "xc"
    assert service.update_jurisdiction("xc", name="Republic C").code == "xc"
    assert service.store.log_size() == size  # nothing changed, nothing written


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"add_networks": ["127.77.0.0/16"]}, Conflict),  # xb's
        ({"remove_networks": ["10.1.0.0/16"]}, NotFound),  # not xa's
        ({"add_networks": ["10.0.0.1/8"]}, StoreError),  # host bits
        ({"add_networks": ["10.2.0.0/16"], "remove_networks": ["10.2.0.0/16"]}, StoreError),
        ({"name": " "}, StoreError),
    ],
)
def test_bad_jurisdiction_updates_write_nothing(
    service: PolicyService, change: dict[str, Any], error: type[Exception]
) -> None:
    before = PolicyReader(service.store).jurisdiction("xa")
    with pytest.raises(error):
        service.update_jurisdiction("xa", **change)
    assert PolicyReader(service.store).jurisdiction("xa") == before
    assert service.store.log_size() == J


def test_unknown_jurisdiction_update(service: PolicyService) -> None:
    with pytest.raises(NotFound):
        service.update_jurisdiction("zz", name="Z")


def test_failed_jurisdiction_entry_leaves_no_jurisdiction(
    service: PolicyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> int:
        raise StoreError("log head unavailable")

    monkeypatch.setattr(service_module, "append_entry", broken)
    with pytest.raises(StoreError):
        service.add_jurisdiction("xc", "C", ["10.77.1.0/24"])
    with pytest.raises(StoreError):
        service.update_jurisdiction("xa", add_networks=["10.78.0.0/16"])
    assert [j.code for j in PolicyReader(service.store).jurisdictions()] == ["xa", "xb"]
    assert [str(n) for n in PolicyReader(service.store).jurisdiction("xa").networks] == [
        "127.0.0.0/8",
        "::1/128",
    ]
    assert service.store.log_size() == J


def test_two_writers_expiring_the_same_orders_log_each_once(
    service: PolicyService, store_url: str
) -> None:
    """Two gateways' jobs on one store: the second writer's check of what is due runs
    after the first commits (the log head is held from the start), on PostgreSQL as on
    SQLite. The first writer waits, after reading what is due, for the second to have
    read it too (or for a few seconds, when the second cannot read before it commits)."""
    import threading

    from sqlalchemy import event

    old = dict(effective_from="2020-01-01", expires="2020-06-01")
    ids = [add(service, reference=f"D{i}", **old).id for i in range(2)]
    first_read, second_read = threading.Event(), threading.Event()
    second = PolicyService(Store(store_url))

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM orders" not in statement or "expires" not in statement:
            return
        if threading.current_thread().name == "first":
            first_read.set()
            second_read.wait(5)
        else:
            second_read.set()

    results: dict[str, list[int]] = {}
    threads = [
        threading.Thread(name="first", target=lambda: results.update(a=service.expire_due())),
        threading.Thread(
            name="second",
            target=lambda: first_read.wait(30) and results.update(b=second.expire_due()),
        ),
    ]
    for store in (service.store, second.store):
        event.listen(store.engine, "after_cursor_execute", after)
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    second.store.dispose()
    assert sorted(results["a"] + results["b"]) == ids
    logged = [entries.parse(e.data) for e in service.store.log_entries()]
    assert sorted(e.order_id for e in logged if isinstance(e, entries.OrderExpired)) == ids
