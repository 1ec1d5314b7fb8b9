"""Per-name proof bundles built from a log's published state (``nameproof`` does the proving)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

from clearwall.errors import LedgerError
from clearwall.ledger import proofs
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.logstate import LogState
from clearwall.ledger.merkle import MemoryTree
from clearwall.ledger.nameproof import prove_name, rule_tree


class NameProver:
    """Builds per-name proof bundles from a log's published state (cached between calls).

    Rule-set trees come from the published rule files (``rules/<order>-<digest>.txt``),
    falling back to the store's current rules when they still have the logged digest.
    """

    def __init__(self, tlog: TransparencyLog, cache_orders: int = 8) -> None:
        """Prove against ``tlog``; keep up to ``cache_orders`` rule-set trees in memory."""
        self.tlog = tlog
        self._state = LogState()
        self._trees: dict[tuple[int, str], tuple[Sequence[bytes], MemoryTree]] = {}
        self._cache_orders = cache_orders
        self._lock = threading.Lock()  # one prover serves concurrent HTTP requests

    def _rule_tree(self, order_id: int, digest: str) -> tuple[Sequence[bytes], proofs.HashReader]:
        key = (order_id, digest)
        hit = self._trees.get(key)
        if hit is not None:
            return hit
        path = self.tlog.rule_file(order_id, digest)
        lines: list[bytes] | None
        if path.exists():
            lines = path.read_bytes().splitlines()
        else:
            lines = self.tlog.store.order_rule_lines(order_id)
        tree = rule_tree(lines) if lines is not None else None
        if tree is None or tree[1].root().hex() != digest:
            raise LedgerError(
                f"order {order_id}: no published rule file or stored rules with digest {digest}"
            )
        if len(self._trees) >= self._cache_orders:
            self._trees.pop(next(iter(self._trees)))
        self._trees[key] = tree
        return tree

    def prove(self, name: str, jurisdiction: str, at: dt.datetime | None = None) -> dict[str, Any]:
        """The proof bundle for ``name`` in ``jurisdiction`` at ``at`` (default: now)."""
        with self._lock:
            return self._prove(name, jurisdiction, at)

    def _prove(self, name: str, jurisdiction: str, at: dt.datetime | None) -> dict[str, Any]:
        note = self.tlog.checkpoint_note()
        cp = open_checkpoint(note, self.tlog.verifier, self.tlog.config.origin)
        if cp.size < self._state.size:
            self._state = LogState()
        if cp.size > self._state.size:
            new = self.tlog.store.log_rows(self._state.size, cp.size)
            self._state.extend((index, data) for index, data, _ in new)
        reader = self.tlog.reader(cp.size)
        return prove_name(
            name,
            jurisdiction,
            note,
            cp,
            self._state,
            reader,
            lambda i: self.tlog.entry(i, cp.size),
            self._rule_tree,
            at or dt.datetime.now(dt.UTC),
        )
