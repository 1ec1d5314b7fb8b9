"""The one fold of the log (``ledger.logstate``) against the code it replaced.

``legacy_fold`` is the loader's and the name prover's fold as they were written on raw
JSON; the fold must say the same of every order and jurisdiction, of which orders bind
whom and when, and of which stored orders are enforceable: on random histories
(hypothesis, with entries that are not ours mixed in) and on the demo store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.demo import install_demo
from clearwall.errors import VerificationError
from clearwall.ledger import entries
from clearwall.ledger.entries import OrderPublished, RuleSet
from clearwall.ledger.logstate import Finding, LogState, fold
from clearwall.model import Action, AuthorityKind, Category
from clearwall.policy.model import Authority, Jurisdiction, Order
from clearwall.store import PolicyService, Store, open_store
from clearwall.store.reader import PolicyReader
from ledger import legacy_fold

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CODES = ("xa", "xb", "zz")
FINDINGS = {
    None: None,
    Finding.NOT_ON_LOG: "not on the log",
    Finding.ENDED: "ended",
    Finding.UNPUBLISHED: "no publishing entry",
    Finding.METADATA: "metadata",
    Finding.RULES: "rules",
}
NOT_OURS = [b'{"i":1}', b"not json", b'{"time":"2026-01-01T00:00:00+00:00","type":"later"}']


def assert_same_state(rows: list[tuple[int, bytes]], since: int = 0) -> LogState:
    """Fold ``rows[since:]`` both ways and compare everything the old fold said."""
    old = legacy_fold.logged_state(rows[since:])
    new = LogState(since)
    new.extend(rows[since:])
    assert new.size == len(rows)
    versions = {oid: s.version for oid, s in new.orders.items() if s.version is not None}
    assert set(versions) == set(old.latest)
    for oid, (index, version) in versions.items():
        logged = dict(old.latest[oid])
        assert logged.pop("_index") == index
        assert entries.to_json(version) == logged
    assert {oid for oid, s in new.orders.items() if s.ended is not None} == old.ended
    assert new.named() == old.named
    assert new.jurisdictions == old.jurisdictions
    return new


def assert_same_bindings(rows: list[tuple[int, bytes]], times: list[dt.datetime]) -> None:
    old = legacy_fold.logged_state(rows)
    new = fold(rows)
    for code in CODES:
        for at in times:
            assert [i for i, _ in new.in_force(code, at)] == legacy_fold.in_force(old, code, at)


def assert_same_verdict(
    state: LogState,
    rows: list[tuple[int, bytes]],
    order: Order,
    authority: Authority,
    rules: RuleSet,
) -> Finding | None:
    old = legacy_fold.logged_state(rows)
    want = legacy_fold.enforceable(
        order, authority, (rules.digest, rules.count), old.latest.get(order.id), old.ended,
        len(rows),
    )  # fmt: skip
    got = state.check_order(order, authority, lambda: rules).finding
    assert FINDINGS[got] == want
    return got


# -- random histories ------------------------------------------------------------------------

DIGESTS = st.binary(min_size=32, max_size=32).map(bytes.hex)
AUTHORITIES = st.sampled_from(
    [
        Authority(1, "Court A", AuthorityKind.COURT, "xa", ("mailto:a@x.example",)),
        Authority(2, "Regulator B", AuthorityKind.REGULATOR, "xb"),
        Authority(3, "Operator", AuthorityKind.OPERATOR, "xa"),
    ]
)
OFFSETS = st.integers(-400, 400).map(lambda d: T0 + dt.timedelta(days=d))
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("publish"),
            AUTHORITIES,
            OFFSETS,
            st.none() | OFFSETS,
            st.booleans(),
            DIGESTS,
            st.integers(0, 9),
        ),
        st.tuples(st.just("amend"), st.integers(0, 20), DIGESTS, st.booleans()),
        st.tuples(st.just("end"), st.integers(0, 25), st.booleans()),
        st.tuples(st.just("jurisdiction"), st.sampled_from(CODES), st.integers(0, 255)),
        st.tuples(st.just("appeal"), st.integers(0, 20)),
        st.tuples(st.just("not ours"), st.sampled_from(NOT_OURS)),
    ),
    max_size=40,
)


def history(steps: list[tuple[object, ...]]) -> tuple[list[bytes], list[tuple[Order, Authority]]]:
    """Entries for ``steps`` (orders are numbered in publication order), and the orders
    published with their authorities."""
    datas: list[bytes] = []
    published: list[tuple[Order, Authority]] = []
    for n, step in enumerate(steps):
        at = T0 + dt.timedelta(hours=n)
        match step:
            case ("publish", authority, start, end, everywhere, digest, count):
                assert isinstance(authority, Authority) and isinstance(start, dt.datetime)
                expires = end if isinstance(end, dt.datetime) and end > start else None
                order = Order(
                    len(published) + 1, authority.id, f"Order {n}", "Act", f"R{n}",
                    Category.MALWARE, Action.NXDOMAIN, start.date(), start, expires,
                    all_jurisdictions=bool(everywhere),
                )  # fmt: skip
                published.append((order, authority))
                rules = RuleSet(int(str(count)), str(digest))
                datas.append(entries.encode(OrderPublished(at, order, authority, rules)))
            case ("amend", which, digest, retitle):
                if not published:
                    continue
                order, authority = published[int(str(which)) % len(published)]
                if retitle:
                    order = dataclasses.replace(order, title=order.title + " (amended)")
                amended = entries.OrderAmended(
                    at, order, authority, RuleSet(3, str(digest)), 1, 0, ""
                )
                datas.append(entries.encode(amended))
            case ("end", which, revoke):
                event = entries.OrderRevoked(at, int(str(which)), "gone") if revoke else None
                datas.append(entries.encode(event or entries.OrderExpired(at, int(str(which)))))
            case ("jurisdiction", code, octet):
                net = ipaddress.ip_network(f"10.{octet}.0.0/16")
                datas.append(
                    entries.encode(
                        entries.JurisdictionSet(at, Jurisdiction(str(code), "J", (net,)))
                    )
                )
            case ("appeal", which):
                datas.append(
                    entries.encode(entries.AppealFiled(at, n, int(str(which)), "a.example", "r"))
                )
            case ("not ours", data):
                assert isinstance(data, bytes)
                datas.append(data)
    return datas, published


@settings(max_examples=300, deadline=None)
@given(STEPS, st.data())
def test_the_fold_says_what_the_old_code_said(
    steps: list[tuple[object, ...]], data: st.DataObject
) -> None:
    datas, published = history(steps)
    rows = list(enumerate(datas))
    state = assert_same_state(rows)
    assert_same_state(rows, data.draw(st.integers(0, len(rows)), label="since"))
    assert_same_bindings(rows, [T0 + dt.timedelta(days=d) for d in (-500, -30, 0, 30, 500)])
    for order, _ in published:
        latest = state.order(order.id)
        assert latest is not None and latest.version is not None
        index, version = latest.version
        logged = version.order
        order, rules = data.draw(
            st.sampled_from(
                [
                    (dataclasses.replace(logged, log_index=index), version.rules),  # as logged
                    (logged, version.rules),  # no log index in the store
                    (dataclasses.replace(logged, log_index=len(rows)), version.rules),  # beyond
                    (
                        dataclasses.replace(logged, reference="edited", log_index=index),
                        version.rules,
                    ),
                    (
                        dataclasses.replace(logged, log_index=index),
                        RuleSet(version.rules.count + 1, version.rules.digest),
                    ),
                ]
            ),
            label="stored",
        )
        assert_same_verdict(state, rows, order, version.authority, rules)
    if published:  # an order the log never names
        order, authority = published[0]
        stranger = dataclasses.replace(order, id=999, log_index=0)
        assert_same_verdict(state, rows, stranger, authority, RuleSet(0, "0" * 64))


def test_entries_must_come_in_order() -> None:
    state = LogState()
    with pytest.raises(VerificationError, match="out of order at index 1"):
        state.extend([(1, b"{}")])


def test_entries_that_are_not_ours_are_reported_and_skipped() -> None:
    seen: list[int] = []
    state = fold(enumerate([*NOT_OURS, entries.encode(entries.OrderExpired(T0, 4))]),
                 lambda i, _exc: seen.append(i))  # fmt: skip
    assert seen == [0, 1] and state.size == 4 and state.named() == {4}


# -- the demo store ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Store:
    """The demo policy, then a week of changes: an amendment, a revocation, an expiry, a
    moved network, appeals."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    service = PolicyService(open_store(url, migrate=True))
    summary = install_demo(service, data_dir)
    first, *others = sorted(summary.orders.values())
    service.amend_order(first, add=[], remove=[], reason="nothing")  # no entry: idempotent
    service.file_appeal(first, "www.example.com", "mailto:me@x.example", "over-blocking")
    service.revoke_order(others[0], "withdrawn")
    service.update_jurisdiction("xb", add_networks=["10.77.0.0/16"])
    reader = PolicyReader(service.store)
    authority = reader.authority(reader.order(others[1]).authority_id).id
    service.add_order(
        authority, "Short order", "Act", "SHORT-1", "malware", "nxdomain", [],
        effective_from="2026-01-01", expires="2026-02-01",
    )  # fmt: skip
    service.expire_due(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    return service.store


def test_the_fold_of_the_demo_store_is_the_old_one(demo: Store) -> None:
    rows = [(e.index, e.data) for e in demo.log_entries()]
    state = assert_same_state(rows)
    for since in (1, len(rows) // 2, len(rows) - 1):
        assert_same_state(rows, since)
    assert_same_bindings(rows, [T0 + dt.timedelta(days=d) for d in (-400, 0, 15, 45, 400)])
    reader = PolicyReader(demo)
    findings = []
    for order in reader.orders():
        authority = reader.authority(order.authority_id)
        rules = RuleSet.of(reader.order_rules(order.id))
        findings.append(assert_same_verdict(state, rows, order, authority, rules))
        edited = dataclasses.replace(order, title=order.title + "!")
        assert_same_verdict(state, rows, edited, authority, rules)
    assert findings.count(None) >= 2 and Finding.ENDED in findings


def test_the_example_of_docs_ledger_runs(demo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/ledger.md, "Reading the log in code", on the demo store."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "ledger.md").read_text()
    section = doc.split("## Reading the log in code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    exec(code.group(1), {"store": demo, "now": dt.datetime(2026, 1, 15, tzinfo=dt.UTC)})
    printed = capsys.readouterr().out.splitlines()
    assert printed and all(len(line.split()) == 3 for line in printed)
