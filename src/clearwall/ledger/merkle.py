"""RFC 6962 / RFC 9162 Merkle tree hashing: leaf and node hashes and the tree head.

Pure functions over bytes. Section numbers refer to RFC 9162 (same tree as RFC 6962).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from itertools import pairwise

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256() (section 2.1.1)


def leaf_hash(entry: bytes) -> bytes:
    """MTH of a single entry: SHA-256(0x00 || entry) (section 2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right) (section 2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash over already-hashed leaves (section 2.1.1).

    Computed over packed rows (``MemoryTree``): complete subtrees level by level, then
    the RFC's split at the largest power of two below n over the right edge.
    """
    if not hashes:
        return EMPTY_ROOT
    return MemoryTree(b"".join(hashes)).root()


try:  # built where OpenSSL's headers are (setup.py); else the Python reference alone
    from clearwall.ledger._merkle import merkle_root as _c_merkle_root
    from clearwall.ledger._merkle import text_root as _c_text_root
except ImportError:  # pragma: no cover - a build without libssl-dev
    _c_merkle_root = None  # type: ignore[assignment]
    _c_text_root = None  # type: ignore[assignment]


def merkle_root(entries: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of entries (section 2.1.1): in C over OpenSSL's
    SHA-256 (``_merkle``: a million rule lines in about a fifth of the time, the rules
    digest of every compile) when it is built, else ``merkle_root_reference``."""
    if _c_merkle_root is None:
        return merkle_root_reference(entries)
    items = entries if isinstance(entries, list | tuple) else list(entries)
    try:
        return _c_merkle_root(items)
    except TypeError:  # bytearray, memoryview entries: the same hash as their bytes
        return _c_merkle_root([bytes(e) for e in items])


def text_root(text: str, prefix: bytes, suffix: bytes) -> bytes | None:
    """The Merkle Tree Hash over the lines ``prefix + value + suffix``, one per
    newline-separated value of ``text`` (section 2.1.1), or None when ``text`` is not
    ASCII or those lines are not in strictly ascending bytewise order (the caller sorts
    and de-duplicates them itself). In C when it is built (``_merkle.text_root``: no
    bytes object per line), else ``text_root_reference``."""
    if _c_text_root is None:
        return text_root_reference(text, prefix, suffix)
    return _c_text_root(text, prefix, suffix)


def text_root_reference(text: str, prefix: bytes, suffix: bytes) -> bytes | None:
    """``text_root`` in Python: the lines made, checked and hashed one by one."""
    if not text.isascii():
        return None
    lines = [prefix + value.encode("ascii") + suffix for value in text.split("\n")]
    if any(a >= b for a, b in pairwise(lines)):
        return None
    return merkle_root_reference(lines)


def merkle_root_reference(entries: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of entries (section 2.1.1), in Python.

    Level by level: adjacent pairs are hashed and an odd last node goes up as it is,
    which gives the RFC's split at the largest power of two below n (the left subtree
    is complete, the right one recurses) without packing rows (about a quarter faster
    over a million rule lines; ``tests/ledger`` checks it against the definition).
    """
    sha = hashlib.sha256
    level = [sha(b"\x00" + e).digest() for e in entries]
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [
            sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


def parent_row(row: bytes | bytearray) -> bytearray:
    """Hash adjacent pairs of a packed row of 32-byte hashes (a trailing odd one is dropped)."""
    sha = hashlib.sha256
    data = bytes(row)
    step = 2 * HASH_SIZE
    return bytearray(
        b"".join(
            [
                sha(b"\x01" + data[off : off + step]).digest()
                for off in range(0, len(data) - step + 1, step)
            ]
        )
    )


class MemoryTree:
    """Every complete subtree hash of a tree, packed in one bytearray per height.

    Implements ``proofs.HashReader``. Row ``h`` holds the hashes of the complete subtrees
    of height ``h`` (32 bytes each, no per-object overhead), so a million leaves take about
    64 MB and any proof is a handful of slices. Appending updates only the right edge.
    """

    __slots__ = ("rows",)

    def __init__(self, leaf_hashes: bytes | bytearray = b"") -> None:
        """Build the tree over packed leaf hashes (a multiple of 32 bytes)."""
        if len(leaf_hashes) % HASH_SIZE:
            raise ValueError("packed leaf hashes must be a multiple of 32 bytes")
        self.rows: list[bytearray] = [bytearray(leaf_hashes)]
        while len(self.rows[-1]) >= 2 * HASH_SIZE:
            self.rows.append(parent_row(self.rows[-1]))

    @classmethod
    def from_entries(cls, entries: Iterable[bytes]) -> MemoryTree:
        """The tree whose leaves are the RFC 6962 leaf hashes of ``entries``."""
        return cls(b"".join(leaf_hash(e) for e in entries))

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self.rows[0]) // HASH_SIZE

    def hash_at(self, height: int, index: int) -> bytes:
        """The hash of the complete subtree ``index`` at ``height``."""
        if height >= len(self.rows) or (index + 1) * HASH_SIZE > len(self.rows[height]):
            raise IndexError(f"no complete subtree at height {height} index {index}")
        off = index * HASH_SIZE
        return bytes(self.rows[height][off : off + HASH_SIZE])

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        return self.hash_at(0, index)

    def append(self, leaf_hashes: bytes | bytearray) -> None:
        """Append packed leaf hashes, computing only the new complete subtrees."""
        if len(leaf_hashes) % HASH_SIZE:
            raise ValueError("packed leaf hashes must be a multiple of 32 bytes")
        self.rows[0] += leaf_hashes
        h = 0
        while len(self.rows[h]) >= 2 * HASH_SIZE:
            below = self.rows[h]
            if h + 1 == len(self.rows):
                self.rows.append(bytearray())
            above = self.rows[h + 1]
            done = len(above) // HASH_SIZE
            start = 2 * done * HASH_SIZE
            above += parent_row(memoryview(below)[start:].tobytes())
            h += 1

    def root(self, size: int | None = None) -> bytes:
        """The Merkle Tree Hash of the first ``size`` leaves (default: all)."""
        from clearwall.ledger.proofs import tree_hash  # proofs imports this module

        return tree_hash(self, self.size if size is None else size)
