"""The public log's directory: tiles, entry bundles, rule files and the checkpoint, as files."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from clearwall.errors import TileError
from clearwall.ledger import tiles
from clearwall.ledger.merkle import HASH_SIZE
from clearwall.ledger.tiles import TileID

CHECKPOINT_FILE = "checkpoint"
RULES_DIR = "rules"
TMP_DIR = ".tmp"  # where every file is written before it is renamed into place


def _write_atomic(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``path`` whole or not at all: a temporary file in ``tmp_dir`` (the same file
    system) renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class TileDir:
    """A tiles directory: reads and writes tiles by ``TileID`` (the only file access)."""

    def __init__(self, root: Path) -> None:
        """Tiles live under ``root/tile/...``, the checkpoint at ``root/checkpoint``."""
        self.root = root

    def path(self, tile: TileID) -> Path:
        """File path of a tile."""
        return self.root / tile.path

    def write(self, tile: TileID, data: bytes) -> None:
        """Write a tile atomically."""
        self.write_file(self.path(tile), data)

    def write_file(self, path: Path, data: bytes) -> None:
        """Write a file under the root atomically (its temporary file in ``.tmp/``)."""
        _write_atomic(path, data, self.root / TMP_DIR)

    def clear_tmp(self) -> None:
        """Remove the temporary files of writers killed mid-write (call under the lock:
        then no live writer has one)."""
        with contextlib.suppress(FileNotFoundError):
            for tmp in (self.root / TMP_DIR).iterdir():
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def read(self, tile: TileID) -> bytes:
        """Read a tile; a wider version of the same tile serves too (hashes never change).

        Raises TileError when no version at least ``tile.width`` wide exists.
        """
        candidates = [tile, TileID(tile.level, tile.index)]
        for cand in candidates:
            with contextlib.suppress(FileNotFoundError):
                data = self.path(cand).read_bytes()
                return self._prefix(tile, cand, data)
        part_dir = self.path(TileID(tile.level, tile.index)).with_name(
            self.path(TileID(tile.level, tile.index)).name + ".p"
        )
        if part_dir.is_dir():
            widths = sorted(int(p.name) for p in part_dir.iterdir() if p.name.isdigit())
            for w in widths:
                if w > tile.width:
                    cand = TileID(tile.level, tile.index, w)
                    return self._prefix(tile, cand, self.path(cand).read_bytes())
        raise TileError(f"tile {tile.path} is missing")

    @staticmethod
    def _prefix(want: TileID, got: TileID, data: bytes) -> bytes:
        if want.width == got.width:
            return data
        if want.level == tiles.ENTRIES:
            entries = tiles.decode_bundle(data, got.width)
            return tiles.encode_bundle(entries[: want.width])
        tiles.split_hashes(data, got.width)  # checks the length
        return data[: want.width * HASH_SIZE]

    def read_checkpoint(self) -> str | None:
        """The published signed checkpoint note, if any."""
        try:
            return (self.root / CHECKPOINT_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_checkpoint(self, note: str) -> None:
        """Publish a signed checkpoint (last step of a sync)."""
        self.write_file(self.root / CHECKPOINT_FILE, note.encode("utf-8"))
