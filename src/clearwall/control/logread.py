"""The store's log read for the control plane: with the standard library for a SQLite
store, so a restart and every version poll skip the SQLAlchemy import.

The database file is found by the store's own URL rule (``layout.sqlite_file``) and
opened read-only; anything else (PostgreSQL, a missing file) is read through the store,
which explains what it cannot open.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from clearwall.layout import sqlite_file


def _readable(store_url: str) -> Path | None:
    """The SQLite database file of ``store_url`` when it exists, else None."""
    path = sqlite_file(store_url)
    return path if path is not None and path.is_file() else None


def _connect(path: Path) -> contextlib.closing[sqlite3.Connection]:
    # Read-only whatever options the URL carries: the control plane never writes here.
    return contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True))


def log_rows(store_url: str, size: int) -> tuple[int, list[tuple[int, bytes]]]:
    """The log's size and its first ``size`` entries (index, data): with the standard
    library for a SQLite store (no SQLAlchemy on a restart's way), else through the store."""
    path = _readable(store_url)
    if path is not None:
        with _connect(path) as db:
            row = db.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
            query = "SELECT idx, data FROM log_entries WHERE idx < ? ORDER BY idx"
            rows = [(int(i), bytes(d)) for i, d in db.execute(query, (size,))]
        return (int(row[0]) if row else 0), rows
    from clearwall.store.db import open_store
    from clearwall.store.loader import _rows

    store = open_store(store_url)
    try:
        log_size = store.log_size()
        with store.read() as conn:
            return log_size, list(_rows(conn, size))
    finally:
        store.engine.dispose()


def log_size(store_url: str) -> int | None:
    """The log size of a SQLite store read with the standard library, or None to ask
    the store itself (other databases, or anything unexpected: it explains errors)."""
    path = _readable(store_url)
    if path is None:
        return None
    try:
        with _connect(path) as db:
            row = db.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]) if row else 0
