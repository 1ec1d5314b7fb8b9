"""The C name index (``clearwall.policy._nameindex``) against plain Python: its SipHash-1-3
against a reference implementation, ``deepest`` against a suffix walk over a ``set``, its
image against one built in Python (32-bit remainders below the directory bits), and the
snapshot's verdicts when the index is wrong on purpose (forged entries, a real collision of
remainders) or given malformed input."""

from __future__ import annotations

import gc
import json
import os
import struct
import weakref
from array import array
from bisect import bisect_left
from collections.abc import Iterable, MutableMapping
from functools import cache
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matcher_builders import JURISDICTIONS, NOW, order, summary

from clearwall.errors import SnapshotError
from clearwall.model import ALLOWED
from clearwall.policy import reference
from clearwall.policy._nameindex import KEY_SIZE, MAX_NAME, Memo, NameIndex, build, fingerprint
from clearwall.policy.compiler import name_key
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.policy.snapshotfile import INDEX_FILE, META_FILE

MASK = (1 << 64) - 1
MAGIC = b"CWNAMEX2"
HEADER = 64


def siphash(key: bytes, data: bytes, c: int = 1, d: int = 3) -> int:
    """SipHash-c-d as the paper states it (Aumasson and Bernstein, 2012)."""

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & MASK

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D]
    v += [k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & MASK
            v[1] = rotl(v[1], 13) ^ v[0]
            v[0] = rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & MASK
            v[3] = rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & MASK
            v[3] = rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & MASK
            v[1] = rotl(v[1], 17) ^ v[2]
            v[2] = rotl(v[2], 32)

    whole = len(data) - len(data) % 8
    words = [int.from_bytes(data[i : i + 8], "little") for i in range(0, whole, 8)]
    words.append(((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little"))
    for m in words:
        v[3] ^= m
        rounds(c)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(d)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def test_reference_siphash_gives_the_published_2_4_vectors() -> None:
    # The paper's test vectors: key 00..0f, messages 00, 00 01, ... (first three).
    key = bytes(range(16))
    assert siphash(key, b"", 2, 4) == 0x726FDB47DD0E0E31
    assert siphash(key, bytes(range(1)), 2, 4) == 0x74F839C593DC67FD
    assert siphash(key, bytes(range(15)), 2, 4) == 0xA129CA6149BE45E5


@given(data=st.binary(max_size=300), key=st.binary(min_size=16, max_size=16))
def test_fingerprint_is_siphash_1_3(data: bytes, key: bytes) -> None:
    assert fingerprint(data, key) == siphash(key, data)


# -- deepest() against a suffix walk over a set --------------------------------------------

labels = st.sampled_from(["a", "b", "c", "com", "x-1", "_s", ""])
ascii_names = st.lists(labels, min_size=1, max_size=5).map(".".join)
listed_names = ascii_names | st.sampled_from(["ü.a", "b.ü", "l" * 300, "a.l" + "l" * 260])


def python_deepest(listed: set[str], name: str) -> int:
    """Offset of the longest suffix of ``name`` (itself, or after a dot) that is listed."""
    starts = [0] + [i + 1 for i, c in enumerate(name) if c == "."]
    return next((start for start in starts if name[start:] in listed), -1)


def keys_blob(names: Iterable[str]) -> bytes:
    return b"".join(name_key(n).encode() + b"\n" for n in names)


def index_of(names: set[str], key: bytes) -> NameIndex:
    return NameIndex(build(keys_blob(names), key), key)


class Kept:
    """``deepest`` as the image can answer it: a suffix walk over the set of what the image
    keeps of each listed name, its fingerprint's top b + 32 bits. Exact where the walk over
    the names themselves is off by a false positive (about one per 2^28 probes)."""

    def __init__(self, names: Iterable[str], key: bytes) -> None:
        names = [n for n in names if n.isascii() and len(n) <= MAX_NAME]
        image = build(keys_blob(names), key)
        self.index = NameIndex(image, key)
        self.key = key
        self.bits: int = struct.unpack("=Q", image[16:24])[0]
        self.kept = {self.of(n) for n in names}

    def of(self, name: str) -> int:
        return fingerprint(name.encode(), self.key) >> (32 - self.bits)

    def deepest(self, name: str) -> int:
        starts = [0] + [i + 1 for i, c in enumerate(name) if c == "."]
        return next((start for start in starts if self.of(name[start:]) in self.kept), -1)


def check_deepest(kept: Kept, listed: set[str], query: str) -> None:
    """The index answers as the kept bits do, and so as the names do but for false
    positives: it may report a deeper suffix (or one where there is none), never miss."""
    got = kept.index.deepest(query)
    assert got == kept.deepest(query), query
    expected = python_deepest(listed, query)
    assert got == expected or (got >= 0 and (expected < 0 or got < expected)), query


def python_image(fingerprints: Iterable[int]) -> bytes:
    """The image ``build`` should make of these fingerprints, as the C file's top comment
    states it: b directory bits for 8 to 16 distinct fingerprints per bucket; per entry the
    32 bits right below the top b, one entry per distinct top b + 32 bits, in order."""
    distinct = sorted(set(fingerprints))
    bits = 0
    while len(distinct) >> (bits + 1) >= 8:
        bits += 1
    prefixes = sorted({fp >> (32 - bits) for fp in distinct})  # bucket, then remainder
    remainders = array("I", (prefix & 0xFFFFFFFF for prefix in prefixes))
    directory = array("I", (bisect_left(prefixes, i << 32) for i in range((1 << bits) + 1)))
    header = MAGIC + struct.pack("=QQ", len(prefixes), bits) + bytes(HEADER - 24)
    return header + remainders.tobytes() + directory.tobytes()


COLLISION_KEY = bytes(range(100, 116))


@cache
def remainder_collision() -> tuple[str, str]:
    """Two names whose fingerprints under COLLISION_KEY differ but share their top 32 bits:
    in an index with no directory bits (under 16 names) they have the same remainder. A
    birthday search, about 80k fingerprints."""
    seen: dict[int, str] = {}
    for i in range(1 << 20):
        name = f"n{i}.test"
        fp = fingerprint(name.encode(), COLLISION_KEY)
        other = seen.setdefault(fp >> 32, name)
        if other != name and fingerprint(other.encode(), COLLISION_KEY) != fp:
            return other, name
    raise AssertionError("no collision of the top 32 bits in 2^20 names")


@settings(max_examples=300)
@given(
    listed=st.sets(listed_names, max_size=40),
    queries=st.lists(ascii_names, max_size=30),
    key=st.binary(min_size=16, max_size=16),
)
def test_deepest_equals_a_suffix_walk(listed: set[str], queries: list[str], key: bytes) -> None:
    kept = Kept(listed, key)
    index = kept.index
    # Only ASCII names up to MAX_NAME are indexed: nothing else can be an ASCII query's suffix.
    indexable = {n for n in listed if n.isascii() and len(n) <= MAX_NAME}
    assert len(index) == len(kept.kept) <= len(indexable)
    for query in [*queries, *listed, *(f"www.{n}" for n in listed)]:
        if query.isascii() and len(query) <= MAX_NAME:
            check_deepest(kept, indexable, query)
        else:
            with pytest.raises(ValueError):
                index.deepest(query)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 100, 5000])
def test_deepest_over_generated_sets(size: int) -> None:
    names = {f"h{i}.n{i % 97}.example" for i in range(size)} | {"tld"}
    kept = Kept(names, os.urandom(KEY_SIZE))
    for i in range(0, 2 * size + 50, 3):
        for query in (f"h{i}.n{i % 97}.example", f"w.h{i}.n{i % 97}.example", f"h{i}.tld"):
            check_deepest(kept, names, query)


def test_deepest_edge_cases() -> None:
    index = index_of({"com", "example.com", "a..b"}, os.urandom(KEY_SIZE))
    assert index.deepest("com") == 0
    assert index.deepest("example.com") == 0
    assert index.deepest("www.example.com") == 4
    assert index.deepest("www.other.com") == 10
    assert index.deepest("notexample.com") == 11  # whole labels only
    assert index.deepest("x.a..b") == 2
    assert index.deepest("..b") == -1
    assert index.deepest("") == -1
    assert index.deepest(".") == -1
    assert index.deepest("com.") == -1  # "com." and "" are not listed
    assert index.deepest("." * 249 + "com") == 249  # more suffixes than one batch
    assert index.deepest("a." * 125 + "com") == 250  # 253 characters, the most indexed
    empty = index_of(set(), os.urandom(KEY_SIZE))
    assert len(empty) == 0 and empty.deepest("com") == -1


# -- the image layout ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 15, 16, 31, 32, 100, 5000, 40000])
def test_image_is_the_python_layout(size: int) -> None:
    names = [f"h{i}.n{i % 97}.example" for i in range(size)]
    key = os.urandom(KEY_SIZE)
    image = build(keys_blob(names + names[:3]), key)  # duplicates are dropped
    assert image == python_image(fingerprint(n.encode(), key) for n in names)
    # fewer only if two names share their top b + 32 bits, about size^2 / 2^(b + 33)
    assert len(NameIndex(image, key)) == struct.unpack("=Q", image[8:16])[0] <= size


def test_equal_remainders_are_one_entry_and_both_names_are_found() -> None:
    first, second = remainder_collision()
    assert fingerprint(first.encode(), COLLISION_KEY) != fingerprint(second.encode(), COLLISION_KEY)
    names = [first, second, "a.example", "b.example"]
    image = build(keys_blob(names), COLLISION_KEY)
    assert image == python_image(fingerprint(n.encode(), COLLISION_KEY) for n in names)
    index = NameIndex(image, COLLISION_KEY)
    assert len(index) == 3
    for name in names:
        assert index.deepest(name) == 0
        assert index.deepest(f"www.{name}") == 4


def test_a_remainder_collision_is_a_false_positive() -> None:
    first, second = remainder_collision()
    index = index_of({first, "example"}, COLLISION_KEY)
    assert index.deepest(second) == 0  # not listed, but its remainder is
    assert index.deepest(f"a.{second}") == 2
    assert index.deepest("other.test") == -1


def test_the_index_takes_about_four_bytes_per_name() -> None:
    n = 200_000
    image = build(keys_blob(f"h{i}.n{i % 97}.example" for i in range(n)), COLLISION_KEY)
    count, bits = struct.unpack("=QQ", image[8:24])
    assert (count, bits) == (n, 14)  # no two share their top 46 bits under this key
    assert len(image) == HEADER + 4 * n + 4 * ((1 << bits) + 1)
    assert len(image) <= HEADER + 4.6 * n


# -- malformed input -------------------------------------------------------------------------


def test_malformed_input_raises_cleanly() -> None:
    key = os.urandom(KEY_SIZE)
    image = build(b"moc.elpmaxe.\n", key)
    index = NameIndex(image, key)
    with pytest.raises(TypeError):
        index.deepest(b"example.com")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        index.deepest(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ASCII"):
        index.deepest("bücher.example.com")
    with pytest.raises(ValueError, match="longer"):
        index.deepest("a" * (MAX_NAME + 1) + ".example.com")
    with pytest.raises(ValueError):
        NameIndex(image, key[:8])
    with pytest.raises(ValueError):
        NameIndex(b"not an index image at all, not even close to one" * 2, key)
    with pytest.raises(ValueError):
        NameIndex(image[:-4], key)
    with pytest.raises(ValueError):
        NameIndex(image[1:], key)  # not 8-byte aligned, and no magic
    with pytest.raises(ValueError, match="not a name index"):
        NameIndex(b"CWNAMEX1" + image[8:], key)  # the earlier 64-bit layout's magic
    for bits in (33, 64, MASK):  # bits + 32 must fit in a fingerprint
        header = MAGIC + struct.pack("=QQ", 0, bits) + bytes(HEADER - 24)
        with pytest.raises(ValueError, match="bad size"):
            NameIndex(header + bytes(4 * 2), key)
    with pytest.raises(TypeError):
        NameIndex("image", key)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fingerprint(b"x", b"")
    with pytest.raises(TypeError):
        build("moc.\n", key)  # type: ignore[arg-type]
    # Lines that are not trie keys (no trailing dot, unterminated) are left out.
    assert len(NameIndex(build(b"moc\n\nmoc.elpmaxe", key), key)) == 0


@settings(max_examples=200)
@given(
    count=st.integers(0, 40),
    bits=st.integers(0, 5),
    body=st.binary(min_size=0, max_size=4 * 40 + 4 * 33),
    names=st.lists(ascii_names, max_size=10),
)
def test_damaged_images_never_crash(count: int, bits: int, body: bytes, names: list[str]) -> None:
    """Any bytes with a well-formed header: unsorted remainders, a directory pointing
    anywhere. Lookups stay in bounds and return an offset or -1."""
    size = 4 * count + 4 * ((1 << bits) + 1)
    body = (body * (size // max(1, len(body)) + 1))[:size] if body else bytes(size)
    image = MAGIC + struct.pack("=QQ", count, bits) + bytes(HEADER - 24) + body
    index = NameIndex(image, bytes(KEY_SIZE))
    for name in names:
        assert -1 <= index.deepest(name) <= len(name)


# -- Memo against a dict ----------------------------------------------------------------------

memo_keys = st.sampled_from(["a", "b", "a.b", "", "ü.de", "x" * 300]) | st.text(max_size=12)
memo_ops = st.lists(
    st.tuples(st.sampled_from(["set", "get", "clear"]), memo_keys, st.integers()), max_size=200
)


@settings(max_examples=200)
@given(ops=memo_ops)
def test_memo_behaves_like_a_dict(ops: list[tuple[str, str, int]]) -> None:
    index = index_of({"a"}, os.urandom(KEY_SIZE))
    memo = cast("MutableMapping[str, object]", Memo(index))  # any values, here ints
    model: dict[str, object] = {}
    for op, key, value in ops:
        key = key.encode("utf-8", "replace").decode()  # no lone surrogates: not UTF-8
        if op == "set":
            memo[key] = value
            model[key] = value
        elif op == "clear":
            memo.clear()
            model.clear()
        assert memo.get(key) == model.get(key)
        assert len(memo) == len(model)
    assert sorted(memo) == sorted(memo.keys()) == sorted(model)
    for name, stored in model.items():
        assert memo[name] == stored


def test_memo_refuses_what_it_cannot_hold() -> None:
    memo = Memo(index_of(set(), os.urandom(KEY_SIZE)))
    memo["x.com"] = ALLOWED
    assert memo.get("x.com") is ALLOWED and memo.get("y.com") is None
    with pytest.raises(KeyError):
        memo["y.com"]
    with pytest.raises(TypeError):
        memo[b"x.com"] = ALLOWED  # type: ignore[index]
    with pytest.raises(TypeError):
        memo.get(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        del memo["x.com"]  # type: ignore[attr-defined]
    with pytest.raises(UnicodeEncodeError):
        memo["\udc80.com"] = ALLOWED
    with pytest.raises(TypeError):
        Memo("index")  # type: ignore[arg-type]
    many = cast("MutableMapping[str, object]", Memo(index_of(set(), os.urandom(KEY_SIZE))))
    for i in range(5000):  # grows past its first tables
        many[f"n{i}.com"] = i
    assert len(many) == 5000 and all(many[f"n{i}.com"] == i for i in range(5000))


# -- the index in a snapshot ------------------------------------------------------------------

POLICY = [
    order(1, "de", ["subtree example", "exact only.org", "wildcard w.net"]),
    order(2, "de", ["allow-exact ok.example"]),
]
QUERIES = [
    "example",
    "a.example",
    "ok.example",
    "x.ok.example",
    "only.org",
    "a.only.org",
    "w.net",
    "a.w.net",
    "other.org",
]


def test_saved_index_holds_the_fingerprints_of_the_listed_names(tmp_path: Path) -> None:
    compiled = PolicySnapshot.compile(POLICY, JURISDICTIONS)
    compiled.save(tmp_path / "snap")
    real = (tmp_path / "snap").resolve()
    key = bytes.fromhex(json.loads((real / META_FILE).read_text())["index_key"])
    image = (real / INDEX_FILE).read_bytes()
    assert image[:8] == MAGIC
    count, bits = struct.unpack("=QQ", image[8:24])
    assert (count, bits) == (4, 0)  # one bucket: a remainder is a fingerprint's top 32 bits
    remainders = array("I", image[HEADER : HEADER + 4 * count])
    listed = ["example", "ok.example", "only.org", "w.net"]
    assert list(remainders) == sorted(fingerprint(n.encode(), key) >> 32 for n in listed)
    assert image == python_image(fingerprint(n.encode(), key) for n in listed)

    loaded = PolicySnapshot.load(tmp_path / "snap")
    for query in [*QUERIES, "www.a.example", "com"]:
        expected = python_deepest(set(listed), query)
        assert loaded._index.deepest(query) == compiled._index.deepest(query) == expected


def test_each_compile_draws_a_new_key_without_changing_the_version(tmp_path: Path) -> None:
    first = PolicySnapshot.compile(POLICY, JURISDICTIONS)
    second = PolicySnapshot.compile(POLICY, JURISDICTIONS)
    first.save(tmp_path / "one")
    second.save(tmp_path / "two")
    keys = {
        json.loads((tmp_path / name / META_FILE).read_text())["index_key"]
        for name in ("one", "two")
    }
    assert len(keys) == 2
    assert first.version == second.version


def forge_collisions(path: Path, extra: list[str]) -> bytes:
    """Rewrite a saved snapshot's index so that it also lists ``extra``: entries matching
    names the trie does not hold, as a collision would. Returns the key."""
    real = path.resolve()
    key = bytes.fromhex(json.loads((real / META_FILE).read_text())["index_key"])
    names = ["example", "ok.example", "only.org", "w.net", *extra]
    (real / INDEX_FILE).write_bytes(build(keys_blob(names), key))
    return key


def rekey(path: Path, listed: list[str], key: bytes) -> None:
    """Rewrite a saved snapshot's index of ``listed`` (its names) under ``key``."""
    real = path.resolve()
    meta = json.loads((real / META_FILE).read_text())
    meta["index_key"] = key.hex()
    (real / META_FILE).write_text(json.dumps(meta))
    (real / INDEX_FILE).write_bytes(build(keys_blob(listed), key))


def test_a_fingerprint_collision_never_changes_a_verdict(tmp_path: Path) -> None:
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(tmp_path / "snap")
    ghosts = ["ghost.example", "ghost.org", "only.ghost.org", "a.only.org", "w.w.net"]
    forge_collisions(tmp_path / "snap", ghosts)
    snapshot = PolicySnapshot.load(tmp_path / "snap")
    for ghost in ghosts:
        assert snapshot._index.deepest(ghost) == 0  # the index claims each is listed
    queries = [*QUERIES, *ghosts, *(f"x.{g}" for g in ghosts)]
    for _ in range(2):  # cold memos, then warm ones
        for name in queries:
            for jurisdiction in ("de", "fr"):
                expected = reference.match(POLICY, name, jurisdiction, NOW)
                got = snapshot.match(name, jurisdiction, NOW)
                assert summary(got) == summary(expected), name
    assert snapshot.match("ghost.org", "de", NOW) is ALLOWED
    assert snapshot.match("x.ghost.org", "de", NOW) is ALLOWED
    assert snapshot.match("ghost.example", "de", NOW).blocked  # below example: blocked
    # Memos are only ever written under listed names, whatever the index claimed.
    view = snapshot._views["de"]
    assert set(view.exact) | set(view.below) <= {"example", "ok.example", "only.org", "w.net"}


def test_a_remainder_collision_is_settled_by_the_trie(tmp_path: Path) -> None:
    """Not forged: a listed name and an unlisted one whose fingerprints differ but whose
    remainders are equal, so the index cannot tell them apart."""
    listed, ghost = remainder_collision()
    policy = [*POLICY, order(3, "de", [f"subtree {listed}"])]
    PolicySnapshot.compile(policy, JURISDICTIONS).save(tmp_path / "snap")
    rekey(tmp_path / "snap", ["example", "ok.example", "only.org", "w.net", listed], COLLISION_KEY)
    snapshot = PolicySnapshot.load(tmp_path / "snap")
    assert snapshot._index.deepest(ghost) == 0  # the index claims the ghost is listed
    assert snapshot._index.deepest(f"x.{ghost}") == 2
    queries = [*QUERIES, listed, f"x.{listed}", ghost, f"x.{ghost}", f"a.b.{ghost}"]
    for _ in range(2):  # cold memos, then warm ones
        for name in queries:
            for jurisdiction in ("de", "fr"):
                expected = reference.match(policy, name, jurisdiction, NOW)
                got = snapshot.match(name, jurisdiction, NOW)
                assert summary(got) == summary(expected), name
    assert snapshot.match(f"x.{listed}", "de", NOW).blocked
    assert snapshot.match(ghost, "de", NOW) is ALLOWED
    assert snapshot.match(f"x.{ghost}", "de", NOW) is ALLOWED
    view = snapshot._views["de"]
    assert ghost not in set(view.exact) | set(view.below)


def test_an_index_of_the_earlier_layout_fails_to_load(tmp_path: Path) -> None:
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(tmp_path / "snap")
    index_file = (tmp_path / "snap").resolve() / INDEX_FILE
    # CWNAMEX1: whole 64-bit fingerprints, 4 of them, one bucket
    old = b"CWNAMEX1" + struct.pack("=QQ", 4, 0) + bytes(40) + bytes(32) + bytes(8)
    index_file.write_bytes(old)
    with pytest.raises(SnapshotError, match="not a name index"):
        PolicySnapshot.load(tmp_path / "snap")


def test_names_the_index_does_not_cover_are_asked_of_the_trie() -> None:
    snapshot = PolicySnapshot.compile(
        [order(1, "de", ["subtree example.com", "exact bücher.de"])], JURISDICTIONS
    )
    long_name = "a" * 250 + ".example.com"
    for name in ("bücher.example.com", long_name, "bücher.de"):
        assert snapshot.match(name, "de", NOW).blocked, name
    assert snapshot.match("x.bücher.de", "de", NOW) is ALLOWED
    assert snapshot.match("b" * 300, "de", NOW) is ALLOWED


def test_match_arguments() -> None:
    snapshot = PolicySnapshot.compile([order(1, "de", ["subtree x.com"])], JURISDICTIONS)
    by_keyword = snapshot.match(name="a.x.com", jurisdiction="de", now=NOW)
    assert by_keyword is snapshot.match("a.x.com", "de", NOW) is snapshot.match("a.x.com", "de")
    assert by_keyword.blocked
    assert snapshot.match("a.x.com", "de", int(NOW)) is by_keyword
    with pytest.raises(TypeError):
        snapshot.match(b"x.com", "de")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        snapshot.match("x.com")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        snapshot.match("x.com", "de", NOW, 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        snapshot.match("x.com", "de", when=NOW)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        snapshot.match("x.com", "de", name="x.com")  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.match("x.com", "de", "noon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        snapshot.match("x.com", ["de"])  # type: ignore[arg-type]


def test_damaged_index_file_fails_to_load(tmp_path: Path) -> None:
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(tmp_path / "snap")
    index_file = (tmp_path / "snap").resolve() / INDEX_FILE
    index_file.write_bytes(index_file.read_bytes()[:-1])
    with pytest.raises(SnapshotError, match="name index"):
        PolicySnapshot.load(tmp_path / "snap")
    index_file.unlink()
    with pytest.raises(SnapshotError, match="cannot load"):
        PolicySnapshot.load(tmp_path / "snap")


def test_a_dropped_snapshot_is_freed_without_the_cycle_collector(tmp_path: Path) -> None:
    # Servers gc.freeze() loaded snapshots: one kept alive by a reference cycle would
    # never be collected, nor its mapped files released.
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(tmp_path / "snap")
    snapshot = PolicySnapshot.load(tmp_path / "snap")
    assert snapshot.match("a.example", "de", NOW).blocked
    gone = weakref.ref(snapshot)
    gc.disable()
    try:
        del snapshot
        assert gone() is None
    finally:
        gc.enable()
