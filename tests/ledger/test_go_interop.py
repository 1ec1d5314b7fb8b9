"""Interoperability: Go's golang.org/x/mod/sumdb/{note,tlog} verify our log and proofs.

The Go verifier (tests/ledger/go/clearwall-verify) is built offline at test time from
Debian's golang-go and golang-golang-x-mod-dev (GOPATH mode, GOPROXY=off, nothing is
downloaded). It authenticates every tile against our signed checkpoint, recomputes every
leaf from the entry bundles and checks the inclusion and consistency proofs we produce.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.ledger import proofs
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.memorystore import MemoryLogStore
from clearwall.ledger.signing import generate_signer

GO_SRC = Path(__file__).parent / "go" / "clearwall-verify"
GOPATH = Path("/usr/share/gocode")
ORIGIN = "clearwall.example/log"


@pytest.fixture(scope="module")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        pytest.skip(
            "golang-go / golang-golang-x-mod-dev not installed (scripts/install-system-deps.sh)"
        )
    out = tmp_path_factory.mktemp("go") / "clearwall-verify"
    env = {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out.parent / "cache"),
    }
    subprocess.run([go, "build", "-o", str(out), "."], cwd=GO_SRC, env=env, check=True)
    return out


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def build_log(tmp_path: Path, sizes: list[int]) -> tuple[TransparencyLog, MemoryLogStore, dict]:
    store = MemoryLogStore()
    cfg = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "log", origin=ORIGIN)
    log = TransparencyLog(store, cfg, generate_signer(ORIGIN, b"\x09" * 32))
    roots = {}
    for size in sizes:
        while store.log_size() < size:
            i = store.log_size()
            store.append(json.dumps({"type": "test", "i": i, "pad": "x" * (i % 50)}).encode())
        log.sync()
        roots[size] = log.published().root  # type: ignore[union-attr]
    return log, store, roots


@pytest.mark.parametrize("sizes", [[1, 2, 3, 7, 8], [255, 256, 257, 600], [1000, 70000]])
def test_go_verifies_our_log(go_verifier: Path, tmp_path: Path, sizes: list[int]) -> None:
    log, store, roots = build_log(tmp_path, sizes)
    n = sizes[-1]
    reader = log.reader(n)
    inclusion = [
        {
            "index": i,
            "size": n,
            "root": b64(roots[n]),
            "leaf_hash": b64(store.entries[i].leaf_hash),
            "proof": [b64(h) for h in proofs.inclusion_proof(reader, i, n)],
        }
        for i in sorted({0, 1 % n, n // 3, n // 2, n - 1})
    ]
    consistency = [
        {
            "old": m,
            "new": n,
            "old_root": b64(roots[m]),
            "new_root": b64(roots[n]),
            "proof": [b64(h) for h in proofs.consistency_proof(reader, m, n)],
        }
        for m in sizes
    ]
    pf = tmp_path / "proofs.json"
    pf.write_text(json.dumps({"inclusion": inclusion, "consistency": consistency}))
    out = subprocess.run(
        [
            str(go_verifier),
            "-dir",
            str(tmp_path / "log"),
            "-vkey",
            log.verifier.vkey,
            "-proofs",
            str(pf),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"ok size={n} root={b64(roots[n])}")


def test_go_rejects_tampering(go_verifier: Path, tmp_path: Path) -> None:
    log, _, _ = build_log(tmp_path, [300])
    vkey = log.verifier.vkey
    run = lambda: subprocess.run(  # noqa: E731
        [str(go_verifier), "-dir", str(tmp_path / "log"), "-vkey", vkey],
        capture_output=True,
        text=True,
    )
    assert run().returncode == 0
    bundle = tmp_path / "log" / "tile/entries/000"
    data = bytearray(bundle.read_bytes())
    data[10] ^= 1
    bundle.write_bytes(bytes(data))
    bad = run()
    assert bad.returncode == 1 and "does not match its leaf hash" in bad.stderr
    data[10] ^= 1
    bundle.write_bytes(bytes(data))
    vkey = generate_signer(ORIGIN, b"\x0a" * 32).verifier.vkey
    bad = run()
    assert bad.returncode == 1 and "checkpoint signature" in bad.stderr


def test_go_verifies_a_log_written_through_the_store(go_verifier: Path, world) -> None:  # type: ignore[no-untyped-def]
    """The log of a real SQLite store, synced by PolicyService's after-commit hook."""
    out = subprocess.run(
        [str(go_verifier), "-dir", str(world.config.tiles_dir), "-vkey", world.vkey],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok size=5 ")  # two jurisdiction-set entries, three orders


def test_go_verifies_a_checkpoint_carrying_cosignatures(go_verifier: Path, tmp_path: Path) -> None:
    """Witnesses' cosignature/v1 lines are unknown keys to Go's note.Open: still verified."""
    from clearwall.ledger.checkpoint import parse_checkpoint
    from clearwall.ledger.cosignature import generate_cosigner
    from clearwall.ledger.note import split_note, with_signatures

    log, _, roots = build_log(tmp_path, [300])
    note = log.dir.read_checkpoint()
    assert note is not None
    text = split_note(note)[0]
    witnesses = [generate_cosigner(f"w{i}.example/witness", bytes([i]) * 32) for i in (1, 2, 3)]
    cosigned = with_signatures(
        note, [w.cosign(text, 1_790_000_000 + i) for i, w in enumerate(witnesses)]
    )
    log.dir.write_checkpoint(cosigned)
    assert len(split_note(log.dir.read_checkpoint() or "")[1]) == 4
    out = subprocess.run(
        [str(go_verifier), "-dir", str(tmp_path / "log"), "-vkey", log.verifier.vkey],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"ok size=300 root={b64(roots[300])}")
    assert parse_checkpoint(text).size == 300
