"""The in-memory twin of the store's log tables, for fast tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

from clearwall.ledger.logstore import LogEntry, LogRow, StoredCheckpoint
from clearwall.ledger.merkle import leaf_hash


class MemoryLogStore:
    """A ``LogStore`` in lists: entries appended by ``append``, and the rule lines of
    orders set in ``rule_lines`` by whoever plays the policy store."""

    def __init__(self) -> None:
        """An empty log."""
        self.entries: list[LogEntry] = []
        self.stored: dict[int, StoredCheckpoint] = {}
        self.rule_lines: dict[int, list[bytes]] = {}

    def __str__(self) -> str:
        return "MemoryLogStore"

    def append(self, data: bytes) -> int:
        """Commit one entry; return its index."""
        idx = len(self.entries)
        self.entries.append(LogEntry(idx, data, leaf_hash(data)))
        return idx

    def log_size(self) -> int:
        """Number of committed entries."""
        return len(self.entries)

    def log_entries(self, start: int = 0, end: int | None = None) -> list[LogEntry]:
        """Committed entries ``start <= index < end``."""
        return self.entries[start:end]

    def log_rows(self, start: int = 0, end: int | None = None) -> Iterator[LogRow]:
        """Committed entries as (index, data, leaf hash)."""
        for e in self.entries[start:end]:
            yield e.index, e.data, e.leaf_hash

    def add_checkpoint(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Record a checkpoint once per size."""
        self.stored.setdefault(tree_size, StoredCheckpoint(tree_size, root_hash, note))

    def replace_checkpoint_note(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Replace the note of the recorded checkpoint (size, root), if any."""
        stored = self.stored.get(tree_size)
        if stored is not None and stored.root_hash == root_hash:
            self.stored[tree_size] = StoredCheckpoint(tree_size, root_hash, note)

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Stored checkpoints, oldest first."""
        return [self.stored[k] for k in sorted(self.stored)]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest size, if any."""
        return self.stored[max(self.stored)] if self.stored else None

    def order_rule_lines(self, order_id: int) -> list[bytes] | None:
        """The rule lines set for ``order_id``, if any."""
        return self.rule_lines.get(order_id)
