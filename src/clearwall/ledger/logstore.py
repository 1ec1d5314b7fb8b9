"""The log's storage contract: what the upper ledger reads from a store and records in it.

The store (``clearwall.store.Store``) implements ``LogStore``; ``memorystore.MemoryLogStore``
is its in-memory twin. Tiles, sync, proofs, the audit and witnessing work on this
Protocol alone, so they never import the store, and the store never imports them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

LogRow = tuple[int, bytes, bytes]
"""A committed entry as the lean readers stream it: (index, data, leaf hash)."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One committed leaf of the transparency log."""

    index: int
    data: bytes
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A signed checkpoint as a store records it: the size, the root and the whole note
    (``checkpoint.Checkpoint`` is what the note states, once its signature is checked)."""

    tree_size: int
    root_hash: bytes
    note: str


class LogStore(Protocol):
    """The store's side of the log: its committed entries, its checkpoints and the rule
    lines the entries commit to."""

    def log_size(self) -> int:
        """Number of committed entries."""
        ...

    def log_entries(self, start: int = 0, end: int | None = None) -> Sequence[LogEntry]:
        """Committed entries ``start <= index < end`` (``end`` defaults to the size)."""
        ...

    def log_rows(self, start: int = 0, end: int | None = None) -> Iterator[LogRow]:
        """The same entries as ``LogRow`` tuples, streamed (a million fit no list)."""
        ...

    def add_checkpoint(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Record a signed checkpoint (idempotent per size)."""
        ...

    def replace_checkpoint_note(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Store ``note`` for the recorded checkpoint (``tree_size``, ``root_hash``): the
        same checkpoint with late witness cosignatures attached."""
        ...

    def checkpoints(self) -> Sequence[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest size (what the signer last signed)."""
        ...

    def order_rule_lines(self, order_id: int) -> list[bytes] | None:
        """The sorted canonical rule lines an order holds now (``entries.rule_line``),
        or None when there is no such order."""
        ...
