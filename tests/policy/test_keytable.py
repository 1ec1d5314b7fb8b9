"""The key table a whole compile the gateway waits for keeps its names in: the same
answers as marisa's trie for every question the snapshot asks, the same verdicts in a
snapshot (fresh and after save/load), and damaged images refused."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import marisa_trie
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matcher_builders import JURISDICTIONS
from test_snapshot_property import check, orders, queries

from clearwall.errors import SnapshotError
from clearwall.policy import _keytable
from clearwall.policy.compiler import MARISA, name_key
from clearwall.policy.keytable import KIND, KeyTableNames
from clearwall.policy.model import CompiledOrder
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.policy.snapshotfile import KEYTABLE_FILE, saved_meta

labels = st.sampled_from(["a", "b", "c", "ü", "xn--bcher-kva", "l" * 60])
names = st.lists(labels, min_size=1, max_size=4).map(".".join)


def blob(keys: list[str]) -> bytes:
    return "".join(k + "\n" for k in keys).encode()


@settings(max_examples=300, deadline=None)
@given(listed=st.lists(names, max_size=30), asked=st.lists(names, min_size=1, max_size=30))
def test_the_table_answers_as_the_trie(listed: list[str], asked: list[str]) -> None:
    keys = [name_key(n) for n in listed]  # duplicates included: kept once
    table = KeyTableNames.build(blob(keys)) if keys else None
    trie = marisa_trie.Trie(keys)
    if table is None:
        return
    assert len(table) == len(trie) == len(set(keys))
    ids = {k: table.key_id(k) for k in set(keys)}
    assert sorted(ids.values()) == list(range(len(set(keys))))  # one id per key
    assert table.ids(blob(keys)) == [ids[k] for k in keys]
    assert [k for k, _ in table.iteritems()] == sorted(set(keys))
    for name in asked + listed:
        key = name_key(name)
        assert table.prefixes(key) == trie.prefixes(key), name
        assert (key in table) == (key in trie)
        if key not in trie:
            with pytest.raises(KeyError):
                table.key_id(key)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=orders(), queries=queries)
def test_a_fast_snapshot_gives_the_reference_verdicts(
    policy: list[CompiledOrder], queries: list
) -> None:
    fast = PolicySnapshot.compile(policy, JURISDICTIONS, keytable_from=0)
    check(fast, policy, queries)
    with tempfile.TemporaryDirectory() as tmp:
        fast.save(Path(tmp) / "snap")
        loaded = PolicySnapshot.load(Path(tmp) / "snap")
        check(loaded, policy, queries)
        compact = PolicySnapshot.compile(policy, JURISDICTIONS)
        for jurisdiction in ("de", "fr", "zz"):
            assert sorted(map(repr, loaded.rules_for(jurisdiction))) == sorted(
                map(repr, compact.rules_for(jurisdiction))
            )


def test_a_saved_fast_snapshot_says_how_it_keeps_its_names(tmp_path: Path) -> None:
    from matcher_builders import order

    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec

    built = order(1)
    rules = (RuleSpec(RuleKind.SUBTREE, "example.com"),)
    policy = [CompiledOrder(built.order, built.authority, rules)]
    PolicySnapshot.compile(policy, JURISDICTIONS, keytable_from=0).save(tmp_path / "fast")
    PolicySnapshot.compile(policy, JURISDICTIONS).save(tmp_path / "compact")
    assert saved_meta(tmp_path / "fast")["names"] == KIND
    assert saved_meta(tmp_path / "compact")["names"] == MARISA
    assert (tmp_path / "fast" / KEYTABLE_FILE).is_file()
    # A damaged table is refused at load (the snapshot is compiled again), never read.
    (tmp_path / "fast" / KEYTABLE_FILE).write_bytes(b"CWKEYTB1" + bytes(100))
    with pytest.raises(SnapshotError, match="key table image"):
        PolicySnapshot.load(tmp_path / "fast")


@pytest.mark.parametrize(
    "image",
    [b"", b"NOTMAGIC" + bytes(56), _keytable.build(b"moc.\n", bytes(16))[:-1]],
    ids=["empty", "magic", "truncated"],
)
def test_a_damaged_image_is_refused(image: bytes) -> None:
    with pytest.raises(ValueError, match="key table image"):
        _keytable.KeyTable(image)


def test_bad_build_input_is_refused() -> None:
    with pytest.raises(ValueError, match="newline"):
        _keytable.build(b"moc.", bytes(16))
    with pytest.raises(ValueError, match="16 bytes"):
        _keytable.build(b"moc.\n", b"short")


def test_tables_of_the_same_keys_hash_differently_but_answer_alike() -> None:
    keys = blob([name_key(f"n{i}.example") for i in range(2000)])
    one, two = (_keytable.KeyTable(_keytable.build(keys, os.urandom(16))) for _ in range(2))
    assert one.keys() == two.keys()  # ids follow the input, not the random hash key
    assert all(one.key_id(k) == two.key_id(k) for k in keys.decode().split())
