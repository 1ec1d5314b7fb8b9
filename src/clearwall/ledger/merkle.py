"""RFC 6962 / RFC 9162 Merkle tree hashing: leaf and node hashes and the tree head.

Pure functions over bytes. Section numbers refer to RFC 9162 (same tree as RFC 6962).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256() (section 2.1.1)


def leaf_hash(entry: bytes) -> bytes:
    """MTH of a single entry: SHA-256(0x00 || entry) (section 2.1.1)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Interior node: SHA-256(0x01 || left || right) (section 2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash over already-hashed leaves.

    Built bottom-up: combining adjacent pairs level by level and carrying an odd last
    node up unchanged gives exactly the RFC's recursive split at the largest power of two
    smaller than n.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(entries: Iterable[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of entries (section 2.1.1)."""
    return root_from_leaf_hashes([leaf_hash(e) for e in entries])
