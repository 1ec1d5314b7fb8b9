"""The C Merkle Tree Hash (``ledger._merkle``, the rules digest of every compile) against
the Python reference and the RFC's recursive definition, and ``merkle_root``'s inputs."""

from __future__ import annotations

import hashlib
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearwall.ledger import merkle
from clearwall.ledger._merkle import merkle_root as c_root
from clearwall.ledger._merkle import text_root as c_text_root
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


# -- text_root: the lines prefix + value + suffix of one text -----------------------------

values = st.lists(
    st.text(st.characters(min_codepoint=0, max_codepoint=0x80, exclude_characters="\n")),
    min_size=1,
    max_size=40,
)
affixes = st.sampled_from([b"", b" ", b"exact ", b" block", b" refuse", b"subtree "])


def lines_of(vals: list[str], prefix: bytes, suffix: bytes) -> list[bytes] | None:
    """The lines the text of ``vals`` stands for, or None when they are not ASCII."""
    try:
        return [prefix + v.encode("ascii") + suffix for v in vals]
    except UnicodeEncodeError:
        return None


@settings(max_examples=400, deadline=None)
@given(values, affixes, affixes, st.booleans())
def test_text_root_is_the_root_of_its_lines_when_they_ascend(
    vals: list[str], prefix: bytes, suffix: bytes, sort: bool
) -> None:
    """Sorted (the store's common case) or not, duplicates, empty values, control
    characters and a non-ASCII one: a root exactly when the lines are ASCII and strictly
    ascending, and then the RFC root of those lines; C and Python agree."""
    lines = lines_of(vals, prefix, suffix)
    if sort and lines is not None:
        order = sorted(range(len(vals)), key=lines.__getitem__)
        vals, lines = [vals[i] for i in order], [lines[i] for i in order]
    text = "\n".join(vals)
    found = merkle.text_root(text, prefix, suffix)
    assert found == merkle.text_root_reference(text, prefix, suffix)
    if lines is not None and all(a < b for a, b in pairwise(lines)):
        assert found == rfc_mth(lines)
    else:
        assert found is None


@pytest.mark.parametrize(
    "vals, suffix, ascends",
    [
        (["a", "a-b", "b"], b"", True),
        (["a", "a b"], b"", True),
        # A value's space sorts below the suffix's letters: "a b block" < "a block"
        # although "a" < "a b", so the lines, not the values, must be compared.
        (["a", "a b"], b" block", False),
        (["a b", "a"], b" block", True),
        (["a", "ab"], b" block", True),
        (["ab", "a"], b" block", False),
        (["a", "a"], b"", False),  # a duplicate is not strictly ascending
        ([""], b"", True),  # one empty value: the line is the prefix alone
        (["", "a"], b" x", True),
        (["é"], b"", False),  # not ASCII
    ],
)
def test_text_root_compares_whole_lines(vals: list[str], suffix: bytes, ascends: bool) -> None:
    """The order check is over whole lines, the prefix and suffix included."""
    text = "\n".join(vals)
    found = c_text_root(text, b"exact ", suffix)
    assert (found is not None) is ascends
    if ascends:
        assert found == rfc_mth([b"exact " + v.encode() + suffix for v in vals])


def test_text_root_works_without_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without the C module gives the same roots in Python."""
    expected = c_text_root("a.example\nb.example", b"exact ", b"")
    monkeypatch.setattr(merkle, "_c_text_root", None)
    assert merkle.text_root("a.example\nb.example", b"exact ", b"") == expected
    assert merkle.text_root("b\na", b"exact ", b"") is None
