"""The tile-writing log over the in-memory store twin: sync, recovery, bad tiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.errors import LedgerError, TileError, VerificationError
from clearwall.ledger import proofs, tiles
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.memorystore import MemoryLogStore
from clearwall.ledger.merkle import MemoryTree
from clearwall.ledger.signing import generate_signer

ORIGIN = "clearwall.example/log"


def make_log(tmp_path: Path, n: int = 0) -> tuple[MemoryLogStore, TransparencyLog]:
    store = MemoryLogStore()
    for i in range(n):
        store.append(b'{"i":%d}' % i)
    cfg = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "log", origin=ORIGIN)
    return store, TransparencyLog(store, cfg, generate_signer(ORIGIN, b"\x07" * 32))


@pytest.mark.parametrize("steps", [[1], [5, 255, 256, 257], [300, 65536 + 70], [70000]])
def test_incremental_sync_matches_full_tree(tmp_path: Path, steps: list[int]) -> None:
    store, log = make_log(tmp_path)
    for target in steps:
        while store.log_size() < target:
            store.append(b'{"i":%d}' % store.log_size())
        result = log.sync()
        assert result.new_size == target
        tree = MemoryTree.from_entries(e.data for e in store.entries)
        cp = open_checkpoint(log.checkpoint_note(), log.verifier)
        assert (cp.size, cp.root) == (target, tree.root())
        reader = log.reader(target)
        assert proofs.tree_hash(reader, target) == tree.root()
        for idx in {0, target // 2, target - 1}:
            assert proofs.inclusion_proof(reader, idx, target) == proofs.inclusion_proof(
                tree, idx, target
            )
            assert log.entry(idx, target) == store.entries[idx].data
    assert [c.tree_size for c in store.checkpoints()] == sorted(set(steps))


def test_empty_log_has_a_checkpoint(tmp_path: Path) -> None:
    _, log = make_log(tmp_path)
    log.sync()
    cp = log.published()
    assert cp is not None and cp.size == 0


def test_crash_before_tiles_is_recovered(tmp_path: Path) -> None:
    store, log = make_log(tmp_path, 300)
    log.sync()
    for i in range(300, 600):  # committed, but the process died before sync
        store.append(b'{"i":%d}' % i)
    assert log.published().size == 300  # type: ignore[union-attr]
    log.sync()  # what start-up does
    assert log.published().size == 600  # type: ignore[union-attr]
    assert (
        log.published().root
        == MemoryTree.from_entries(  # type: ignore[union-attr]
            e.data for e in store.entries
        ).root()
    )


def test_corrupt_or_deleted_tiles_are_rederived(tmp_path: Path) -> None:
    store, log = make_log(tmp_path, 1000)
    log.sync()
    part = tmp_path / "log" / tiles.tile_path(0, 3, 1000 - 768)
    part.write_bytes(part.read_bytes()[:-1])  # truncated partial tile
    store.append(b"x")
    log.sync()
    assert (
        proofs.tree_hash(log.reader(1001), 1001)
        == MemoryTree.from_entries(e.data for e in store.entries).root()
    )
    (tmp_path / "log" / "checkpoint").write_text("garbage")
    log.sync()
    assert log.published().size == 1001  # type: ignore[union-attr]


def test_truncated_tile_is_a_clear_error(tmp_path: Path) -> None:
    _, log = make_log(tmp_path, 10)
    log.sync()
    path = tmp_path / "log" / tiles.tile_path(0, 0, 10)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(TileError, match="bytes, expected"):
        proofs.tree_hash(log.reader(10), 10)
    path.unlink()
    with pytest.raises(TileError, match="missing"):
        proofs.tree_hash(log.reader(10), 10)


def test_store_behind_checkpoint_is_refused(tmp_path: Path) -> None:
    store, log = make_log(tmp_path, 10)
    log.sync()
    del store.entries[5:]
    with pytest.raises(LedgerError, match="lost or rolled back"):
        log.sync()


def _lose_tail(store: MemoryLogStore) -> None:
    del store.entries[5:]  # entries lost after their checkpoint was published


def _forget_checkpoints(store: MemoryLogStore) -> None:
    del store.entries[5:]
    store.stored = {k: v for k, v in store.stored.items() if k <= 5}  # an older backup


def _another_store(store: MemoryLogStore) -> None:
    store.entries[:] = []
    store.stored.clear()
    for i in range(3):
        store.append(b'{"other":%d}' % i)
    store.add_checkpoint(0, b"", "")  # it published, but not these files


def _fresh_store(store: MemoryLogStore) -> None:
    store.entries[:] = []
    store.stored.clear()


def _empty_with_history(store: MemoryLogStore) -> None:
    store.entries[:] = []
    store.stored = {0: store.stored[0]}


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_lose_tail, "a checkpoint of this store: committed entries were lost or rolled back"),
        (_forget_checkpoints, "which extends this store's entries: committed entries were lost"),
        (_another_store, "whose entries differ from this store's: those files belong to another"),
        (_fresh_store, "this store never published a checkpoint: those files belong to another"),
        (_empty_with_history, "either committed entries were lost or rolled back"),
    ],
)
def test_a_store_behind_its_public_log_is_told_whose_files_are_whose(
    tmp_path: Path, damage: object, says: str
) -> None:
    store, log = make_log(tmp_path, 5)
    log.sync()
    log.sync()  # size 5 recorded
    for i in range(5, 10):
        store.append(b'{"i":%d}' % i)
    log.sync()
    store.stored[0] = type(store.stored[5])(0, b"", "")  # as init records the empty log
    damage(store)  # type: ignore[operator]
    with pytest.raises(LedgerError) as info:
        log.sync()
    assert says in str(info.value)
    assert f"public log in {tmp_path / 'log'} (key {tmp_path / 'k'})" in str(info.value)


def test_edited_entry_is_reported_with_its_index(tmp_path: Path) -> None:
    store, log = make_log(tmp_path, 10)
    e = store.entries[7]
    store.entries[7] = type(e)(7, b"forged", e.leaf_hash)
    with pytest.raises(VerificationError, match="entry 7"):
        log.sync()


def test_wrong_key_is_rejected(tmp_path: Path) -> None:
    _, log = make_log(tmp_path, 3)
    log.sync()
    other = generate_signer(ORIGIN, b"\x08" * 32).verifier
    with pytest.raises(VerificationError):
        open_checkpoint(log.checkpoint_note(), other)


def test_a_key_named_for_another_log_never_signs(tmp_path: Path) -> None:
    """A key file whose name is not the configured origin is refused each time it is
    needed, not only the first: a second publish must not sign a checkpoint of one
    origin with a key named for another."""
    from clearwall.ledger.signing import create_key_file

    create_key_file(tmp_path / "k", ORIGIN)
    store = MemoryLogStore()
    store.append(b'{"i":0}')
    cfg = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "log", origin="other/log")
    log = TransparencyLog(store, cfg)
    for _ in range(2):
        with pytest.raises(LedgerError, match="ledger key is named"):
            log.publish()
    assert not (tmp_path / "log" / "checkpoint").exists()


def test_proofs_at_sizes_never_checkpointed(tmp_path: Path) -> None:
    """Hashes never change once written: a wider tile serves a narrower, older request."""
    store, log = make_log(tmp_path, 300)
    log.sync()
    for i in range(300, 1000):
        store.append(b'{"i":%d}' % i)
    log.sync()
    tree = MemoryTree.from_entries(e.data for e in store.entries)
    for size in (257, 400, 513, 999):
        reader = log.reader(size)
        assert proofs.tree_hash(reader, size) == tree.root(size)
        p = proofs.consistency_proof(log.reader(1000), size, 1000)
        proofs.verify_consistency(size, 1000, tree.root(size), tree.root(), p)
        assert log.entry(size - 1, size) == store.entries[size - 1].data


@pytest.mark.parametrize(
    ("lines", "published"),
    [
        ([b"exact a.example", b"subtree b.example"], True),  # the logged version: published
        ([b"subtree b.example"], False),  # changed since (a later entry will carry it)
        (None, False),  # no such order in the store
    ],
)
def test_the_rule_file_of_a_logged_order_version_comes_from_the_store(
    tmp_path: Path, lines: list[bytes] | None, published: bool
) -> None:
    """Sync asks the store (``LogStore.order_rule_lines``) for the rules an entry commits,
    and publishes them only when they hash to the logged digest."""
    import datetime as dt

    from clearwall.ledger import entries
    from clearwall.ledger.merkle import merkle_root
    from clearwall.model import Action, AuthorityKind, Category
    from clearwall.policy.model import Authority, Order

    logged = [b"exact a.example", b"subtree b.example"]
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    authority = Authority(1, "Court", AuthorityKind.COURT, "xa")
    order = Order(5, 1, "T", "L", "R", Category.MALWARE, Action.NXDOMAIN, at.date(), at)
    rules = entries.RuleSet(2, merkle_root(logged).hex())
    store, log = make_log(tmp_path, 3)
    store.append(entries.encode(entries.OrderPublished(at, order, authority, rules)))
    if lines is not None:
        store.rule_lines[5] = lines
    log.sync()
    path = log.rule_file(5, rules.digest)
    assert path.is_file() is published
    if published:
        assert path.read_bytes().splitlines() == logged
