"""The loader enforces exactly what the log published; tampering is never enforced."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from clearwall.model import Action, Decision, OrderStatus, RuleKind
from clearwall.policy.model import CompiledOrder, RuleSpec
from clearwall.policy.snapshotfile import saved_jurisdictions
from clearwall.store import PolicyService, schema
from clearwall.store.loader import build_overlay, build_snapshot, load_policy, policy_version

from .test_service import OPERATOR, REGULATOR, J, add, rules


def loaded_ids(service: PolicyService) -> list[int]:
    """Ids of the orders the loader would enforce now."""
    return [c.order.id for c in load_policy(service.store)[0]]


def test_loads_published_orders_with_rules(service: PolicyService) -> None:
    a = add(service, reference="A")
    b = add(service, authority=REGULATOR, reference="B", rules=rules("b.example"))
    orders, jurisdictions, size = load_policy(service.store)
    assert size == J + 2 == policy_version(service.store)
    assert [c.order.id for c in orders] == [a.id, b.id]
    assert orders[1].authority.name == "Regulator B"
    assert orders[1].rules == (RuleSpec(RuleKind.SUBTREE, "b.example"),)
    assert [j.code for j in jurisdictions] == ["xa", "xb"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda conn, oid: conn.execute(
                insert(schema.rules).values(order_id=oid, kind="subtree", value="secret.example")
            ),
            "do not match the digest",
        ),
        (
            lambda conn, oid: conn.execute(
                update(schema.rules).where(schema.rules.c.order_id == oid).values(action="refused")
            ),
            "do not match the digest",
        ),
        (
            lambda conn, oid: conn.execute(
                update(schema.orders).where(schema.orders.c.id == oid).values(action="sinkhole")
            ),
            "metadata differs",
        ),
        (
            lambda conn, oid: conn.execute(
                update(schema.orders).where(schema.orders.c.id == oid).values(log_index=None)
            ),
            "not on the log",
        ),
    ],
)
def test_tampering_is_not_enforced(
    service: PolicyService, caplog: pytest.LogCaptureFixture, tamper, message: str
) -> None:
    good = add(service, reference="GOOD", rules=rules("good.example"))
    bad = add(service, reference="BAD")
    with service.store.write() as conn:
        tamper(conn, bad.id)
    with caplog.at_level(logging.WARNING, logger="clearwall.store.loader"):
        assert loaded_ids(service) == [good.id]
    assert f"order {bad.id}" in caplog.text and message in caplog.text


def test_order_written_without_entry_is_not_enforced(service: PolicyService) -> None:
    add(service)
    with service.store.write() as conn:
        conn.execute(update(schema.log_head).values(size=0))  # as if the entry were beyond the tree
    assert loaded_ids(service) == []


def test_revoked_expired_and_reactivated(service: PolicyService) -> None:
    a = add(service, reference="A")
    b = add(service, reference="B", expires="2030-01-01")
    c = add(service, authority=OPERATOR, reference="C", all_jurisdictions=True)
    service.revoke_order(a.id, "withdrawn")
    assert loaded_ids(service) == [b.id, c.id]
    assert [
        o.order.id for o in load_policy(service.store, dt.datetime(2031, 1, 1, tzinfo=dt.UTC))[0]
    ] == [c.id]
    # Flipping the status back in the database does not bring a revoked order back.
    with service.store.write() as conn:
        conn.execute(
            update(schema.orders)
            .where(schema.orders.c.id == a.id)
            .values(status=OrderStatus.ACTIVE.value)
        )
    assert loaded_ids(service) == [b.id, c.id]


def test_amended_order_is_enforced_with_new_rules(service: PolicyService) -> None:
    order = add(service)
    service.amend_order(order.id, add=rules("new.example"), reason="extension")
    [compiled] = load_policy(service.store)[0]
    assert {r.value for r in compiled.rules} == {"blocked.example", "other.example", "new.example"}


def test_build_snapshot_matches(service: PolicyService) -> None:
    add(service, rules=rules("blocked.example"))
    add(
        service,
        authority=OPERATOR,
        reference="SEC",
        category="malware",
        action=Action.SINKHOLE,
        all_jurisdictions=True,
        rules=rules("evil.example"),
        effective_from="2020-01-01",
    )
    add(service, authority=REGULATOR, reference="REG", effective_from="2020-01-01")
    snap = build_snapshot(service.store)
    assert snap.jurisdiction_of("127.77.0.1") == "xb"
    assert snap.jurisdiction_of("127.0.0.1") == "xa"
    assert snap.match("evil.example", "xb").decision is Decision.BLOCK
    assert snap.match("www.blocked.example", "xa").decision is Decision.BLOCK
    assert snap.match("unlisted.example", "xa").decision is Decision.ALLOW


@pytest.mark.parametrize(
    ("tamper", "message", "in_force"),
    [
        (  # a network slipped into the table: never enforced
            lambda conn: conn.execute(
                insert(schema.jurisdiction_networks).values(jurisdiction="xb", cidr="10.9.0.0/16")
            ),
            "jurisdiction 'xb': stored record differs from log entry 1",
            {"xa": ["127.0.0.0/8", "::1/128"], "xb": ["127.77.0.0/16"]},
        ),
        (  # a jurisdiction written without its entry (or before they were logged)
            lambda conn: (
                conn.execute(insert(schema.jurisdictions).values(code="xc", name="C")),
                conn.execute(
                    insert(schema.jurisdiction_networks).values(
                        jurisdiction="xc", cidr="10.8.0.0/16"
                    )
                ),
            ),
            "jurisdiction 'xc' is not on the log",
            {"xa": ["127.0.0.0/8", "::1/128"], "xb": ["127.77.0.0/16"]},
        ),
    ],
)
def test_jurisdictions_are_what_the_log_says(
    service: PolicyService,
    caplog: pytest.LogCaptureFixture,
    tamper,
    message: str,
    in_force: dict[str, list[str]],
) -> None:
    with service.store.write() as conn:
        tamper(conn)
    with caplog.at_level(logging.WARNING, logger="clearwall.store.loader"):
        jurisdictions = load_policy(service.store)[1]
    assert {j.code: [str(n) for n in j.networks] for j in jurisdictions} == in_force
    assert message in caplog.text


def test_logged_jurisdiction_changes_are_enforced(service: PolicyService, tmp_path: Path) -> None:
    base = build_snapshot(service.store)
    base.save(tmp_path / "base")
    service.add_jurisdiction("xc", "Demo Republic C", ["10.77.1.0/24"])
    service.update_jurisdiction("xb", add_networks=["10.88.0.0/16"], name="Republic B")
    service.update_jurisdiction("xa", remove_networks=["::1/128"])
    for snapshot in (
        build_snapshot(service.store),
        build_overlay(service.store, base.tree_size)[0],  # reads the whole log
        build_overlay(  # reads the new entries over the base's jurisdictions
            service.store, base.tree_size, base_jurisdictions=saved_jurisdictions(tmp_path / "base")
        )[0],
    ):
        assert snapshot.jurisdiction_of("10.77.1.9") == "xc"
        assert snapshot.jurisdiction_of("10.88.3.4") == "xb"
        assert snapshot.jurisdiction_of("::1") is None
        assert snapshot.jurisdiction_of("127.0.0.1") == "xa"


# A rule added behind the log's back; the second cannot even compile (a newline in a
# name): the forked compile, which builds the tables before the digests are known, must
# withhold its order as the sequential one does, not fail.
@pytest.mark.parametrize("added", [None, "x.example", "x.example\ny.example"])
def test_the_parallel_compile_is_the_sequential_one(
    service: PolicyService,
    caplog: pytest.LogCaptureFixture,
    added: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway's start-up compile checks the rules digests in a forked process while
    it builds the tables: same snapshot (version), same provenance, and an order whose
    stored rules do not match its logged digest is left out all the same."""
    from clearwall.store import loader
    from clearwall.store.loader import build_snapshot_proven

    monkeypatch.setattr(loader, "_cores", lambda: 2)  # the fork, even on a pinned runner

    tampered = added is not None
    ip_rules = [RuleSpec(RuleKind.RESPONSE_IP, "192.0.2.0/24", Action.REFUSED)]
    good = add(service, reference="GOOD", rules=[*rules("good.example", "b.example"), *ip_rules])
    bad = add(service, reference="BAD", rules=rules("bad.example", kind=RuleKind.EXACT))
    if added is not None:
        with service.store.write() as conn:
            conn.execute(insert(schema.rules).values(order_id=bad.id, kind="subtree", value=added))
    with caplog.at_level(logging.WARNING, logger="clearwall.store.loader"):
        one, one_proven = build_snapshot_proven(service.store, "http://x", parallel=False)
        two, two_proven = build_snapshot_proven(service.store, "http://x", parallel=True)
    assert one.version == two.version and one_proven == two_proven
    assert sorted(one_proven.orders) == ([good.id] if tampered else [good.id, bad.id])
    assert one_proven.withheld == ({bad.id} if tampered else set())
    assert two.match("www.bad.example", "xa").blocked is False
    assert two.match("bad.example", "xa").blocked is not tampered
    assert two.match_ip("192.0.2.7", "xa").blocked
    assert (f"order {bad.id}" in caplog.text) is tampered


