"""The in-memory twin of the store's log tables, for fast tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from clearwall.ledger.merkle import leaf_hash


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """An in-memory committed entry (the twin of the store's ``LogEntry``)."""

    index: int
    data: bytes
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class MemoryCheckpoint:
    """An in-memory stored checkpoint."""

    tree_size: int
    root_hash: bytes
    note: str


class MemoryLogStore:
    """The in-memory twin of the store's log tables, for fast tests and benchmarks."""

    def __init__(self) -> None:
        """An empty log."""
        self.entries: list[MemoryEntry] = []
        self.stored: dict[int, MemoryCheckpoint] = {}

    def append(self, data: bytes) -> int:
        """Commit one entry; return its index."""
        idx = len(self.entries)
        self.entries.append(MemoryEntry(idx, data, leaf_hash(data)))
        return idx

    def log_size(self) -> int:
        """Number of committed entries."""
        return len(self.entries)

    def log_entries(self, start: int = 0, end: int | None = None) -> list[MemoryEntry]:
        """Committed entries ``start <= index < end``."""
        return self.entries[start:end]

    def add_checkpoint(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Record a checkpoint once per size."""
        self.stored.setdefault(tree_size, MemoryCheckpoint(tree_size, root_hash, note))

    def checkpoints(self) -> list[MemoryCheckpoint]:
        """Stored checkpoints, oldest first."""
        return [self.stored[k] for k in sorted(self.stored)]
