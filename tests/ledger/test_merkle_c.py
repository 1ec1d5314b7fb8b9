"""The C Merkle Tree Hash (``ledger._merkle``, the rules digest of every compile) against
the Python reference and the RFC's recursive definition, and ``merkle_root``'s inputs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.ledger import merkle
from clearwall.ledger._merkle import merkle_root as c_root
from clearwall.ledger.merkle import merkle_root, merkle_root_reference


def rfc_mth(leaves: list[bytes]) -> bytes:
    """MTH as RFC 9162 section 2.1.1 defines it, recursively."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + rfc_mth(leaves[:k]) + rfc_mth(leaves[k:])).digest()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100, 1025])
def test_c_root_is_the_rfc_definition(n: int) -> None:
    """Every shape of tree: complete, one short, one over, odd nodes at several levels."""
    leaves = [b"subtree n%d.example" % i for i in range(n)]
    assert c_root(leaves) == rfc_mth(leaves) == merkle_root_reference(leaves)
    assert c_root(tuple(leaves)) == rfc_mth(leaves)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=70))
def test_c_root_equals_the_python_reference(leaves: list[bytes]) -> None:
    """Random entries, empty ones and repeats included."""
    assert c_root(leaves) == merkle_root_reference(leaves) == merkle_root(iter(leaves))


@pytest.mark.parametrize("bad", [[b"a", "b"], [b"a", 1], "ab", None])
def test_c_root_rejects_what_is_not_a_list_of_bytes(bad: object) -> None:
    """Anything else is a TypeError, never a hash of something else."""
    with pytest.raises(TypeError):
        c_root(bad)  # type: ignore[arg-type]


def test_merkle_root_takes_any_bytes_like_and_works_without_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bytearray and memoryview entries hash as their bytes; a build without the C
    module computes the same roots in Python."""
    leaves = [b"exact a.example", b"subtree b.example", b""]
    expected = rfc_mth(leaves)
    assert merkle_root([bytearray(x) for x in leaves]) == expected  # type: ignore[misc]
    assert merkle_root([memoryview(x) for x in leaves]) == expected  # type: ignore[misc]
    monkeypatch.setattr(merkle, "_c_merkle_root", None)
    assert merkle_root(leaves) == expected
