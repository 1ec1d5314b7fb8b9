"""Ledger benchmark: append throughput, proof time and size, full verify, per-name proofs.

Targets (issue 4): >= 10,000 durable entries/s batched through the store; an inclusion
proof in <= 1 ms and <= 32·ceil(log2 N) bytes at 1M and 10M entries; `ledger verify` of
1M entries in <= 30 s. Writes bench/results/ledger-latest.json.

    .venv/bin/python bench/ledger.py            # everything (a few minutes, ~2 GB RAM)
    .venv/bin/python bench/ledger.py --quick    # 100k instead of 1M/10M, for a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clearwall.config import LedgerConfig
from clearwall.ledger import entries, proofs, tiles
from clearwall.ledger.audit import audit
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.merkle import HASH_SIZE, MemoryTree
from clearwall.ledger.nameproof import verify_bundle
from clearwall.ledger.prover import NameProver
from clearwall.ledger.signing import create_key_file, parse_vkey
from clearwall.ledger.tiledir import TileDir
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store
from clearwall.store.logmatch import checker
from clearwall.store.service import append_entries, append_entry

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "clearwall.example/log"
DATA = Path(os.environ.get("CLEARWALL_DATA", ROOT.parent / "shared" / "data"))


def world(tmp: Path) -> tuple[Any, PolicyService, TransparencyLog, LedgerConfig, str]:
    cfg = LedgerConfig(key_file=tmp / "ledger.key", tiles_dir=tmp / "log", origin=ORIGIN)
    vkey = create_key_file(cfg.key_file, ORIGIN)
    store = open_store(f"sqlite:///{tmp / 'clearwall.db'}", migrate=True)
    tlog = TransparencyLog(store, cfg)
    svc = PolicyService(store, after_commit=tlog.sync)
    svc.add_jurisdiction("xa", "Demo Republic A", ["10.0.0.0/8"])
    svc.add_authority("Court A", "court", "xa", ["mailto:court@a.example"])
    return store, svc, tlog, cfg, vkey


def bench_append(tmp: Path, total: int, batch: int) -> dict[str, Any]:
    """Durable appends: entries committed through the store in batches, then published."""
    store, svc, tlog, _, _ = world(tmp)
    at = dt.datetime.now(dt.UTC)
    payloads = [
        entries.encode(
            entries.AppealFiled(at, i, 1, f"name{i}.bench.example", "over-blocking of a shop")
        )
        for i in range(total)
    ]
    # For comparison: append_entry (one statement per entry), one transaction per batch.
    per_entry_n = min(total, 10_000)
    p0 = time.perf_counter()
    for start in range(0, per_entry_n, batch):
        with store.write() as conn:
            for data in payloads[start : start + batch]:
                append_entry(conn, data, at)
        tlog.sync()
    per_entry_rate = per_entry_n / (time.perf_counter() - p0)
    # The store's batch API: one executemany per transaction, then tiles + a signed checkpoint.
    t0 = time.perf_counter()
    commit_s = 0.0
    sync_s = 0.0
    for start in range(0, total, batch):
        c0 = time.perf_counter()
        with store.write() as conn:  # one transaction per batch: the durable unit
            append_entries(conn, payloads[start : start + batch], at)
        c1 = time.perf_counter()
        tlog.sync()  # tiles + signed checkpoint, as the after-commit hook does
        commit_s += c1 - c0
        sync_s += time.perf_counter() - c1
    wall = time.perf_counter() - t0
    single_n = 200
    s0 = time.perf_counter()
    for i in range(single_n):  # one PolicyService write (own transaction + sync) per entry
        svc.add_order(
            1,
            f"Order {i}",
            "Law 1",
            f"B-{i}",
            "court-order",
            "nxdomain",
            [RuleSpec(RuleKind.EXACT, f"single{i}.example")],
        )
    single_s = time.perf_counter() - s0
    store.dispose()
    return {
        "entries": total,
        "batch": batch,
        "entry_bytes_avg": round(sum(map(len, payloads)) / total, 1),
        "durable_entries_per_s": round(total / wall),
        "durable_entries_per_s_store_append_entry": round(per_entry_rate),
        "commit_only_entries_per_s": round(total / commit_s),
        "sync_only_entries_per_s": round(total / sync_s),
        "sqlite": "WAL, synchronous=NORMAL (the store's setting)",
        "unbatched_policy_writes_per_s": round(single_n / single_s, 1),
    }


def synthetic_tiles(directory: Path, n: int) -> tuple[MemoryTree, float]:
    """Tiles of a tree of ``n`` synthetic leaves (SHA-256 of the index), written as files."""
    t0 = time.perf_counter()
    packed = b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n))
    tree = MemoryTree(packed)
    tdir = TileDir(directory)
    for tile in tiles.new_tiles(0, n):
        off = tile.index * 256 * HASH_SIZE
        tdir.write(tile, bytes(tree.rows[8 * tile.level][off : off + tile.width * HASH_SIZE]))
    return tree, time.perf_counter() - t0


def bench_proofs(tmp: Path, n: int, samples: int = 200) -> dict[str, Any]:
    """Inclusion and consistency proofs served from tiles on disk (cold reader per proof)."""
    tree, build_s = synthetic_tiles(tmp, n)
    root = tree.root()
    bound = 32 * math.ceil(math.log2(n))
    times, sizes, warm, server = [], [], [], []
    step = n // samples
    # The server's reader: shared subtree cache + in-memory tree over the level-1 row.
    tlog = TransparencyLog(None, LedgerConfig(tiles_dir=tmp, origin=ORIGIN))
    u0 = time.perf_counter()
    tlog.reader(n)
    upper_s = time.perf_counter() - u0
    warm_reader = tlog.reader(n)
    for k in range(samples):
        i = (k * step + 7919 * k) % n
        t0 = time.perf_counter()
        reader = proofs_reader(tmp, n)  # fresh, no cache: every tile read from disk
        p = proofs.inclusion_proof(reader, i, n)
        times.append(time.perf_counter() - t0)
        tlog._subtrees.clear()  # no cached subtree: the leaf's tile is read and hashed
        s0 = time.perf_counter()
        proofs.inclusion_proof(tlog.reader(n), i, n)
        server.append(time.perf_counter() - s0)
        t1 = time.perf_counter()
        proofs.inclusion_proof(warm_reader, i, n)
        warm.append(time.perf_counter() - t1)
        sizes.append(32 * len(p))
        proofs.verify_inclusion(i, n, tree.leaf(i), p, root)
    v0 = time.perf_counter()
    for k in range(samples):
        i = (k * step) % n
        proofs.verify_inclusion(i, n, tree.leaf(i), proofs.inclusion_proof(warm_reader, i, n), root)
    verify_s = (time.perf_counter() - v0) / samples
    c0 = time.perf_counter()
    cp = proofs.consistency_proof(proofs_reader(tmp, n), n // 3 + 1, n)
    cons_s = time.perf_counter() - c0
    return {
        "entries": n,
        "tree_and_tiles_build_s": round(build_s, 1),
        "inclusion_ms_cold_median": round(statistics.median(times) * 1e3, 3),
        "inclusion_ms_cold_p99": round(sorted(times)[int(0.99 * len(times))] * 1e3, 3),
        "inclusion_ms_server_median": round(statistics.median(server) * 1e3, 3),
        "inclusion_ms_server_p99": round(sorted(server)[int(0.99 * len(server))] * 1e3, 3),
        "server_upper_tree_load_s": round(upper_s, 3),
        "inclusion_ms_warm_median": round(statistics.median(warm) * 1e3, 3),
        "inclusion_bytes_max": max(sizes),
        "bound_bytes_32_ceil_log2_n": bound,
        "prove_and_verify_ms": round(verify_s * 1e3, 3),
        "consistency_ms_cold": round(cons_s * 1e3, 3),
        "consistency_bytes": 32 * len(cp),
    }


def proofs_reader(directory: Path, n: int) -> Any:
    from clearwall.ledger.readers import TileHashReader

    return TileHashReader(TileDir(directory), n)


def bench_verify(tmp: Path, total: int) -> dict[str, Any]:
    """`ledger verify` over a store of ``total`` entries (function and CLI wall time)."""
    store, svc, tlog, cfg, vkey = world(tmp)
    svc.add_order(
        1,
        "Gambling",
        "Law 1",
        "C-1",
        "court-order",
        "nxdomain",
        [RuleSpec(RuleKind.SUBTREE, "casino.example")],
    )
    at = dt.datetime.now(dt.UTC)
    batch = 10_000
    for start in range(0, total - 1, batch):
        with store.write() as conn:
            datas = [
                entries.encode(entries.AppealFiled(at, i, 1, f"n{i}.example", "r"))
                for i in range(start, min(start + batch, total - 1))
            ]
            append_entries(conn, datas, at)
        if start % 200_000 == 0:
            tlog.sync()  # some intermediate checkpoints, as a live log has
    s0 = time.perf_counter()
    tlog.sync()
    last_sync = time.perf_counter() - s0
    t0 = time.perf_counter()
    report = audit(store, tlog, parse_vkey(vkey), checker(store))
    audit_s = time.perf_counter() - t0
    assert report.ok, report.problems[:5]
    conf = tmp / "c.toml"
    conf.write_text(
        f'[store]\nurl = "sqlite:///{tmp / "clearwall.db"}"\n[ledger]\n'
        f'key_file = "{cfg.key_file}"\ntiles_dir = "{cfg.tiles_dir}"\norigin = "{ORIGIN}"\n'
    )
    c0 = time.perf_counter()
    out = subprocess.run(
        [str(ROOT / ".venv/bin/clearwall"), "ledger", "verify", "--config", str(conf)],
        capture_output=True,
        text=True,
    )
    cli_s = time.perf_counter() - c0
    assert out.returncode == 0, out.stderr
    store.dispose()
    return {
        "entries": report.size,
        "checkpoints": report.checkpoints,
        "audit_function_s": round(audit_s, 2),
        "cli_ledger_verify_s": round(cli_s, 2),
        "cli_output": out.stdout.strip(),
        "final_sync_s": round(last_sync, 2),
    }


def bench_nameproof(tmp: Path, total: int) -> dict[str, Any]:
    """Per-name proof over one order of ``total`` names (real HaGeZi names first)."""
    store, svc, tlog, _, vkey = world(tmp)
    names: list[str] = []
    real = DATA / "hagezi" / "light.domains.txt"
    if real.exists():
        for line in real.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                names.append(line.lower())
    names = sorted(set(names))[:total]
    real_count = len(names)
    names.extend(f"n{i}.bench.example" for i in range(total - real_count))
    rules = [RuleSpec(RuleKind.SUBTREE, n) for n in names]
    t0 = time.perf_counter()
    svc.add_order(1, "Big list", "Law 1", "BIG-1", "court-order", "nxdomain", rules)
    add_s = time.perf_counter() - t0
    prover = NameProver(tlog)
    verifier = parse_vkey(vkey)
    targets = [f"www.{names[len(names) // 3]}", "not-listed.example", "n123456.bench.example"]
    c0 = time.perf_counter()
    first = prover.prove(targets[0], "xa")
    cold = time.perf_counter() - c0
    warm, sizes, verify = [], [], []
    for name in targets * 5:
        w0 = time.perf_counter()
        bundle = prover.prove(name, "xa")
        warm.append(time.perf_counter() - w0)
        sizes.append(len(json.dumps(bundle)))
        v0 = time.perf_counter()
        verify_bundle(bundle, verifier)
        verify.append(time.perf_counter() - v0)
    store.dispose()
    return {
        "rules": total,
        "real_names": real_count,
        "add_order_with_rules_and_sync_s": round(add_s, 1),
        "first_proof_s_incl_rule_tree_build": round(cold, 2),
        "proof_ms_warm_median": round(statistics.median(warm) * 1e3, 2),
        "bundle_bytes_median": int(statistics.median(sizes)),
        "verify_ms_median": round(statistics.median(verify) * 1e3, 2),
        "first_conclusion": first["conclusion"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k entries instead of 1M/10M")
    ap.add_argument("--only", default="append,proofs,verify,nameproof")
    args = ap.parse_args()
    million = 100_000 if args.quick else 1_000_000
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "quick": args.quick,
    }
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="cw-bench-") as d:
        tmp = Path(d)
        if "append" in only:
            results["append"] = [
                bench_append(tmp / f"append{batch}", 100_000, batch) for batch in (1_000, 10_000)
            ]
            print(json.dumps(results["append"]), flush=True)
        if "proofs" in only:
            results["proofs"] = [bench_proofs(tmp / "p1", million)]
            print(json.dumps(results["proofs"][-1]), flush=True)
            results["proofs"].append(bench_proofs(tmp / "p2", 10 * million))
            print(json.dumps(results["proofs"][-1]), flush=True)
        if "verify" in only:
            results["verify"] = bench_verify(tmp / "verify", million)
            print(json.dumps(results["verify"]), flush=True)
        if "nameproof" in only:
            results["nameproof"] = bench_nameproof(tmp / "names", million)
            print(json.dumps(results["nameproof"]), flush=True)
    out = ROOT / "bench" / "results" / "ledger-latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and only != {"append", "proofs", "verify", "nameproof"}:
        previous = json.loads(out.read_text())
        previous.update(results)
        results = previous
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
