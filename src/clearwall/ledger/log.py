"""The transparency log as files: tiles, entry bundles, rule files and signed checkpoints.

The store is the source of truth (entries commit with the policy in one transaction);
``TransparencyLog.sync`` derives everything public from it: the C2SP tlog-tiles hash
tiles and entry bundles for the new entries, the published rule file of each new order
version, then a signed checkpoint, written last. A crash between the store commit and
``sync`` loses nothing: the next ``sync`` (run at start) re-derives the missing tiles
from the committed entries. This module is the I/O edge of the ledger; the hashing,
proofs and formats it uses are pure.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from clearwall.config import LedgerConfig
from clearwall.errors import LedgerError, TileError, VerificationError
from clearwall.ledger import entries, proofs, tiles, witnessing
from clearwall.ledger.checkpoint import Checkpoint, open_checkpoint
from clearwall.ledger.logstore import LogRow, LogStore
from clearwall.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    leaf_hash,
    merkle_root,
    parent_row,
)
from clearwall.ledger.published import ledger_verifier
from clearwall.ledger.readers import TileHashReader
from clearwall.ledger.signing import Signer, Verifier, load_signer, parse_vkey
from clearwall.ledger.tiledir import RULES_DIR, TileDir
from clearwall.ledger.tiles import TILE_HEIGHT, TILE_WIDTH, TileID


@dataclass
class _Frontier:
    """The right edge of the tree: for each tile level, the row hashes of its last tile."""

    size: int
    rows: list[bytearray]  # rows[L] = hashes at height 8L from index (size_L // 256) * 256

    def root(self) -> bytes:
        """Root hash of the tree, from the frontier alone (every needed hash is in it)."""
        if self.size == 0:
            return EMPTY_ROOT
        return proofs.tree_hash(_FrontierReader(self), self.size)


class _FrontierReader:
    def __init__(self, frontier: _Frontier) -> None:
        self.f = frontier

    def hash_at(self, height: int, index: int) -> bytes:
        level, r = divmod(height, TILE_HEIGHT)
        start = (tiles.row_size(self.f.size, level) // TILE_WIDTH) * TILE_WIDTH
        first = (index << r) - start
        row = self.f.rows[level]
        if first < 0 or (first + (1 << r)) * HASH_SIZE > len(row):
            raise LedgerError(f"frontier lacks the subtree at height {height} index {index}")
        seg: bytes | bytearray = row[first * HASH_SIZE : (first + (1 << r)) * HASH_SIZE]
        while len(seg) > HASH_SIZE:
            seg = parent_row(seg)
        return bytes(seg)


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What a sync did: the old and new published sizes and the new checkpoint note."""

    old_size: int
    new_size: int
    checkpoint: str
    tiles_written: int


