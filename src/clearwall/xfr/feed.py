"""Follows the store's log: the enforceable policy at each tree size, read incrementally.

A version is what the loader (``store.loader``) says is enforceable at a tree size:
only orders the log has published, with rules matching their logged digests. It stands
for the moment its last log entry was committed, so the zones computed from it are a
function of the log alone: anyone holding the first S entries computes the same zones
for serial S, and a restarted primary serves the same content under the same serial.
With a ``publish`` function (``TransparencyLog.publish``), S is the size of the published
signed checkpoint, never more: resolvers fed the zones enforce nothing the public log
does not show yet.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from clearwall.config import LedgerConfig
from clearwall.errors import StoreError
from clearwall.policy.compiler import epoch
from clearwall.policy.model import CompiledOrder, Jurisdiction
from clearwall.store.db import Store
from clearwall.store.loader import load_changes, load_policy

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ATTEMPTS = 5  # reads retried when the log grows between reading its size and its policy


def publisher(store: Store, ledger: LedgerConfig) -> Callable[[], int]:
    """``TransparencyLog.publish`` for ``store`` (``ledger`` resolved for it), with the key
    read from its file at each publication, as a gateway's compiler reads it: once the key
    is removed nothing more is published, so no serial past the public log is served."""
    from clearwall.ledger.log import TransparencyLog

    def publish() -> int:
        """Publish every committed entry; the published checkpoint's size."""
        return TransparencyLog(store, ledger).publish()

    return publish


@dataclass(frozen=True)
class PolicyVersion:
    """The enforceable orders and jurisdictions at one tree size, and its moment."""

    tree_size: int
    at: float  # epoch seconds: when the log's last entry was committed (0 when empty)
    orders: tuple[CompiledOrder, ...]
    jurisdictions: tuple[Jurisdiction, ...]


class PolicyFeed:
    """Reads a store's policy as the log grows: the whole policy once, then only the
    orders the new entries name (``loader.load_changes``)."""

    def __init__(self, store: Store, publish: Callable[[], int] | None = None) -> None:
        """Follow ``store`` (the caller disposes of it), up to what ``publish`` (which
        signs and publishes the committed entries) returns as the published size."""
        self.store = store
        self.publish = publish
        self.version: PolicyVersion | None = None
        self._orders: dict[int, CompiledOrder] = {}

    def size(self) -> int:
        """The log's current size (one cheap query), or its published size."""
        if self.publish is not None:
            return self.publish()
        return self.store.log_size()

    def _moment(self, size: int) -> dt.datetime:
        if size == 0:
            return EPOCH
        moment = self.store.log_entry_time(size - 1)
        if moment is None:
            raise StoreError(f"log entry {size - 1} is missing")
        return moment

    def read(self) -> PolicyVersion:
        """The policy at the log's current size (the one held when it has not grown)."""
        for _ in range(_ATTEMPTS):
            size = self.size()
            if self.version is not None and size == self.version.tree_size:
                return self.version
            moment = self._moment(size)
            if self.version is None or size < self.version.tree_size:
                if self.version is not None:
                    log.warning(
                        "the log shrank from %d to %d entries: reading the whole policy",
                        self.version.tree_size,
                        size,
                    )
                orders, jurisdictions, got = load_policy(self.store, moment, size=size)
                if got != size:
                    continue
                self._orders = {c.order.id: c for c in orders}
            else:
                change = load_changes(self.store, self.version.tree_size, moment, size=size)
                if change.size != size:
                    continue
                for order_id in change.changed:
                    self._orders.pop(order_id, None)
                for compiled in change.orders:
                    self._orders[compiled.order.id] = compiled
                jurisdictions = change.jurisdictions
            self.version = PolicyVersion(
                size,
                epoch(moment) if size else 0.0,
                tuple(self._orders[i] for i in sorted(self._orders)),
                tuple(jurisdictions),
            )
            return self.version
        raise StoreError("the log kept growing while its policy was read; try again")
