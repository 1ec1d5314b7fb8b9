"""What the log commits about the policy, read from its entries; and the provenance of a
compiled snapshot, checked against it.

``state_and_root`` folds a stretch of entries with the one fold (``ledger.logstate``)
and hashes them, for the store's loader and for the gateway's start-up check, which
reads the rows with the standard library alone so that a restart does not wait for
SQLAlchemy.

A whole snapshot the gateway compiles carries a ``Provenance`` (``provenance.json``
beside its files): the tree size and the Merkle root (RFC 6962 section 2.1) of the
entries it was compiled from, recomputed from their data; for every order the log had
in force, its logged rules digest and entry, or why it was left out; the jurisdictions'
entries; the SHA-256 of each file. ``mismatch`` tells why a saved snapshot is not the
policy the log now commits; a gateway reuses one only when it says nothing, so a
snapshot is never trusted blindly: a changed entry, a file changed on disk, an order
the store disagreed with at compile time all mean a compile.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from clearwall.ledger.entries import EntryError
from clearwall.ledger.logstate import LogState, OnError
from clearwall.ledger.merkle import leaf_hash, root_from_leaf_hashes

log = logging.getLogger(__name__)

PROVENANCE_FILE = "provenance.json"


def state_and_root(
    rows: Iterable[tuple[int, bytes]], size: int, on_error: OnError | None = None
) -> tuple[LogState, str]:
    """The fold (``ledger.logstate``) of the first ``size`` entries ``rows`` ((index,
    data) in index order) and their Merkle root (hex), the leaves hashed from the
    entries' data; ValueError when an entry is missing. Each entry that is not a
    clearwall entry goes to ``on_error`` (default: a warning) and is skipped."""
    hashes: list[bytes] = []

    def hashed() -> Iterable[tuple[int, bytes]]:
        for idx, data in rows:
            if idx != len(hashes):
                raise ValueError(f"log entry {len(hashes)} is missing")
            hashes.append(leaf_hash(bytes(data)))
            yield idx, data

    state = LogState()
    state.extend(hashed(), on_error or _ignored)
    if len(hashes) != size:
        raise ValueError(f"the log holds {len(hashes)} of its {size} entries")
    return state, root_from_leaf_hashes(hashes).hex()


def _ignored(index: int, exc: EntryError) -> None:
    log.warning("log entry %d is not a clearwall entry (%s); ignored", index, exc)


@dataclass(frozen=True)
class Provenance:
    """Where a whole snapshot's policy comes from (see the module docstring)."""

    size: int
    root: str
    base_url: str
    orders: dict[int, tuple[int, str, int]]  # id -> (entry index, rules digest, rule count)
    expired: frozenset[int]  # in force on the log, past their sunset when compiled
    withheld: frozenset[int]  # in force on the log, not enforced: the store disagreed
    jurisdictions: dict[str, int]  # code -> index of its latest jurisdiction-set entry
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256 (hex)

    def to_json(self) -> bytes:
        """The ``provenance.json`` content."""
        return json.dumps(
            {
                "size": self.size,
                "root": self.root,
                "base_url": self.base_url,
                "orders": {str(k): list(v) for k, v in sorted(self.orders.items())},
                "expired": sorted(self.expired),
                "withheld": sorted(self.withheld),
                "jurisdictions": dict(sorted(self.jurisdictions.items())),
                "files": dict(sorted(self.files.items())),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Provenance:
        """Read ``provenance.json``; ValueError (or KeyError/TypeError) when malformed."""
        raw = json.loads(data)
        return cls(
            size=int(raw["size"]),
            root=str(raw["root"]),
            base_url=str(raw["base_url"]),
            orders={int(k): (int(v[0]), str(v[1]), int(v[2])) for k, v in raw["orders"].items()},
            expired=frozenset(int(x) for x in raw["expired"]),
            withheld=frozenset(int(x) for x in raw["withheld"]),
            jurisdictions={str(k): int(v) for k, v in raw["jurisdictions"].items()},
            files={str(k): str(v) for k, v in raw["files"].items()},
        )


def file_digests(directory: Path) -> dict[str, str]:
    """SHA-256 (hex) of every file in a snapshot directory but the provenance itself."""
    out = {}
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and path.name != PROVENANCE_FILE:
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
            out[path.name] = digest.hexdigest()
    return out


def mismatch(
    provenance: Provenance, state: LogState, root: str, base_url: str, directory: Path
) -> str | None:
    """Why the snapshot in ``directory`` is not the policy the log commits, or None.

    ``state`` and ``root`` are the log's over the snapshot's first ``provenance.size``
    entries, read now; ``base_url`` is the one the caller would compile with.
    """
    if root != provenance.root:
        return f"the log's first {provenance.size} entries are not those it was compiled from"
    if base_url != provenance.base_url:
        return "it was compiled for another public URL"
    if provenance.withheld:
        return f"the store disagreed with the log on orders {sorted(provenance.withheld)}"
    accounted = set(provenance.orders) | provenance.expired
    if state.orders_in_force() != accounted:
        return "its orders are not those the log has in force"
    for order_id, (index, digest, count) in provenance.orders.items():
        version = state.orders[order_id].version
        assert version is not None  # in force
        logged, event = version
        if (index, digest, count) != (logged, event.rules.digest, event.rules.count):
            return f"order {order_id} is not the one entry {logged} publishes"
    if {code: idx for code, (idx, _j) in state.jurisdictions.items()} != provenance.jurisdictions:
        return "its jurisdictions are not those the log sets"
    if file_digests(directory) != provenance.files or not provenance.files:
        return "its files are not those it was written with"
    return None
