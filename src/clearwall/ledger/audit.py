"""``ledger verify``: recompute the log from the store and report every inconsistency.

Checks, each problem naming the entry index or order id:
1. entries are numbered 0..size-1 with no gap and each stored leaf hash is
   SHA-256(0x00 || data) (RFC 6962 section 2.1) — an edited or deleted entry shows here;
2. every stored checkpoint is signed by the log key, states the root recomputed from the
   entries at its size, and is consistent with the latest one (RFC 9162 2.1.4 proof);
3. the published tiles and entry bundles equal what the entries imply (a rewrite of the
   store that also forged leaf hashes is located by comparing with the public tiles);
4. every order in the store is on the log, and each active order's stored rules and
   metadata equal what its latest entry committed (a rule added behind the log's back);
5. every jurisdiction in the store is on the log and its name and networks equal what
   its latest entry committed (a network moved behind the log's back), and every
   jurisdiction on the log is in the store, and every cross-border request in the store
   (filing, names, decision) is as its entries state it and every logged one is stored;
6. every published rule file hashes to the digest in its name;
7. the public log is not behind the store: a signed, published checkpoint covers every
   committed entry, and each order version it covers has its rule file. A tail that no
   checkpoint covers (a writer killed between commit and publication) is a problem with
   its size until ``ledger sync`` (or a gateway's start) publishes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clearwall.errors import ClearwallError, TileError, VerificationError
from clearwall.ledger import entries, proofs, tiles
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.entries import EntryError, Family
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.logstate import LogState, PolicyCheck
from clearwall.ledger.logstore import LogStore
from clearwall.ledger.merkle import HASH_SIZE, MemoryTree, leaf_hash, merkle_root
from clearwall.ledger.signing import Verifier
from clearwall.ledger.tiledir import RULES_DIR


@dataclass
class AuditReport:
    """The outcome of ``ledger verify``: problems found and what was checked.

    ``problems`` are inconsistencies (tampering, corruption); ``unpublished`` is what the
    public log lacks though the store committed it (a writer stopped before publishing),
    which ``ledger sync`` repairs. Either makes the log fail verification.
    """

    problems: list[str] = field(default_factory=list)
    unpublished: list[str] = field(default_factory=list)
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    orders: int = 0
    jurisdictions: int = 0
    rule_files: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems and not self.unpublished

    def summary(self) -> str:
        """One line saying what was verified."""
        return (
            f"{self.size} entries, root {self.root.hex()}, {self.checkpoints} checkpoints "
            f"consistent, {self.orders} orders and {self.jurisdictions} jurisdictions match "
            f"the log, {self.rule_files} rule files"
        )


def audit(
    store: LogStore, tlog: TransparencyLog, verifier: Verifier, policy: PolicyCheck
) -> AuditReport:
    """Run every check of the module docstring against ``store`` and ``tlog``'s files;
    ``policy`` holds the store's records against the folded log (checks 4 and 5: the
    store provides it, ``clearwall.store.logmatch.checker``)."""
    report = AuditReport()
    problems = report.problems
    size = store.log_size()
    packed = bytearray()
    data_by_index: list[bytes] = []
    state = LogState()
    expect = 0
    for index, data, stored_hash in store.log_rows():
        if index != expect:
            problems.append(f"entries {expect}..{index - 1} are missing (deleted entries)")
            packed += b"\0" * HASH_SIZE * (index - expect)
            data_by_index.extend([b""] * (index - expect))
            expect = index
        h = leaf_hash(data)
        if h != stored_hash:
            problems.append(f"entry {index}: data does not match its leaf hash (edited entry)")
        packed += h
        data_by_index.append(data)
        expect += 1
        if entries.family(data) is Family.APPEAL:
            continue  # states nothing the store must match
        try:
            state.apply(index, entries.parse(data))
        except EntryError as exc:
            problems.append(f"entry {index}: not a clearwall entry ({exc})")
    if expect != size:
        problems.append(f"log head says {size} entries but {expect} are stored")
    tree = MemoryTree(packed)
    report.size = tree.size
    report.root = tree.root()
    _check_checkpoints(store, tree, verifier, tlog, report)
    published = _check_tiles(tlog, tree, data_by_index, verifier, report)
    matched = policy(state)
    problems.extend(matched.problems)
    report.orders, report.jurisdictions = matched.orders, matched.jurisdictions
    _check_rule_files(tlog.dir.root / RULES_DIR, report)
    _check_published_rules(tlog, state, published, report)
    return report


def _check_checkpoints(
    store: LogStore,
    tree: MemoryTree,
    verifier: Verifier,
    tlog: TransparencyLog,
    report: AuditReport,
) -> None:
    stored = list(store.checkpoints())
    if not stored:
        return
    latest = stored[-1]
    for cp_row in stored:
        size = int(cp_row.tree_size)
        what = f"checkpoint of size {size}"
        try:
            cp = open_checkpoint(cp_row.note, verifier, tlog.config.origin)
        except VerificationError as exc:
            report.problems.append(f"{what}: {exc} (forged checkpoint)")
            continue
        if cp.size != size or cp.root != bytes(cp_row.root_hash):
            report.problems.append(f"{what}: stored row differs from its signed note")
            continue
        if size > tree.size:
            report.problems.append(f"{what}: larger than the {tree.size} stored entries")
            continue
        if tree.root(size) != cp.root:
            first = _first_bad_leaf(tlog, tree, size)
            where = f" (first differing entry: {first})" if first is not None else ""
            report.problems.append(f"{what}: signed root does not match the stored entries{where}")
            continue
        if size <= int(latest.tree_size) and int(latest.tree_size) <= tree.size:
            proof = proofs.consistency_proof(tree, size, int(latest.tree_size))
            try:
                proofs.verify_consistency(
                    size, int(latest.tree_size), cp.root, bytes(latest.root_hash), proof
                )
            except VerificationError as exc:
                report.problems.append(f"{what}: not consistent with the latest: {exc}")
                continue
        report.checkpoints += 1


def _first_bad_leaf(tlog: TransparencyLog, tree: MemoryTree, size: int) -> int | None:
    """The first entry whose leaf hash differs from the published level-0 tiles."""
    reader = tlog.reader(size)
    for i in range(size):
        try:
            if reader.hash_at(0, i) != tree.leaf(i):
                return i
        except ClearwallError:
            return None
    return None


def _check_tiles(
    tlog: TransparencyLog,
    tree: MemoryTree,
    data: list[bytes],
    verifier: Verifier,
    report: AuditReport,
) -> int:
    """Check the published checkpoint and tiles; the size they publish (0: none)."""
    note = tlog.dir.read_checkpoint()
    if note is None:
        report.unpublished.append(
            f"no published checkpoint in {tlog.dir.root}: all {tree.size} committed entries "
            "are unpublished (run `clearwall ledger sync`)"
        )
        return 0
    try:
        cp = open_checkpoint(note, verifier, tlog.config.origin)
    except VerificationError as exc:
        report.problems.append(f"published checkpoint: {exc}")
        return 0
    if cp.size > tree.size:
        report.problems.append(
            f"published checkpoint has size {cp.size} but only {tree.size} entries are stored"
        )
        return 0
    if cp.size < tree.size:
        report.unpublished.append(
            f"unpublished tail: entries {cp.size}..{tree.size - 1} ({tree.size - cp.size} "
            f"of {tree.size}) are committed but no published signed checkpoint covers them "
            "(a writer stopped before publishing; run `clearwall ledger sync`)"
        )
    if tree.root(cp.size) != cp.root:
        first = _first_bad_leaf(tlog, tree, cp.size)
        where = f" at entry {first}" if first is not None else ""
        report.problems.append(f"published checkpoint root differs from the stored entries{where}")
    level = 0
    while tiles.row_size(cp.size, level) > 0:
        for n in range(0, (tiles.row_size(cp.size, level) + 255) // 256):
            tile = tiles.tile_for(cp.size, level, n)
            try:
                got = tlog.dir.read(tile)
            except TileError as exc:
                report.problems.append(f"tile {tile.path}: {exc}")
                continue
            # MemoryTree row 8·L is exactly the row tile level L publishes.
            off = n * 256 * HASH_SIZE
            want = bytes(tree.rows[8 * level][off : off + tile.width * HASH_SIZE])
            if got != want:
                report.problems.append(f"tile {tile.path}: differs from the stored entries")
        level += 1
    for n in range(0, (cp.size + 255) // 256):
        tile = tiles.tile_for(cp.size, tiles.ENTRIES, n)
        stored = data[n * 256 : n * 256 + tile.width]
        try:
            raw = tlog.dir.read(tile)
            if raw == tiles.encode_bundle(stored):
                continue  # the common case: byte-identical, nothing to decode
            bundle = tiles.decode_bundle(raw, tile.width)
        except TileError as exc:
            report.problems.append(f"entry bundle {tile.path}: {exc}")
            continue
        for i, entry in enumerate(bundle):
            if i >= len(stored) or stored[i] != entry:
                report.problems.append(
                    f"entry {n * 256 + i}: published bundle differs from the store"
                )
    return cp.size


def _check_published_rules(
    tlog: TransparencyLog, state: LogState, published: int, report: AuditReport
) -> None:
    """Every order version the published log commits to (each order's latest entry in
    it) has its rule file, so anyone can check a name against it."""
    for index, version in state.versions():
        if index >= published:
            continue
        path = tlog.rule_file(version.order.id, version.rules.digest)
        if not path.is_file():
            report.unpublished.append(
                f"order {version.order.id}: rule file {RULES_DIR}/{path.name} of log entry "
                f"{index} is missing from the public log"
            )


def _check_rule_files(directory: Path, report: AuditReport) -> None:
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.txt")):
        digest = path.stem.rsplit("-", 1)[-1]
        lines = path.read_bytes().splitlines()
        if merkle_root(lines).hex() != digest:
            report.problems.append(f"rule file {path.name}: lines do not hash to its digest")
        else:
            report.rule_files += 1
