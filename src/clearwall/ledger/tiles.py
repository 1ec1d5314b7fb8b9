"""C2SP tlog-tiles: tile paths, hash tiles and entry bundles (pure, over bytes).

A tile at level L holds up to 256 consecutive hashes of the tree's row at height 8·L
(C2SP tlog-tiles, "Merkle Tree"); a full tile has 256, a partial one W < 256 and is served
at ``.p/<W>``. Entry bundles hold the same leaves' entries, each with a 16-bit big-endian
length prefix. The index N is written in groups of three decimal digits, all but the last
prefixed with ``x`` (``1234067`` → ``x001/x234/067``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from clearwall.errors import TileError
from clearwall.ledger.merkle import HASH_SIZE, node_hash

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes or entries per full tile
ENTRIES = -1  # the "level" of entry bundles
MAX_ENTRY = 0xFFFF


@dataclass(frozen=True, slots=True, order=True)
class TileID:
    """One tile: ``level`` (``ENTRIES`` for an entry bundle), ``index`` and ``width``."""

    level: int
    index: int
    width: int = TILE_WIDTH

    @property
    def full(self) -> bool:
        """True for a full (immutable) tile."""
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """The tile's path under the log prefix, e.g. ``tile/0/x001/234.p/7``."""
        return tile_path(self.level, self.index, self.width)


def encode_index(n: int) -> str:
    """``n`` as tlog-tiles path segments: 3-digit groups, all but the last with ``x``."""
    if n < 0:
        raise ValueError("tile index must be non-negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The tlog-tiles path of a hash tile (level ≥ 0) or an entry bundle (``ENTRIES``)."""
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} out of range 1..256")
    head = "tile/entries" if level == ENTRIES else f"tile/{level}"
    tail = "" if width == TILE_WIDTH else f".p/{width}"
    return f"{head}/{encode_index(index)}{tail}"


_PATH = re.compile(
    r"^tile/(?P<level>entries|[0-9]|[1-5][0-9]|6[0-3])/"
    r"(?P<index>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?$"
)


def parse_tile_path(path: str) -> TileID:
    """Parse a tile path (without the ``/log/`` prefix); reject anything non-canonical."""
    m = _PATH.match(path)
    if m is None:
        raise TileError(f"not a tile path: {path!r}")
    groups = m["index"].replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":
        raise TileError(f"non-canonical tile index in {path!r}")
    index = int("".join(groups))
    width = TILE_WIDTH if m["width"] is None else int(m["width"])
    if m["width"] is not None and width >= TILE_WIDTH:
        raise TileError(f"partial tile width must be 1..255 in {path!r}")
    level = ENTRIES if m["level"] == "entries" else int(m["level"])
    return TileID(level, index, width)


def row_size(tree_size: int, level: int) -> int:
    """How many complete hashes the row stored at tile level ``level`` has."""
    return tree_size >> (TILE_HEIGHT * level)


def tile_for(tree_size: int, level: int, index: int) -> TileID:
    """The tile number ``index`` at ``level`` as it exists in a tree of ``tree_size``."""
    rows = tree_size if level == ENTRIES else row_size(tree_size, level)
    width = min(TILE_WIDTH, rows - index * TILE_WIDTH)
    if width <= 0:
        raise TileError(f"tile {level}/{index} does not exist at tree size {tree_size}")
    return TileID(level, index, width)


def new_tiles(old_size: int, new_size: int) -> Iterator[TileID]:
    """The hash tiles (levels ≥ 0) that appear or grow when the tree grows old → new."""
    level = 0
    while row_size(new_size, level) > 0:
        old_n, new_n = row_size(old_size, level), row_size(new_size, level)
        if old_n != new_n:
            for n in range(old_n // TILE_WIDTH, new_n // TILE_WIDTH):
                yield TileID(level, n)
            w = new_n % TILE_WIDTH
            if w:
                yield TileID(level, new_n // TILE_WIDTH, w)
        level += 1


def new_bundles(old_size: int, new_size: int) -> Iterator[TileID]:
    """The entry bundles that appear or grow when the log grows old → new."""
    for n in range(old_size // TILE_WIDTH, new_size // TILE_WIDTH):
        yield TileID(ENTRIES, n)
    w = new_size % TILE_WIDTH
    if w and new_size != old_size:
        yield TileID(ENTRIES, new_size // TILE_WIDTH, w)


def split_hashes(data: bytes, width: int) -> list[bytes]:
    """The hashes of a hash tile of ``width``; TileError if the size is wrong."""
    if len(data) != width * HASH_SIZE:
        raise TileError(
            f"hash tile has {len(data)} bytes, expected {width * HASH_SIZE} for width {width}"
        )
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a complete subtree over a power-of-two run of hashes."""
    level = list(hashes)
    if not level or len(level) & (len(level) - 1):
        raise ValueError("subtree_root needs a power-of-two number of hashes")
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry with its 16-bit big-endian length (tlog-tiles)."""
    for e in entries:
        if len(e) > MAX_ENTRY:
            raise TileError(f"entry of {len(e)} bytes does not fit a 16-bit length")
    return b"".join([len(e).to_bytes(2, "big") + e for e in entries])


def decode_bundle(data: bytes, width: int) -> list[bytes]:
    """Split an entry bundle that must hold exactly ``width`` entries."""
    out: list[bytes] = []
    off = 0
    while off < len(data):
        if off + 2 > len(data):
            raise TileError(f"entry bundle truncated in a length prefix at byte {off}")
        n = int.from_bytes(data[off : off + 2], "big")
        if off + 2 + n > len(data):
            raise TileError(f"entry bundle truncated inside entry {len(out)}")
        out.append(data[off + 2 : off + 2 + n])
        off += 2 + n
    if len(out) != width:
        raise TileError(f"entry bundle holds {len(out)} entries, expected {width}")
    return out
