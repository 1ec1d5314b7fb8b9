"""Keyed 64-bit fingerprints of names and the sorted index the matcher asks first.

A C extension (``_nameindex.c``). A fingerprint is SipHash-1-3 of a name's ASCII bytes
under a 16-byte key. An index image holds a directory of buckets over the fingerprints'
top b bits and, sorted, the 32 bits right below those of each name's fingerprint (four
bytes per name); ``NameIndex`` searches an image in place (an mmap'd file stays shared
between processes). The index has no false negatives but can have false positives (about
16 / 2^32 per suffix looked up): a match is a hint to confirm, never a decision.
"""

from collections.abc import Iterator

from typing_extensions import Buffer

from clearwall.model import Verdict

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

    Raises ValueError if ``image`` is not an index image (bad header or size; an image of
    the earlier 64-bit layout has another magic) or ``key`` is not 16 bytes. Only the
    header is read: building one is O(1).
    """

    def __init__(self, image: Buffer, key: Buffer) -> None: ...
    def deepest(self, name: str, /) -> int:
        """The offset in ``name`` of its deepest suffix whose fingerprint is indexed.

        Suffixes are the name itself (offset 0) and what follows each of its dots, tried
        longest first; -1 if none is indexed. Raises TypeError if ``name`` is not a str
        and ValueError if it is not ASCII or longer than ``MAX_NAME``.
        """

    def __len__(self) -> int:
        """The number of entries: distinct fingerprints, but names whose fingerprints
        share their top b + 32 bits (the image cannot tell them apart) count once."""

class Memo:
    """A map from names to verdicts, slotted by ``index``'s fingerprints.

    What ``NameMatcher.match`` reads without hashing or allocating: it finds a name's slot
    from the fingerprint it has just computed, then compares the stored name with the
    query's suffix byte for byte, so an entry is only ever found under its own name.
    Entries cannot be deleted, only all cleared.
    """

    def __init__(self, index: NameIndex) -> None: ...
    def get(self, name: str, /) -> Verdict | None:
        """The verdict stored under ``name``, or None."""

    def __getitem__(self, name: str, /) -> Verdict: ...
    def __setitem__(self, name: str, verdict: Verdict, /) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]:
        """The names stored."""

    def clear(self) -> None:
        """Forget every entry."""

class NameMatcher:
    """The fast path of ``PolicySnapshot.match``, as a base class in C.

    ``memos`` maps a jurisdiction code to its (exact, below) verdict memos, keyed by
    listed names: for queries that are that name and for queries below it; ``star`` is
    the pair for any other code. ``match`` answers from the index and those memos only,
    within the interval ``_lo <= now < _hi`` (empty at first), and calls the subclass's
    ``_match_slow(name, jurisdiction, now)`` for everything else.
    """

    _lo: float
    _hi: float

    def __init__(
        self,
        index: NameIndex,
        memos: dict[str, tuple[Memo, Memo]],
        star: tuple[Memo, Memo],
        allowed: Verdict,
    ) -> None: ...
    def match(self, name: str, jurisdiction: str, now: float | None = None) -> Verdict:
        """The verdict for a canonical query name (lowercase, no trailing dot) asked by a
        client of ``jurisdiction`` at ``now`` (epoch seconds, default: the clock).

        Names no rule touches return the shared ``ALLOWED`` without allocating a verdict;
        a hit returns the same memoized verdict object for the same matched rules.
        """

    def _match_slow(self, name: str, jurisdiction: str, now: float | None) -> Verdict:
        """What ``match`` calls when it cannot answer by itself; the subclass defines it."""
