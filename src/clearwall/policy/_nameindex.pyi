"""Keyed 64-bit fingerprints of names and the sorted index the matcher asks first.

A C extension (``_nameindex.c``). A fingerprint is SipHash-1-3 of a name's ASCII bytes
under a 16-byte key. An index image holds the sorted, distinct fingerprints of a set of
names and a directory of buckets over them; ``NameIndex`` searches an image in place (an
mmap'd file stays shared between processes). Fingerprints have no false negatives but can
have false positives: a match is a hint to confirm, never a decision.
"""

from typing_extensions import Buffer

MAX_NAME: int
"""Longest name (in characters) that is indexed or looked up: 253, a canonical name's limit."""

KEY_SIZE: int
"""Length in bytes of a fingerprint key: 16."""

def fingerprint(data: Buffer, key: Buffer, /) -> int:
    """SipHash-1-3 of ``data`` under the 16-byte ``key``, as an unsigned 64-bit int."""

def build(keys: Buffer, key: Buffer, /) -> bytes:
    """The index image of the names in ``keys``.

    ``keys`` holds newline-terminated trie keys, each a name reversed after a dot
    (``moc.elpmaxe.`` for ``example.com``); duplicates are allowed. Names that are not
    ASCII or are longer than ``MAX_NAME`` are left out (``NameIndex.deepest`` never
    looks such names up). Raises ValueError if ``key`` is not 16 bytes.
    """

class NameIndex:
    """The index in ``image`` (kept exported, never copied), fingerprinted with ``key``.

    Raises ValueError if ``image`` is not an index image (bad header or size) or ``key``
    is not 16 bytes. Only the header is read: building one is O(1).
    """

    def __init__(self, image: Buffer, key: Buffer) -> None: ...
    def deepest(self, name: str, /) -> int:
        """The offset in ``name`` of its deepest suffix whose fingerprint is indexed.

        Suffixes are the name itself (offset 0) and what follows each of its dots, tried
        longest first; -1 if none is indexed. Raises TypeError if ``name`` is not a str
        and ValueError if it is not ASCII or longer than ``MAX_NAME``.
        """

    def __len__(self) -> int:
        """The number of distinct fingerprints indexed."""
