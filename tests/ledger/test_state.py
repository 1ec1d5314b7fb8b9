"""The log's policy state read from rows, and snapshot provenance checked against it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from clearwall.ledger import entries
from clearwall.ledger.entries import RuleSet
from clearwall.ledger.merkle import merkle_root
from clearwall.ledger.state import Provenance, file_digests, mismatch, state_and_root
from clearwall.model import Action, AuthorityKind, Category
from clearwall.policy.model import Authority, Order

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
AUTHORITY = Authority(1, "Court", AuthorityKind.COURT, "xa")


def _order(order_id: int) -> Order:
    return Order(
        order_id, 1, f"Order {order_id}", "Act", f"R{order_id}", Category.MALWARE,
        Action.NXDOMAIN, T0.date(), T0, None,
    )  # fmt: skip


def _entry(kind: str, order: int, digest: str = "ab" * 32, count: int = 3) -> bytes:
    rules = RuleSet(count, digest)
    event: entries.Event
    if kind == "order-published":
        event = entries.OrderPublished(T0, _order(order), AUTHORITY, rules)
    elif kind == "order-amended":
        event = entries.OrderAmended(T0, _order(order), AUTHORITY, rules, 1, 0, "more")
    else:
        event = entries.OrderRevoked(T0, order, "gone")
    return entries.encode(event)


ROWS = [
    _entry("order-published", 1),
    _entry("order-published", 2),
    _entry("order-amended", 1, "cd" * 32, 4),
    _entry("order-revoked", 2),
    b"not json at all",
]


def test_state_and_root_read_what_the_entries_commit() -> None:
    state, root = state_and_root(enumerate(ROWS), len(ROWS))
    assert root == merkle_root(ROWS).hex()  # the leaves hashed from the data itself
    assert state.orders_in_force() == {1} and state.orders[2].ended == 3
    version = state.orders[1].version
    assert version is not None and version[0] == 2 and version[1].rules.count == 4


@pytest.mark.parametrize(
    "rows, size",
    [
        (list(enumerate(ROWS))[:-1], len(ROWS)),  # fewer than the size
        ([(0, ROWS[0]), (2, ROWS[2])], 3),  # a gap
    ],
)
def test_a_missing_entry_is_an_error(rows: list[tuple[int, bytes]], size: int) -> None:
    with pytest.raises(ValueError):
        state_and_root(rows, size)


def _provenance(directory: Path, **changes: object) -> Provenance:
    _state, root = state_and_root(enumerate(ROWS), len(ROWS))
    fields: dict[str, object] = {
        "size": len(ROWS),
        "root": root,
        "base_url": "",
        "orders": {1: (2, "cd" * 32, 4)},
        "expired": frozenset(),
        "withheld": frozenset(),
        "jurisdictions": {},
        "files": file_digests(directory),
    }
    fields.update(changes)
    return Provenance(**fields)  # type: ignore[arg-type]


def test_provenance_round_trips(tmp_path: Path) -> None:
    (tmp_path / "names.marisa").write_bytes(b"trie")
    provenance = _provenance(tmp_path, expired=frozenset({7}), jurisdictions={"xa": 0})
    assert Provenance.from_json(provenance.to_json()) == provenance


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({}, None),
        ({"root": "00" * 32}, "not those it was compiled from"),
        ({"base_url": "http://x"}, "another public URL"),
        ({"withheld": frozenset({3})}, "the store disagreed"),
        ({"orders": {}}, "not those the log has in force"),
        ({"orders": {}, "expired": frozenset({1})}, None),  # past its sunset: accounted for
        ({"orders": {1: (0, "cd" * 32, 4)}}, "not the one entry 2 publishes"),
        ({"orders": {1: (2, "ab" * 32, 4)}}, "not the one entry 2 publishes"),
        ({"jurisdictions": {"xa": 0}}, "its jurisdictions"),
        ({"files": {}}, "its files"),
        ({"files": {"names.marisa": "00" * 32}}, "its files"),
    ],
)
def test_mismatch_names_what_no_longer_holds(
    tmp_path: Path, changes: dict[str, object], reason: str | None
) -> None:
    (tmp_path / "names.marisa").write_bytes(b"trie")
    state, root = state_and_root(enumerate(ROWS), len(ROWS))
    why = mismatch(_provenance(tmp_path, **changes), state, root, "", tmp_path)
    assert why == reason if reason is None else reason in (why or "")
