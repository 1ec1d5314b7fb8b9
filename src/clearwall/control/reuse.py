"""Saved snapshots: what a start may reuse, checked against the public log first.

A whole snapshot is saved with its provenance (``ledger.state``), and a clean stop keeps
the last one. A start reuses the newest saved snapshot, never trusted blindly: the log's
published signed checkpoint (verified in a child, ``headcheck``) must cover its tree
size, and the log's entries up to that size, re-read and re-hashed, must be those it was
compiled from (its orders, digests, jurisdiction entries and file digests). A gateway
locks it before the sweep (``snapshotdir``), so it is reused whole or swept, never both.
The log's entries are read with the standard library on a SQLite store (``logread``),
so a restart does not wait for SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clearwall.control import snapshotdir
from clearwall.control.headcheck import PublishedHead
from clearwall.control.logread import log_rows
from clearwall.errors import SnapshotError

if TYPE_CHECKING:
    from clearwall.policy.layered import LayeredPolicy
    from clearwall.policy.snapshot import PolicySnapshot
    from clearwall.store.db import Store

log = logging.getLogger(__name__)


def saved_size(path: Path) -> str:
    """What a saved snapshot holds, for the log: orders, names with rules, response-IP
    rules, jurisdictions, and its bytes on disk (so an operator sees why a start or a
    compile takes the time it takes)."""
    from clearwall.policy.snapshotfile import saved_meta

    try:
        meta = saved_meta(path)
        on_disk = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
        return (
            f"{len(meta['orders']):,} orders, {int(meta['keys']):,} names, "
            f"{len(meta['ip_rules']):,} response-IP rules, "
            f"{len(meta['jurisdictions']):,} jurisdictions, {on_disk / 2**20:.1f} MiB"
        )
    except (OSError, KeyError, TypeError, ValueError, SnapshotError) as exc:
        return f"size unknown: {exc}"


def _whole_snapshots(directory: Path) -> list[tuple[int, int, Path]]:
    """(tree size, time made, path) of the whole snapshots saved in ``directory``
    (``policy-<size>-<ns>``), newest first."""
    found = []
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            parts = path.name.split("-")
            whole = len(parts) == 3 and parts[0] == "policy"
            if whole and parts[1].isdigit() and parts[2].isdigit() and path.is_dir():
                found.append((int(parts[1]), int(parts[2]), path))
    return sorted(found, reverse=True)


@dataclass
class Reusable:
    """A saved whole snapshot the log confirms: its directory, the tree size it holds,
    and, when the caller claimed it, this process's lock on it (``snapshotdir``)."""

    path: Path
    size: int
    lease: snapshotdir.Lease | None = None


def _why_not(
    store_url: str, path: Path, base_url: str, head: PublishedHead
) -> tuple[str | None, int]:
    """Why the snapshot at ``path`` may not be reused (None: it may) and its tree size;
    FileNotFoundError when it was saved without a provenance."""
    from clearwall.ledger.state import PROVENANCE_FILE, Provenance, mismatch, state_and_root

    provenance = Provenance.from_json((path / PROVENANCE_FILE).read_bytes())
    size = provenance.size
    if size > head.size:
        return f"the published checkpoint (size {head.size}) does not cover its {size}", size
    if size == head.size and head.root is not None and head.root != provenance.root:
        return f"the published checkpoint of size {size} has another root", size
    log_size, rows = log_rows(store_url, size)
    if log_size < size:
        return f"the log has {log_size} entries, fewer than its {size}", size
    state, root = state_and_root(rows, size)
    why = mismatch(provenance, state, root, base_url, path)
    if why is None and saved_tree_size(path) != size:
        why = "its metadata names another tree size"
    return why, size


def find_reusable(
    store_url: str, directory: Path, base_url: str, head: PublishedHead, claim: bool = False
) -> Reusable | None:
    """The newest whole snapshot in ``directory`` that the published checkpoint ``head``
    covers and the store's log confirms, with the tree size it holds (at most the
    published one: the caller overlays the entries since), or None. Each snapshot passed
    over is logged with the reason (``state.mismatch``).

    With ``claim`` (a gateway that will enforce it) each candidate is locked first and
    one that another running process holds is passed over; the one found stays locked
    (``Reusable.lease``), and those passed over are unlocked again, left for the sweep
    that follows (``snapshotdir.sweep``: what no process holds is a leftover). Without
    it nothing is locked.
    """
    tried = 0
    for _size, _made, path in _whole_snapshots(directory):
        if tried == 2:
            break
        lease = snapshotdir.try_claim(path) if claim else None
        if claim and lease is None:
            continue  # another gateway's, in use
        try:
            why, size = _why_not(store_url, path, base_url, head)
        except FileNotFoundError:
            why, size = "it was saved without a provenance", -1
        except (OSError, ValueError, KeyError, TypeError, SnapshotError, sqlite3.Error) as exc:
            why, size = f"unreadable ({exc})", -1
        tried += 1
        if why is None:
            return Reusable(path, size, lease)
        log.info("saved snapshot %s not reused: %s", path.name, why)
        if lease is not None:
            lease.keep()
    return None


def current_policy(
    store: Store,
    store_url: str,
    base_url: str,
    published: int,
    directory: Path,
    whole: bool = False,
) -> PolicySnapshot | LayeredPolicy:
    """The policy the log's first ``published`` entries commit (the caller published
    them: nothing else is shown), for a command that asks it once (``clearwall check``,
    ``export``): the snapshot a gateway saved in ``directory`` once the published
    checkpoint covers it and the log confirms it, with the entries published since
    compiled over it in memory (unless ``whole`` is asked: then those need a compile);
    else the whole policy compiled, as before snapshots were kept."""
    from clearwall.policy.layered import LayeredPolicy
    from clearwall.policy.snapshot import PolicySnapshot
    from clearwall.policy.snapshotfile import saved_jurisdictions
    from clearwall.store.loader import build_overlay, build_snapshot

    found = find_reusable(store_url, directory, base_url, PublishedHead(published))
    if found is not None and (found.size == published or not whole):
        try:
            if found.size == published:
                return PolicySnapshot.load(found.path)
            overlay, masked = build_overlay(
                store,
                found.size,
                base_url,
                base_jurisdictions=saved_jurisdictions(found.path),
                size=published,
            )
            return LayeredPolicy(PolicySnapshot.load(found.path, masked), overlay)
        except (OSError, SnapshotError) as exc:  # removed meanwhile (a gateway pruned it)
            log.info("saved snapshot %s not used: %s", found.path.name, exc)
    return build_snapshot(store, base_url, size=published)


def saved_tree_size(path: Path) -> int:
    """The tree size a saved snapshot directory was compiled at."""
    from clearwall.policy.snapshotfile import saved_meta

    try:
        return int(saved_meta(path)["tree_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{path}: no tree size in the snapshot metadata: {exc}") from exc
