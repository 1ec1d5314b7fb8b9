"""Hash readers over the published tiles (``proofs.HashReader`` for proofs and audits)."""

from __future__ import annotations

from clearwall.errors import VerificationError
from clearwall.ledger import tiles
from clearwall.ledger.merkle import HASH_SIZE, MemoryTree, parent_row
from clearwall.ledger.tiledir import TileDir
from clearwall.ledger.tiles import TILE_HEIGHT, TILE_WIDTH


class TileHashReader:
    """``proofs.HashReader`` over the hash tiles of a tree of a given size.

    A subtree of height 8·L + r is the root of 2^r consecutive hashes of the level-L tile
    row (C2SP tlog-tiles, "Merkle Tree"); tiles and computed subtree roots are cached.
    """

    def __init__(
        self,
        read_tile: TileDir,
        size: int,
        shared: dict[tuple[int, int], bytes] | None = None,
        upper: MemoryTree | None = None,
    ) -> None:
        """Read tiles through ``read_tile`` for a tree of ``size`` leaves.

        ``shared`` caches complete-subtree hashes across readers: such a hash never
        changes once the subtree is complete, whatever the tree size.
        """
        self.tiles = read_tile
        self.size = size
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._hashes: dict[tuple[int, int], bytes] = {} if shared is None else shared
        self._rows: dict[tuple[int, int], list[bytes | bytearray]] = {}
        # Optional tree over the level-1 tile row (height 8 and up), so a proof hashes
        # only inside the leaf's own level-0 tile.
        self._upper = upper

    def _tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        data = self._tiles.get(key)
        if data is None:
            tile = tiles.tile_for(self.size, level, index)
            data = self.tiles.read(tile)
            if len(data) != tile.width * HASH_SIZE:
                tiles.split_hashes(data, tile.width)  # raises TileError naming the sizes
            self._tiles[key] = data
        return data

    def _tile_rows(self, level: int, index: int) -> list[bytes | bytearray]:
        """The tile's hashes and every row above them inside the tile (8 bulk passes)."""
        key = (level, index)
        rows = self._rows.get(key)
        if rows is None:
            rows = [self._tile(level, index)]
            for _ in range(TILE_HEIGHT - 1):
                rows.append(parent_row(rows[-1]))
            self._rows[key] = rows
        return rows

    def hash_at(self, height: int, index: int) -> bytes:
        """Hash of the complete subtree ``index`` at ``height``."""
        key = (height, index)
        cached = self._hashes.get(key)
        if cached is not None:
            return cached
        if (index + 1) << height > self.size:
            raise VerificationError(
                f"no complete subtree at height {height} index {index} in size {self.size}"
            )
        upper = self._upper
        if upper is not None and height >= TILE_HEIGHT:
            up = height - TILE_HEIGHT
            if (index + 1) << up <= upper.size:
                return upper.hash_at(up, index)
        level, r = divmod(height, TILE_HEIGHT)
        first = index << r
        rows = self._tile_rows(level, first // TILE_WIDTH)
        # Row r of the tile holds its complete height-(8L + r) subtrees, left to right.
        off = ((first % TILE_WIDTH) >> r) * HASH_SIZE
        result = bytes(rows[r][off : off + HASH_SIZE])
        if len(self._hashes) > 1_000_000:
            self._hashes.clear()  # bound memory; everything is recomputable from tiles
        self._hashes[key] = result
        return result
