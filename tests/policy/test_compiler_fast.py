"""The compiler's fast paths against their references: ``group_keys`` (one rule code for
every key: no key looked up) against ``group_keys_general``, whole snapshots of
single-code policies against the same policy compiled through the general path, and
``_add_rows`` (names turned into keys as one string) against ``_add_rows_reference``."""

from __future__ import annotations

from array import array
from collections.abc import Callable

import marisa_trie
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matcher_builders import JURISDICTIONS, order

from clearwall.errors import SnapshotError
from clearwall.model import Action, RuleKind
from clearwall.policy import compiler
from clearwall.policy.compiler import (
    _iter_blob,
    encode_rule,
    group_keys,
    group_keys_general,
    name_key,
)
from clearwall.policy.model import RuleRows
from clearwall.policy.snapshot import PolicySnapshot

LABELS = st.text(alphabet="abcx-", min_size=1, max_size=4)
NAMES = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
CODES = st.sampled_from(
    [
        encode_rule(0, RuleKind.SUBTREE, None),
        encode_rule(0, RuleKind.EXACT, None),
        encode_rule(1, RuleKind.SUBTREE, Action.NXDOMAIN),
        encode_rule(7, RuleKind.EXACT, Action.REFUSED),
    ]
)


def _blob(names: list[str]) -> bytearray:
    return bytearray(b"".join(name_key(n).encode() + b"\n" for n in names))


def _same(blob: bytearray, codes: array[int]) -> None:
    trie = marisa_trie.Trie(_iter_blob(blob)) if blob else marisa_trie.Trie()
    fast_groups, fast = group_keys(trie, blob, codes)
    ref_groups, ref = group_keys_general(trie, blob, codes)
    assert fast == ref
    assert fast_groups.typecode == ref_groups.typecode
    assert fast_groups.tolist() == ref_groups.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, CODES), max_size=40), st.booleans())
def test_group_keys_equals_the_general_path(rules: list[tuple[str, int]], one: bool) -> None:
    """Repeated names, one code or several: the fast path's groups are the reference's."""
    if one and rules:
        rules = [(name, rules[0][1]) for name, _code in rules]
    _same(_blob([n for n, _c in rules]), array("Q", [c for _n, c in rules]))


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["a.example"],
        ["a.example", "a.example", "b.example"],
        [f"n{i}.example" for i in range(300)],  # more than one byte of keys
    ],
)
def test_group_keys_single_code_cases(names: list[str]) -> None:
    """The edge cases: no key, one key, a name listed twice, many keys."""
    code = encode_rule(3, RuleKind.SUBTREE, None)
    _same(_blob(names), array("Q", [code] * len(names)))


@pytest.mark.parametrize("names", [["a.example", "b.example", "a.example"], ["x.test"]])
def test_single_code_snapshot_equals_the_general_compile(
    names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole snapshot of a one-code policy has the content hash the general path gives."""
    orders = [order(1, "de", [f"subtree {n}" for n in names])]
    fast = PolicySnapshot.compile(orders, JURISDICTIONS)
    monkeypatch.setattr(compiler, "group_keys", group_keys_general)
    slow = PolicySnapshot.compile(orders, JURISDICTIONS)
    assert fast.version == slow.version


ROW_NAMES = st.one_of(
    NAMES,
    st.sampled_from(["", "a.", "a\nb", "\n", ".", "ä.example", "b.example."]),
    st.text(max_size=6),
)
ROW_KINDS = st.sampled_from(["subtree", "exact", "wildcard", "allow-exact"])
ROW_ACTIONS = st.sampled_from([None, "nxdomain", "refused"])


def _outcome(add: Callable[..., int], rows: list[tuple[str, str, str | None]]) -> object:
    blob, codes, ips = bytearray(), array("Q"), list[tuple[str, int]]()
    try:
        count = add(RuleRows(rows), 2, 9, blob, codes, ips)
    except SnapshotError as exc:
        return str(exc)
    return count, bytes(blob), codes.tolist(), ips


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(ROW_KINDS, ROW_NAMES, ROW_ACTIONS), max_size=12), st.booleans())
def test_add_rows_equals_the_reference(
    rows: list[tuple[str, str, str | None]], one_code: bool
) -> None:
    """Keys, codes and the error (naming the first bad name) are the reference's, with
    one rule code or several, for canonical names and every kind of bad one."""
    if one_code:
        rows = [("subtree", name, None) for _kind, name, _action in rows]
    assert _outcome(compiler._add_rows, rows) == _outcome(compiler._add_rows_reference, rows)


@pytest.mark.parametrize(
    "rows",
    [
        [("subtree", "a.example", None), ("response-ip", "192.0.2.0/24", None)],
        [("allow-response-ip", "2001:db8::/32", "refused")],
        [("response-ip", "not a cidr", None)],
    ],
)
def test_add_rows_with_cidr_rules_is_the_reference(rows: list[tuple[str, str, str | None]]) -> None:
    """Orders with response-IP rules take the reference path itself."""
    assert _outcome(compiler._add_rows, rows) == _outcome(compiler._add_rows_reference, rows)
