"""C2SP tlog-witness add-checkpoint, every status the spec names, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from clearwall.ledger import proofs
from clearwall.ledger.checkpoint import Checkpoint
from clearwall.ledger.cosignature import check_cosignatures, generate_cosigner
from clearwall.ledger.merkle import MemoryTree
from clearwall.ledger.note import split_note
from clearwall.ledger.signing import generate_signer
from clearwall.witness.protocol import SIZE_CONTENT_TYPE, Witness, add_log_key
from clearwall.witness.store import WitnessStore

ORIGIN = "clearwall.example/log"
LOG = generate_signer(ORIGIN, b"\x09" * 32)
STRANGER = generate_signer(ORIGIN, b"\x0a" * 32)  # same name, another key
COSIGNER = generate_cosigner("w1.example/witness", b"\x01" * 32)
NOW = 1_790_000_000
TREE = MemoryTree.from_entries(f"entry {i}".encode() for i in range(12))
FORK = MemoryTree.from_entries(f"entry {i}".encode() if i < 4 else b"forked" for i in range(12))


def cp(size: int, tree: MemoryTree = TREE) -> Checkpoint:
    return Checkpoint(ORIGIN, size, tree.root(size))


def body(old: int, checkpoint: Checkpoint, proof: list[bytes] | None = None, signer=LOG) -> bytes:  # type: ignore[no-untyped-def]
    if proof is None:
        proof = proofs.consistency_proof(TREE, old, checkpoint.size)
    lines = "".join(base64.b64encode(h).decode() + "\n" for h in proof)
    return f"old {old}\n{lines}\n{checkpoint.sign(signer)}".encode()


@dataclass
class Setup:
    witness: Witness
    store: WitnessStore


@pytest.fixture
def setup(store_url: str) -> Iterator[Setup]:
    """A witness of ORIGIN that has cosigned size 5."""
    store = WitnessStore(store_url)
    add_log_key(store, ORIGIN, LOG.verifier.vkey)
    witness = Witness(store, COSIGNER, lambda: NOW)
    assert witness.add_checkpoint(body(0, cp(5))).status == 200
    yield Setup(witness, store)
    store.dispose()


def flip(note: bytes) -> bytes:
    """The same request with the log signature's last byte changed."""
    head, _, sig = note.rpartition(b" ")
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    return head + b" " + base64.b64encode(bytes(raw)) + b"\n"


CASES: list[tuple[str, Callable[[], bytes], int, str, str | None]] = [
    ("extends", lambda: body(5, cp(9)), 200, "", None),
    ("same checkpoint again", lambda: body(5, cp(5)), 200, "", None),
    ("stale old size", lambda: body(0, cp(9), []), 409, "5\n", None),
    ("old size ahead", lambda: body(7, cp(9)), 409, "5\n", None),
    (
        "fork at the same size, from the old size",
        lambda: body(3, cp(5, FORK), proofs.consistency_proof(FORK, 3, 5)),
        409,
        "5\n",
        "fork",
    ),
    (
        "fork at the same size, from 5",
        lambda: body(5, cp(5, FORK), []),
        422,
        "different root",
        "root",
    ),
    ("rollback", lambda: body(0, cp(2), []), 409, "5\n", "rollback"),
    (
        "proof from another tree",
        lambda: body(5, cp(9, FORK), proofs.consistency_proof(FORK, 5, 9)),
        422,
        "consistency proof",
        "consistency proof",
    ),
    ("old above size", lambda: body(9, cp(7), []), 400, "above size", None),
    (
        "unknown origin",
        lambda: body(0, Checkpoint("other.example/log", 1, TREE.root(1)), []),
        404,
        "unknown log",
        None,
    ),
    (
        "signed by another key",
        lambda: body(5, cp(9), signer=STRANGER),
        403,
        "no signature by a known key",
        None,
    ),
    ("altered signature", lambda: flip(body(5, cp(9))), 403, "invalid signature", None),
    ("no empty line", lambda: b"old 5\n" + cp(9).sign(LOG).encode(), 400, "proof line 1", None),
    ("no empty line at all", lambda: b"old 5\n", 400, "no empty line", None),
    (
        "leading zero",
        lambda: body(5, cp(9)).replace(b"old 5", b"old 05", 1),
        400,
        "old <size>",
        None,
    ),
    ("64 proof lines", lambda: body(5, cp(9), [TREE.root(1)] * 64), 400, "at most 63", None),
    (
        "proof not base64",
        lambda: b"old 5\n!!!\n\n" + cp(9).sign(LOG).encode(),
        400,
        "not base64",
        None,
    ),
    (
        "short proof hash",
        lambda: b"old 5\nAAAA\n\n" + cp(9).sign(LOG).encode(),
        400,
        "3 bytes",
        None,
    ),
    (
        "not a checkpoint",
        lambda: b"old 5\n\nhello\n\n\xe2\x80\x94 x AAAAAAA=\n",
        400,
        "malformed",
        None,
    ),
    ("not UTF-8", lambda: b"old 5\n\n\xff\n", 400, "UTF-8", None),
]


