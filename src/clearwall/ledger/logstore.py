"""The log's storage contract: what the upper ledger reads from a store and records in it.

``clearwall.store.Store`` implements ``LogStore``; ``memorystore.MemoryLogStore`` is its
in-memory twin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class StoredEntry(Protocol):
    """A committed log entry as the store returns it."""

    index: int
    data: bytes
    leaf_hash: bytes


class StoredCheckpoint(Protocol):
    """A checkpoint row as the store returns it."""

    tree_size: int
    root_hash: bytes
    note: str


class LogStore(Protocol):
    """The store's read side of the log tables (``clearwall.store.Store`` implements it)."""

    def log_size(self) -> int:
        """Number of committed entries."""
        ...

    def log_entries(self, start: int = 0, end: int | None = None) -> Sequence[StoredEntry]:
        """Committed entries ``start <= index < end`` in index order."""
        ...

    def add_checkpoint(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Record a signed checkpoint (idempotent per size)."""
        ...

    def checkpoints(self) -> Sequence[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        ...
