"""Exact-LRU bytes-to-bytes store for the DNS answer cache (C extension)."""

class LRUStore:
    """Exact-LRU map of bytes keys to bytes values, one C record per entry.

    Each entry is one allocation (a 40-byte header, the key bytes, the value bytes)
    rather than Python objects: that is the point, as the answer cache holds tens of
    thousands of small entries. Keys (up to 65535 bytes) and values (up to 1 MiB) must be
    exactly ``bytes``; anything else raises TypeError, a longer one ValueError.
    """

    def __init__(self, max_entries: int) -> None:
        """An empty store that keeps at most ``max_entries`` (>= 1, else ValueError)."""

    @property
    def max_entries(self) -> int:
        """The most entries the store keeps; ``put`` evicts beyond it."""

    @property
    def nbytes(self) -> int:
        """Bytes of C memory held: every record's size as requested from the allocator
        (40-byte header + key + value) plus the bucket table (8 bytes per bucket, at most
        the next power of two above ``max_entries``). Not counted: the allocator's
        rounding and the store object itself."""

    def get(self, key: bytes, /) -> bytes | None:
        """A copy of the value stored under ``key``, or None. Does not change recency."""

    def touch(self, key: bytes, /) -> bool:
        """Make ``key`` the most recent entry; False if it is absent."""

    def put(self, key: bytes, value: bytes, /) -> int:
        """Store ``value`` under ``key`` as the most recent entry, replacing any old value,
        then evict least recent entries while there are more than ``max_entries``.
        Returns how many were evicted. On MemoryError the store is unchanged."""

    def pop(self, key: bytes, /) -> bytes | None:
        """Remove ``key`` and return its value, or None if it is absent."""

    def clear(self) -> None:
        """Remove every entry and free its memory."""

    def keys(self) -> list[bytes]:
        """The keys as a new list, least recent first (for tests and inspection)."""

    def __len__(self) -> int:
        """How many entries are stored."""

    def __contains__(self, key: object, /) -> bool:
        """Whether ``key`` is stored; False for anything that is not exactly bytes."""