@pytest.mark.parametrize(
    ("request_body", "status", "answer", "evidence"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_add_checkpoint(
    setup: Setup,
    request_body: Callable[[], bytes],
    status: int,
    answer: str,
    evidence: str | None,
) -> None:
    sent = request_body()
    got = setup.witness.add_checkpoint(sent)
    assert got.status == status, got.body
    assert answer in got.body
    kept = setup.store.evidence()
    if evidence is None:
        assert kept == []
    else:
        (e,) = kept
        assert evidence in e.reason and e.status == status
        assert e.request == sent.decode() and e.stored_size == 5
    held = setup.store.get_log(ORIGIN)
    assert held is not None
    if status == 409:
        assert got.content_type == SIZE_CONTENT_TYPE
    if status != 200:
        assert held.size == 5 and held.root == TREE.root(5)  # nothing changed
        return
    # 200: one cosignature line by the witness, over exactly the checkpoint sent.
    checkpoint = split_note(sent.decode().split("\n\n", 1)[1])[0]
    note = checkpoint + "\n" + got.body
    _, sigs = split_note(note)
    assert [s.name for s in sigs] == [COSIGNER.name]
    assert COSIGNER.verifier.verify(checkpoint.encode(), sigs[0].signature)
    assert int.from_bytes(sigs[0].signature[:8], "big") == NOW
    size = int(checkpoint.split("\n")[1])
    assert held.size == size
    # The monitoring endpoint serves it with the log's signature and the cosignature.
    latest = setup.witness.latest(hashlib.sha256(ORIGIN.encode()).hexdigest())
    assert latest.status == 200
    report = check_cosignatures(latest.body, LOG.verifier, [COSIGNER.verifier], 1)
    assert report.ok and report.checkpoint.size == size


def test_empty_tree_rules(store_url: str) -> None:
    store = WitnessStore(store_url)
    add_log_key(store, ORIGIN, LOG.verifier.vkey)
    witness = Witness(store, COSIGNER, lambda: NOW)
    # Never cosigned: the monitoring endpoint has nothing yet.
    assert witness.latest(hashlib.sha256(ORIGIN.encode()).hexdigest()).status == 404
    bad_empty = Checkpoint(ORIGIN, 0, TREE.root(1))
    assert witness.add_checkpoint(body(0, bad_empty, [])).status == 422
    assert witness.add_checkpoint(body(0, cp(3), [TREE.root(1)])).status == 422
    assert witness.add_checkpoint(body(0, Checkpoint(ORIGIN, 0, TREE.root(0)), [])).status == 200
    assert witness.add_checkpoint(body(0, cp(3), [])).status == 200
    store.dispose()


def test_concurrent_requests_never_roll_back(setup: Setup) -> None:
    """Two requests from the same old size: one wins, the other gets 409 (tlog-witness race)."""
    results: dict[int, int] = {}
    barrier = threading.Barrier(4)

    def send(size: int) -> None:
        barrier.wait()
        results[size] = setup.witness.add_checkpoint(body(5, cp(size))).status

    threads = [threading.Thread(target=send, args=(n,)) for n in (6, 7, 8, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, s in results.items() if s == 200]
    assert len(winners) == 1 and sorted(results.values()) == [200, 409, 409, 409]
    held = setup.store.get_log(ORIGIN)
    assert held is not None and held.size == winners[0]
