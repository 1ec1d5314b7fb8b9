"""One signer, many nodes: a node without the ledger key publishes what the signer signed,
byte for byte, and never past it (``TransparencyLog.follow``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.errors import ConfigError, LedgerError, VerificationError
from clearwall.ledger.checkpoint import Checkpoint
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.memorystore import MemoryLogStore
from clearwall.ledger.note import split_note, with_signatures
from clearwall.ledger.published import published_checkpoint
from clearwall.ledger.signing import create_key_file, generate_signer

ORIGIN = "clearwall.example/log"


def _files(root: Path) -> dict[str, bytes]:
    """Every published file under ``root`` (not the lock or temporary files)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock" and ".tmp" not in p.parts
    }


def _nodes(tmp_path: Path) -> tuple[MemoryLogStore, TransparencyLog, TransparencyLog]:
    """A store, its signer's log and a follower's (its own tiles directory, no key)."""
    store = MemoryLogStore()
    key = tmp_path / "signer" / "ledger.key"
    vkey = create_key_file(key, ORIGIN)
    signer = TransparencyLog(store, LedgerConfig(key, tmp_path / "signer" / "log", ORIGIN))
    follower_cfg = LedgerConfig(
        tmp_path / "f" / "no.key", tmp_path / "f" / "log", ORIGIN, vkey=vkey
    )
    return store, signer, TransparencyLog(store, follower_cfg)


@pytest.mark.parametrize("sizes", [[1], [3, 256, 300], [257, 700]])
def test_a_follower_publishes_the_signers_files_byte_for_byte(
    tmp_path: Path, sizes: list[int]
) -> None:
    store, signer, follower = _nodes(tmp_path)
    for size in sizes:
        while store.log_size() < size:
            store.append(b'{"i":%d}' % store.log_size())
        signer.sync()
        assert follower.sync().new_size == size
        assert _files(follower.dir.root) == _files(signer.dir.root)
        assert not follower.config.key_path().exists()  # it never made or needed a key
    cp = published_checkpoint(follower.config)
    assert cp is not None and cp.size == sizes[-1]


def test_a_follower_waits_for_the_signer(tmp_path: Path) -> None:
    store, signer, follower = _nodes(tmp_path)
    with pytest.raises(LedgerError, match="signer has not published"):
        follower.publish()
    store.append(b'{"i":0}')
    signer.sync()
    for i in range(1, 4):  # committed but not signed yet
        store.append(b'{"i":%d}' % i)
    assert follower.publish() == 1  # never past what the signer signed
    signer.sync()
    assert follower.publish() == 4


def test_a_follower_refuses_entries_that_are_not_what_was_signed(tmp_path: Path) -> None:
    store, signer, follower = _nodes(tmp_path)
    for i in range(3):
        store.append(b'{"i":%d}' % i)
    signer.sync()
    store.entries[1] = type(store.entries[1])(1, b'{"i":"x"}', store.entries[1].leaf_hash)
    with pytest.raises(VerificationError):
        follower.sync()
    assert follower.dir.read_checkpoint() is None  # nothing published


def test_a_checkpoint_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    store, _signer, follower = _nodes(tmp_path)
    store.append(b'{"i":0}')
    other = TransparencyLog(
        store, LedgerConfig(tmp_path / "o.key", tmp_path / "o", ORIGIN), generate_signer(ORIGIN)
    )
    other.sync()  # records its checkpoint in the shared store
    with pytest.raises(VerificationError):
        follower.sync()


def test_a_key_that_is_not_the_named_vkey_is_refused(tmp_path: Path) -> None:
    store, signer, _follower = _nodes(tmp_path)
    wrong = LedgerConfig(
        signer.config.key_file, tmp_path / "w", ORIGIN, vkey=generate_signer(ORIGIN).verifier.vkey
    )
    store.append(b'{"i":0}')
    with pytest.raises(LedgerError, match="one log has one signer"):
        TransparencyLog(store, wrong).sync()


@pytest.mark.parametrize(
    ("vkey", "why"),
    [("nonsense", "vkey"), (generate_signer("other.example/log").verifier.vkey, "origin")],
)
def test_a_bad_vkey_is_a_config_error(vkey: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        LedgerConfig(origin=ORIGIN, vkey=vkey)


def test_a_follower_takes_the_late_cosignatures_the_signer_recorded(tmp_path: Path) -> None:
    store, signer, follower = _nodes(tmp_path)
    store.append(b'{"i":0}')
    signer.sync()
    follower.sync()
    cp = signer.published()
    assert cp is not None
    witness = generate_signer("w.example/witness")
    late = split_note(Checkpoint(ORIGIN, cp.size, cp.root).sign(witness))[1][0]
    cosigned = with_signatures(signer.checkpoint_note(), [late])
    store.replace_checkpoint_note(cp.size, cp.root, cosigned)  # what a witness retry does
    follower.sync()
    assert follower.checkpoint_note() == cosigned