@pytest.mark.parametrize("cores", [1, 2])
def test_the_digests_fork_only_with_a_second_core(
    service: PolicyService, monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    """A compile pinned to one core computes the digests in-process (a fork would only
    add its copy-on-write faults to the same core); with two it forks them."""
    from clearwall.store import loader

    add(service, reference="ONE", rules=rules("one.example"))
    forks: list[int] = []
    forked = loader._digests_forked

    def counting(orders: list[CompiledOrder]) -> Callable[[], dict[int, tuple[str, int]] | None]:
        forks.append(len(orders))
        return forked(orders)

    monkeypatch.setattr(loader, "_cores", lambda: cores)
    monkeypatch.setattr(loader, "_digests_forked", counting)
    snapshot, proven = loader.build_snapshot_proven(service.store, parallel=True)
    assert len(forks) == (cores - 1)
    assert snapshot.match("one.example", "xa").blocked and len(proven.orders) == 1


def _one_rule(column: str, value: object) -> Callable[[Any, int], object]:
    """A raw UPDATE of one rule (``b.example``'s) of the order."""

    def tamper(conn: Any, oid: int) -> object:
        r = schema.rules
        return conn.execute(
            update(r).where(r.c.order_id == oid, r.c.value == "b.example").values({column: value})
        )

    return tamper


@pytest.mark.parametrize("amended", [False, True])
@pytest.mark.parametrize(
    ("action", "tamper"),
    [
        (None, _one_rule("action", "refused")),  # one action: no longer one text
        (None, _one_rule("kind", "exact")),  # one kind likewise
        (None, _one_rule("value", "c.example")),  # one value: one text, another digest
        (None, _one_rule("value", "b.example\nsecret.example")),  # a newline: not one text
        # Rules that state their action (RPZ): one of them with none, or another one,
        # would give the very same text, prefix and suffix if only some actions counted.
        (Action.REFUSED, _one_rule("action", None)),
        (Action.REFUSED, _one_rule("action", "sinkhole")),
        (Action.REFUSED, _one_rule("action", "nxdomain")),
        (
            None,
            lambda conn, oid: conn.execute(  # every action: one text, another digest
                update(schema.rules).where(schema.rules.c.order_id == oid).values(action="refused")
            ),
        ),
        (
            None,
            lambda conn, oid: conn.execute(  # a rule more, of the same kind and action
                insert(schema.rules).values(order_id=oid, kind="subtree", value="secret.example")
            ),
        ),
    ],
)
def test_tampering_with_an_order_read_as_one_text_is_not_enforced(
    service: PolicyService,
    caplog: pytest.LogCaptureFixture,
    action: Action | None,
    tamper: Callable[[Any, int], object],
    amended: bool,
) -> None:
    """An order whose rules share one kind and one action is read as one text (``amended``:
    its rows are not one run of ids, read otherwise); any rule changed behind the log's
    back still withholds it with a warning, on the sequential and the forked compile."""
    from clearwall.store import repositories as repo
    from clearwall.store.loader import build_snapshot_proven

    names = [RuleSpec(RuleKind.SUBTREE, f"{c}.example", action) for c in "abdefgh"]
    good = add(service, reference="GOOD", rules=rules("good.example"))
    bad = add(service, reference="BAD", rules=names[:4])
    if amended:
        add(service, reference="BETWEEN")
        service.amend_order(bad.id, add=names[4:], reason="more")
    with service.store.read() as conn:
        assert repo.rule_rows(conn, bad.id).text is not None  # the text path, untampered
    assert bad.id in loaded_ids(service)
    with service.store.write() as conn:
        tamper(conn, bad.id)
    with caplog.at_level(logging.WARNING, logger="clearwall.store.loader"):
        assert bad.id not in loaded_ids(service) and good.id in loaded_ids(service)
        for parallel in (False, True):
            _snapshot, provenance = build_snapshot_proven(service.store, parallel=parallel)
            assert bad.id in provenance.withheld and good.id in provenance.orders
    assert f"order {bad.id}" in caplog.text and "do not match the digest" in caplog.text