class TransparencyLog:
    """The log of a store: sync tiles and checkpoints, serve proofs, recover after a crash.

    ``sync`` is safe to call after every commit, concurrently from several processes (a
    file lock serializes writers) and at start (it finishes what a crash interrupted).
    """

    def __init__(self, store: LogStore, config: LedgerConfig, signer: Signer | None = None) -> None:
        """Bind the log to ``store`` and the ledger config section."""
        self.store = store
        self.config = config
        self.dir = TileDir(config.tiles_path())
        self._signer = signer
        self._subtrees: dict[tuple[int, int], bytes] = {}
        self._upper = MemoryTree()
        self._upper_lock = threading.Lock()

    # -- keys ----------------------------------------------------------------------

    @property
    def signer(self) -> Signer:
        """The log's signer, loaded from the key file on first use."""
        if self._signer is None:
            signer = load_signer(self.config.key_path())
            if signer.name != self.config.origin:
                # Not kept: the next use must be refused as well, not sign with it.
                raise LedgerError(
                    f"ledger key is named {signer.name!r} but the log origin is "
                    f"{self.config.origin!r}"
                )
            self._signer = signer
        return self._signer

    @property
    def verifier(self) -> Verifier:
        """The log's public verifier key (``[ledger] vkey`` on a node that does not sign)."""
        if self._signer is None and not self.config.signs():
            return parse_vkey(self.config.vkey)
        return self.signer.verifier

    @property
    def signs(self) -> bool:
        """Whether this node signs (it holds the key file); else it serves and enforces
        only what the signer signed (``follow``)."""
        return self._signer is not None or self.config.signs()

    # -- reading the published state -----------------------------------------------

    def published(self) -> Checkpoint | None:
        """The verified checkpoint in the tiles directory, or None when there is none."""
        note = self.dir.read_checkpoint()
        if note is None:
            return None
        return open_checkpoint(note, self.verifier, self.config.origin)

    def checkpoint_note(self) -> str:
        """The published signed checkpoint note (raises when the log was never synced)."""
        note = self.dir.read_checkpoint()
        if note is None:
            raise LedgerError("the log has no checkpoint yet (run `clearwall ledger sync`)")
        return note

    def reader(self, size: int) -> TileHashReader:
        """A hash reader over the published tiles for a tree of ``size``.

        Readers share a cache of complete-subtree hashes and an in-memory tree over the
        level-1 tile row (1/256 of the leaves, 2.5 MB for 10M entries), loaded once and
        extended as the log grows; only the leaf's level-0 tile is read per proof.
        """
        with self._upper_lock:
            have, want = self._upper.size, tiles.row_size(size, 1)
            first = have // TILE_WIDTH if have < want else want  # nothing new: no reads
            for n in range(first, (want + TILE_WIDTH - 1) // TILE_WIDTH):
                tile = tiles.tile_for(size, 1, n)
                data = self.dir.read(tile)
                tiles.split_hashes(data, tile.width)
                skip = max(0, self._upper.size - n * TILE_WIDTH)
                self._upper.append(data[skip * HASH_SIZE :])
            upper = self._upper
        return TileHashReader(self.dir, size, self._subtrees, upper)

    def entry(self, index: int, size: int) -> bytes:
        """Entry ``index`` read from its published entry bundle (tree of ``size``)."""
        if not 0 <= index < size:
            raise LedgerError(f"no entry {index} in a log of size {size}")
        tile = tiles.tile_for(size, tiles.ENTRIES, index // TILE_WIDTH)
        bundle = tiles.decode_bundle(self.dir.read(tile), tile.width)
        return bundle[index % TILE_WIDTH]

    def publish(self) -> int:
        """Sign and publish every committed entry not yet published (tiles, bundles, rule
        files, then the checkpoint); the size of the published signed checkpoint.

        What a gateway runs before it enforces a policy: it enforces at most this size.
        Raises LedgerError (or ConfigError for a missing key path) when the log cannot be
        published.
        """
        try:
            cp = self.published()
        except LedgerError:
            cp = None  # unreadable or forged: sync re-derives everything
        if cp is None or cp.size < self.store.log_size():
            self.sync()
            cp = self.published()
        if cp is None:
            raise LedgerError(f"no checkpoint was published in {self.dir.root}")
        return cp.size

    # -- sync -------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The log's writer lock (a file lock: one writer at a time across processes)."""
        self.dir.root.mkdir(parents=True, exist_ok=True)
        with open(self.dir.root / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _load_frontier(self, size: int) -> _Frontier:
        """Read the last tile of every row of the published tree of ``size``."""
        rows: list[bytearray] = [bytearray()]
        level = 0
        while tiles.row_size(size, level) > 0:
            n = tiles.row_size(size, level)
            if level == len(rows):
                rows.append(bytearray())
            if n % TILE_WIDTH:
                tile = TileID(level, n // TILE_WIDTH, n % TILE_WIDTH)
                data = self.dir.read(tile)
                tiles.split_hashes(data, tile.width)
                rows[level] += data
            level += 1
        return _Frontier(size, rows)

    def _recover_size(self) -> int:
        """The size whose tiles are known complete: the published checkpoint's, if valid."""
        try:
            cp = self.published()
        except (VerificationError, LedgerError):
            return 0  # unreadable or forged checkpoint file: re-derive everything
        return 0 if cp is None else cp.size

    def sync(self) -> SyncResult:
        """Publish every committed entry: tiles, bundles, rule files, then a checkpoint;
        on a node that does not sign, what the signer signed (``follow``)."""
        if not self.signs:
            return self.follow()
        if self.config.vkey:
            ledger_verifier(self.config)  # the key file is the one [ledger] vkey names
        with self.lock():
            self.dir.clear_tmp()
            old = self._recover_size()
            size = self.store.log_size()
            if size < old:
                raise LedgerError(self._rollback_message(size, old))
            try:
                frontier = self._load_frontier(old)
                if frontier.root() != self._published_root(old):
                    raise TileError("published tiles do not match the published checkpoint")
            except (TileError, LedgerError):
                old, frontier = 0, _Frontier(0, [bytearray()])
            written = self._extend(frontier, size)
            root = frontier.root()
            note = Checkpoint(self.config.origin, size, root).sign(self.signer)
            note = witnessing.cosign(self, note)  # attach the witnesses' cosignatures
            self.dir.write_checkpoint(note)
            self.store.add_checkpoint(size, root, note)
            return SyncResult(old, size, note, written)

    def follow(self) -> SyncResult:
        """Publish here what the signer signed: the newest checkpoint the store holds,
        verified with ``[ledger] vkey``, and the tiles, bundles and rule files up to its
        size, rebuilt from the store's entries (byte for byte what the signer wrote: the
        tiles are a function of the entries). The checkpoint is written last, and only
        once the entries hash to its root. Entries committed past it wait for the signer.
        """
        with self.lock():
            self.dir.clear_tmp()
            stored = self.store.latest_checkpoint()
            if stored is None:
                raise LedgerError(
                    "the signer has not published a checkpoint yet: a node without the "
                    "ledger key serves and enforces only what the signer signed"
                )
            signed = open_checkpoint(stored.note, self.verifier, self.config.origin)
            old = self._recover_size()
            if signed.size < old:
                raise LedgerError(self._rollback_message(signed.size, old))
            try:
                frontier = self._load_frontier(old)
                if frontier.root() != self._published_root(old):
                    raise TileError("published tiles do not match the published checkpoint")
            except (TileError, LedgerError):
                old, frontier = 0, _Frontier(0, [bytearray()])
            written = self._extend(frontier, signed.size)
            if frontier.root() != signed.root:
                raise VerificationError(
                    f"the store's first {signed.size} entries do not hash to the root the "
                    "signer signed: nothing is published or enforced past the last checkpoint"
                )
            if self.dir.read_checkpoint() != stored.note:
                self.dir.write_checkpoint(stored.note)
            return SyncResult(old, signed.size, stored.note, written)

    def _rollback_message(self, size: int, published: int) -> str:
        """Why the store is behind its public log, saying whose files are whose.

        A store records every checkpoint it publishes, and a log that is this store's
        own agrees with its entries on their common prefix; either shows the entries
        were lost (say, a restored backup). A store that never recorded a checkpoint, or
        whose entries differ from the published ones, is looking at another store's
        files (two stores given the same [ledger] paths).
        """
        where = (
            f"the store {self.store} has {size} entries but the public log in "
            f"{self.dir.root} (key {self.config.key_file}) published checkpoint size {published}"
        )
        lost = (
            "committed entries were lost or rolled back (a database restored from an older copy?)"
        )
        other = (
            "those files belong to another store; give each store its own [ledger] key_file "
            "and tiles_dir (by default they live beside a SQLite store's file)"
        )
        recorded = list(self.store.checkpoints())
        if not recorded:
            return f"{where}, and this store never published a checkpoint: {other}"
        cp = self.published()
        if cp is not None and any(
            int(c.tree_size) == cp.size and bytes(c.root_hash) == cp.root for c in recorded
        ):
            return f"{where}, a checkpoint of this store: {lost}"
        if size > 0:
            try:
                theirs = proofs.tree_hash(self.reader(published), size)
            except (LedgerError, OSError):
                theirs = b""
            ours = MemoryTree(b"".join(r[2] for r in self._rows(0, size))).root()
            if theirs == ours:
                return f"{where}, which extends this store's entries: {lost}"
            return f"{where}, whose entries differ from this store's: {other}"
        return f"{where}: either {lost}, or {other}"

    def _published_root(self, size: int) -> bytes:
        cp = self.published()
        if cp is None:
            return EMPTY_ROOT if size == 0 else b""
        return cp.root

    def _extend(self, frontier: _Frontier, size: int) -> int:
        """Grow ``frontier`` to ``size`` from the store, writing tiles; return tiles written."""
        old = frontier.size
        if size == old:
            return 0
        start = (old // TILE_WIDTH) * TILE_WIDTH
        written = 0
        batch = 1 << 16
        # Work through the new entries in aligned batches so memory stays bounded.
        pos = old
        while pos < size:
            end = min(size, (pos // batch + 1) * batch)
            rows = self._rows(start, end)
            if len(rows) != end - start or any(r[0] != start + i for i, r in enumerate(rows)):
                raise LedgerError(f"the store is missing log entries between {start} and {end}")
            new_hashes = bytearray()
            for index, data, stored_hash in rows[pos - start :]:
                h = leaf_hash(data)
                if h != stored_hash:
                    raise VerificationError(
                        f"log entry {index}: stored leaf hash does not match its data"
                    )
                new_hashes += h
            datas = [r[1] for r in rows]
            written += self._write_bundles(pos, end, datas)
            written += self._grow(frontier, end, new_hashes)
            self._publish_rule_files(datas[pos - start :])
            start = (end // TILE_WIDTH) * TILE_WIDTH
            pos = end
        return written

    def _rows(self, start: int, end: int) -> list[LogRow]:
        """(index, data, stored leaf hash) of entries ``start <= index < end``."""
        return list(self.store.log_rows(start, end))

    def _write_bundles(self, old: int, new: int, entries: list[bytes]) -> int:
        """Write entry bundles growing old → new; ``entries`` start at old's tile."""
        base = (old // TILE_WIDTH) * TILE_WIDTH
        count = 0
        for tile in tiles.new_bundles(old, new):
            lo = tile.index * TILE_WIDTH - base
            self.dir.write(tile, tiles.encode_bundle(entries[lo : lo + tile.width]))
            count += 1
        return count

    def _grow(self, frontier: _Frontier, new: int, leaf_hashes: bytes | bytearray) -> int:
        """Append leaf hashes to the frontier, writing each new or grown hash tile."""
        old = frontier.size
        rows = frontier.rows
        rows[0] += leaf_hashes
        level = 0
        while tiles.row_size(new, level) >= TILE_WIDTH:
            if level + 1 == len(rows):
                rows.append(bytearray())
            # Every complete 256-hash tile of this row is one hash of the row above
            # (tlog-tiles: a level-L+1 tile row is the level-L tiles' subtree roots).
            base = (tiles.row_size(old, level) // TILE_WIDTH) * TILE_WIDTH
            for t in range(
                tiles.row_size(old, level) // TILE_WIDTH, tiles.row_size(new, level) // TILE_WIDTH
            ):
                off = (t * TILE_WIDTH - base) * HASH_SIZE
                seg: bytes | bytearray = rows[level][off : off + TILE_WIDTH * HASH_SIZE]
                for _ in range(TILE_HEIGHT):
                    seg = parent_row(seg)
                rows[level + 1] += seg
            level += 1
        count = 0
        for tile in tiles.new_tiles(old, new):
            base = (tiles.row_size(old, tile.level) // TILE_WIDTH) * TILE_WIDTH
            off = (tile.index * TILE_WIDTH - base) * HASH_SIZE
            self.dir.write(tile, bytes(rows[tile.level][off : off + tile.width * HASH_SIZE]))
            count += 1
        # Keep only each row's last (incomplete) tile in memory.
        for level, row in enumerate(rows):
            drop = (tiles.row_size(new, level) // TILE_WIDTH) - (
                tiles.row_size(old, level) // TILE_WIDTH
            )
            del row[: drop * TILE_WIDTH * HASH_SIZE]
        frontier.size = new
        return count

    # -- rule files --------------------------------------------------------------------

    def rule_file(self, order_id: int, digest: str) -> Path:
        """Where the sorted canonical rule lines of one order version are published."""
        return self.dir.root / RULES_DIR / f"{order_id}-{digest}.txt"

    def _publish_rule_files(self, datas: list[bytes]) -> None:
        """Write the rule file of every order version the new entries commit to."""
        for data in datas:
            version = entries.order_version(data)
            if version is None:
                continue
            path = self.rule_file(version.order.id, version.rules.digest)
            if path.exists():
                continue
            lines = self.store.order_rule_lines(version.order.id)
            if lines is None:
                continue
            if merkle_root(lines).hex() != version.rules.digest:
                continue  # the order changed since; a later entry carries its digest
            self.dir.write_file(path, b"".join(line + b"\n" for line in lines))
