"""RFC 9162 section 2.1 Merkle proofs: subtree hashes, inclusion and consistency proofs.

Pure functions over a ``HashReader`` (the hashes of complete, aligned subtrees) and over
32-byte hashes. Generation follows the recursive definitions PATH (2.1.3.1) and SUBPROOF
(2.1.4.1); verification follows the iterative algorithms of 2.1.3.2 and 2.1.4.2, which
are what an independent verifier (Go's sumdb/tlog, Sigsum) implements too, so the proofs
are byte-compatible with RFC 6962 audit paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clearwall.errors import VerificationError
from clearwall.ledger.merkle import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash


class HashReader(Protocol):
    """Source of the hash of the complete subtree at ``height`` number ``index``.

    The subtree covers leaves ``[index << height, (index + 1) << height)``; callers only
    ask for subtrees that are complete in the tree they hold.
    """

    def hash_at(self, height: int, index: int) -> bytes:
        """The Merkle Tree Hash of the complete subtree (height 0 = leaf hash)."""
        ...


def largest_power_of_two_below(n: int) -> int:
    """k, the largest power of two with k < n (n > 1), the RFC's split point (2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(reader: HashReader, lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for any range the RFC recursion produces (``lo`` aligned to its split).

    A complete aligned range is read directly; otherwise the range is split at the largest
    power of two below its size (2.1.1), whose left part is complete.
    """
    n = hi - lo
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and lo % n == 0:
        return reader.hash_at(n.bit_length() - 1, lo // n)
    k = largest_power_of_two_below(n)
    return node_hash(subtree_hash(reader, lo, lo + k), subtree_hash(reader, lo + k, hi))


def tree_hash(reader: HashReader, size: int) -> bytes:
    """The root hash of the tree of ``size`` leaves."""
    return subtree_hash(reader, 0, size)


def inclusion_proof(reader: HashReader, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, leaf-side sibling first."""
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is not in a tree of size {size}")
    out: list[bytes] = []
    lo, hi = 0, size
    # Walk down from the root, remembering siblings; the RFC lists them leaf-first.
    while hi - lo > 1:
        k = largest_power_of_two_below(hi - lo)
        if index < lo + k:
            out.append(subtree_hash(reader, lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree_hash(reader, lo, lo + k))
            lo = lo + k
    out.reverse()
    return out


def consistency_proof(reader: HashReader, old: int, new: int) -> list[bytes]:
    """PROOF(old, D[0:new]) of RFC 9162 section 2.1.4.1 (empty when old is 0 or old == new)."""
    if not 0 <= old <= new:
        raise VerificationError(f"no consistency proof from size {old} to size {new}")
    if old == 0 or old == new:
        return []
    out: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    # SUBPROOF(m, D[lo:hi], b), unrolled: each step appends one sibling, root-side first.
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                out.append(subtree_hash(reader, lo, hi))
            break
        k = largest_power_of_two_below(n)
        if m <= k:
            out.append(subtree_hash(reader, lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree_hash(reader, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    out.reverse()
    return out


def _check_hashes(proof: Sequence[bytes]) -> None:
    for h in proof:
        if len(h) != HASH_SIZE:
            raise VerificationError(f"proof hash of {len(h)} bytes, expected {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 section 2.1.3.2, steps 1-5)."""
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is not in a tree of size {size}")
    _check_hashes(proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is too long for the tree size")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is too short for the tree size")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise VerificationError unless ``leaf`` is at ``index`` in the tree ``(size, root)``."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise VerificationError(
            f"inclusion proof for index {index} does not lead to the root of size {size}"
        )


def verify_entry_inclusion(
    index: int, size: int, entry: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Like ``verify_inclusion`` for a raw entry (hashed with the RFC 6962 leaf prefix)."""
    verify_inclusion(index, size, leaf_hash(entry), proof, root)


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise VerificationError unless tree ``old`` is a prefix of tree ``new``.

    RFC 9162 section 2.1.4.2. Equal sizes need an empty proof and equal roots; size 0 is
    a prefix of everything with an empty proof.
    """
    _check_hashes(proof)
    if not 0 <= old <= new:
        raise VerificationError(f"size {old} cannot be a prefix of size {new}")
    if old == new:
        if proof:
            raise VerificationError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise VerificationError(f"two different roots for tree size {old}")
        return
    if old == 0:
        if proof:
            raise VerificationError("consistency proof from the empty tree must be empty")
        return
    path = list(proof)
    # Step 2: if the old size is a power of two, the old root is the first node.
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    if not path:
        raise VerificationError("empty consistency proof")
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != old_root:
        raise VerificationError(f"consistency proof does not lead to the root of size {old}")
    if sr != new_root:
        raise VerificationError(f"consistency proof does not lead to the root of size {new}")
