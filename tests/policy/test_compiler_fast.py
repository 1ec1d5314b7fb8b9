"""The compiler's fast paths against their references: ``group_keys`` (one rule code for
every key: no key looked up) against ``group_keys_general``, and whole snapshots of
single-code policies against the same policy compiled through the general path."""

from __future__ import annotations

from array import array

import marisa_trie
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matcher_builders import JURISDICTIONS, order

from clearwall.model import Action, RuleKind
from clearwall.policy import compiler
from clearwall.policy.compiler import (
    _iter_blob,
    encode_rule,
    group_keys,
    group_keys_general,
    name_key,
)
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
