"""Hypothesis over every ledger parser: round-trips hold, garbage fails with our errors only."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.errors import LedgerError
from clearwall.ledger import tiles
from clearwall.ledger.checkpoint import Checkpoint, parse_checkpoint
from clearwall.ledger.nameproof import verify_bundle
from clearwall.ledger.note import open_note
from clearwall.ledger.signing import generate_signer, parse_vkey

SIGNER = generate_signer("clearwall.example/log", b"\x05" * 32)
ORIGIN = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\n"),
    min_size=1,
    max_size=40,
)


@given(st.integers(-1, 63), st.integers(0, 10**12), st.integers(1, 256))
def test_tile_path_roundtrip(level: int, index: int, width: int) -> None:
    path = tiles.tile_path(level, index, width)
    assert tiles.parse_tile_path(path) == tiles.TileID(level, index, width)


@given(st.text(max_size=60))
def test_tile_path_garbage(text: str) -> None:
    try:
        tid = tiles.parse_tile_path(text)
    except LedgerError:
        return
    assert tid.path == text  # anything accepted is canonical


@given(ORIGIN, st.integers(0, 2**63), st.binary(min_size=32, max_size=32))
def test_checkpoint_roundtrip(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    assert parse_checkpoint(cp.text()) == cp


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_note_and_checkpoint_garbage(text: str) -> None:
    for parse in (parse_checkpoint, lambda t: open_note(t, [SIGNER.verifier]), parse_vkey):
        with contextlib.suppress(LedgerError):
            parse(text)


@given(st.binary(max_size=300), st.integers(0, 20))
def test_bundle_decoder_garbage(data: bytes, width: int) -> None:
    try:
        out = tiles.decode_bundle(data, width)
    except LedgerError:
        return
    assert tiles.encode_bundle(out) == data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(json_values)
def test_name_bundle_garbage_is_a_verification_error(value: object) -> None:
    with contextlib.suppress(LedgerError):
        verify_bundle(value if isinstance(value, dict) else {"x": value}, SIGNER.verifier)
    json.dumps(value)
