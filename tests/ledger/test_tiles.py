"""C2SP tlog-tiles paths and encodings, including the spec's own path example."""

from __future__ import annotations

import pytest

from clearwall.errors import TileError
from clearwall.ledger import tiles
from clearwall.ledger.tiles import ENTRIES, TileID


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 1234067, 256, "tile/0/x001/x234/067"),  # the spec's example
        (0, 1234067, 8, "tile/0/x001/x234/067.p/8"),
        (1, 0, 256, "tile/1/000"),
        (2, 999, 3, "tile/2/999.p/3"),
        (0, 1000, 256, "tile/0/x001/000"),
        (ENTRIES, 67, 256, "tile/entries/067"),
        (ENTRIES, 1234067, 255, "tile/entries/x001/x234/067.p/255"),
    ],
)
def test_paths_roundtrip(level: int, index: int, width: int, path: str) -> None:
    assert tiles.tile_path(level, index, width) == path
    assert tiles.parse_tile_path(path) == TileID(level, index, width)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/67",
        "tile/0/x000/067",
        "tile/0/067.p/256",
        "tile/0/067.p/0",
        "tile/0/067.p/007",
        "tile/64/000",
        "tile/0/1/000",
        "tile/entries/x1/000",
        "tile/0/../000",
        "tile//000",
    ],
)
def test_bad_paths(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_tile_path(path)


def test_new_tiles_matches_growth() -> None:
    assert list(tiles.new_tiles(0, 1)) == [TileID(0, 0, 1)]
    assert list(tiles.new_tiles(255, 256)) == [TileID(0, 0), TileID(1, 0, 1)]
    assert list(tiles.new_tiles(256, 256)) == []
    got = list(tiles.new_tiles(100, 70000))
    assert TileID(0, 0) in got and TileID(0, 273, 112) in got and TileID(1, 1, 17) in got
    assert list(tiles.new_bundles(10, 300)) == [TileID(ENTRIES, 0), TileID(ENTRIES, 1, 44)]


def test_bundles() -> None:
    data = tiles.encode_bundle([b"a", b"", b"xyz"])
    assert data == b"\x00\x01a\x00\x00\x00\x03xyz"
    assert tiles.decode_bundle(data, 3) == [b"a", b"", b"xyz"]
    for bad, width in ((data[:-1], 3), (data, 2), (data + b"\x00", 4)):
        with pytest.raises(TileError):
            tiles.decode_bundle(bad, width)
    with pytest.raises(TileError):
        tiles.encode_bundle([b"x" * 65536])
    with pytest.raises(TileError):
        tiles.split_hashes(b"\x00" * 33, 1)
