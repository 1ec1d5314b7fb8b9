"""RFC 6962 tree hashing and proofs against the RFC 6962 example tree and a reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.errors import VerificationError
from clearwall.ledger import proofs
from clearwall.ledger.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    leaf_hash,
    merkle_root,
    node_hash,
)

# The RFC 6962 example leaves and the roots of their first n leaves, as published with
# Certificate Transparency's reference implementation (merkle_tree_test.cc) and reused by
# Trillian and transparency-dev/merkle.
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
RFC6962_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def ref_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as literally as possible."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 section 2.1.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 6962 section 2.1.2."""
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


@pytest.mark.parametrize("n", range(1, 9))
def test_rfc6962_example_roots(n: int) -> None:
    assert merkle_root(RFC6962_LEAVES[:n]).hex() == RFC6962_ROOTS[n - 1]
    assert MemoryTree.from_entries(RFC6962_LEAVES[:n]).root().hex() == RFC6962_ROOTS[n - 1]


def test_empty_tree_is_sha256_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MemoryTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 9))
def test_inclusion_proofs_match_rfc_path(n: int) -> None:
    leaves = RFC6962_LEAVES[:n]
    tree = MemoryTree.from_entries(leaves)
    root = bytes.fromhex(RFC6962_ROOTS[n - 1])
    for m in range(n):
        proof = proofs.inclusion_proof(tree, m, n)
        assert proof == ref_path(m, leaves)
        proofs.verify_entry_inclusion(m, n, leaves[m], proof, root)


@pytest.mark.parametrize("new", range(1, 9))
def test_consistency_proofs_match_rfc_subproof(new: int) -> None:
    tree = MemoryTree.from_entries(RFC6962_LEAVES)
    for old in range(1, new + 1):
        proof = proofs.consistency_proof(tree, old, new)
        expected = [] if old == new else ref_subproof(old, RFC6962_LEAVES[:new], True)
        assert proof == expected
        proofs.verify_consistency(
            old,
            new,
            bytes.fromhex(RFC6962_ROOTS[old - 1]),
            bytes.fromhex(RFC6962_ROOTS[new - 1]),
            proof,
        )


def test_wrong_proofs_are_rejected() -> None:
    tree = MemoryTree.from_entries(RFC6962_LEAVES)
    root7 = tree.root(7)
    proof = proofs.inclusion_proof(tree, 3, 7)
    with pytest.raises(VerificationError):
        proofs.verify_entry_inclusion(3, 7, b"other", proof, root7)
    with pytest.raises(VerificationError):  # a proof for another tree size
        proofs.verify_entry_inclusion(3, 8, RFC6962_LEAVES[3], proof, tree.root(8))
    with pytest.raises(VerificationError):  # truncated
        proofs.verify_entry_inclusion(3, 7, RFC6962_LEAVES[3], proof[:-1], root7)
    with pytest.raises(VerificationError):  # too long
        proofs.verify_entry_inclusion(3, 7, RFC6962_LEAVES[3], [*proof, proof[0]], root7)
    with pytest.raises(VerificationError):
        proofs.verify_entry_inclusion(7, 7, RFC6962_LEAVES[3], proof, root7)
    cproof = proofs.consistency_proof(tree, 3, 7)
    with pytest.raises(VerificationError):
        proofs.verify_consistency(3, 7, tree.root(3), tree.root(8), cproof)
    with pytest.raises(VerificationError):
        proofs.verify_consistency(4, 7, tree.root(4), tree.root(7), cproof)
    with pytest.raises(VerificationError):
        proofs.verify_consistency(3, 7, tree.root(3), tree.root(7), cproof[1:])
    with pytest.raises(VerificationError):
        proofs.verify_consistency(7, 3, tree.root(7), tree.root(3), [])
    with pytest.raises(VerificationError):
        proofs.verify_consistency(3, 3, tree.root(3), tree.root(4), [])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_random_trees_against_reference(n: int, data: st.DataObject) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(n)]
    tree = MemoryTree.from_entries(leaves[: n // 2])
    tree.append(b"".join(leaf_hash(x) for x in leaves[n // 2 :]))  # incremental append
    assert tree.root() == ref_mth(leaves)
    m = data.draw(st.integers(0, n - 1))
    proof = proofs.inclusion_proof(tree, m, n)
    assert proof == ref_path(m, leaves)
    proofs.verify_inclusion(m, n, leaf_hash(leaves[m]), proof, tree.root())
    old = data.draw(st.integers(1, n))
    cp = proofs.consistency_proof(tree, old, n)
    proofs.verify_consistency(old, n, tree.root(old), tree.root(), cp)
    if cp:
        bad = list(cp)
        bad[0] = node_hash(bad[0], bad[0])
        with pytest.raises(VerificationError):
            proofs.verify_consistency(old, n, tree.root(old), tree.root(), bad)


def test_proof_size_is_at_most_log2() -> None:
    n = 1000
    tree = MemoryTree(b"".join(leaf_hash(i.to_bytes(4, "big")) for i in range(n)))
    for m in (0, 1, 511, 512, 999):
        assert len(proofs.inclusion_proof(tree, m, n)) <= (n - 1).bit_length()


@pytest.mark.parametrize("n", [*range(70), 127, 128, 129, 1000, 1025])
def test_merkle_root_level_by_level_is_the_recursive_definition(n: int) -> None:
    """merkle_root pairs neighbours level by level, carrying an odd last node up: the
    RFC 6962 split at the largest power of two below n, for every n."""
    entries = [f"rule {i}".encode() for i in range(n)]
    want = ref_mth(entries) if n else EMPTY_ROOT
    assert merkle_root(entries) == want == MemoryTree.from_entries(entries).root()
