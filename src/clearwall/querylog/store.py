"""The query log on disk: rotated SQLite segments, bounded in total size and age.

Each DNS process writes its own segments (``q-<start>-<writer>.sqlite`` in
``[logging] query_log_dir``), so writers never wait for each other. A segment is closed
after an hour or when it reaches a twentieth of the size limit; every rotation deletes
segments whose newest record is older than the age limit, then the oldest segments
until the directory fits the size limit. Readers open segments read-only (WAL mode
lets them read while a writer appends).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENT_SECONDS = 3600.0
SEGMENTS_PER_LIMIT = 20  # a segment closes at max_bytes / this
SCHEMA = """
CREATE TABLE IF NOT EXISTS queries (
    time REAL NOT NULL,
    client TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    qname TEXT NOT NULL,
    qtype INTEGER NOT NULL,
    decision TEXT NOT NULL,
    orders TEXT NOT NULL,
    rcode INTEGER,
    latency_ms REAL NOT NULL,
    transport TEXT NOT NULL,
    count INTEGER NOT NULL,
    latency_max_ms REAL NOT NULL
)
"""
INSERT = "INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
Row = tuple[float, str, str, str, int, str, str, int | None, float, str, int, float]
"""(time, client, jurisdiction, qname, qtype, decision, orders, rcode, mean latency ms,
transport, count, max latency ms): identical answers of one second, counted."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment file: its path, the time it was opened, and its size on disk."""

    path: Path
    start: float
    size: int
    mtime: float


def segments(directory: Path) -> list[Segment]:
    """The directory's segments, oldest first (missing directory: none)."""
    out: list[Segment] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return out
    for name in names:
        if not (name.startswith("q-") and name.endswith(".sqlite")):
            continue
        try:
            start = float(name.split("-")[1])
        except (IndexError, ValueError):
            continue
        path = directory / name
        size = 0
        mtime = 0.0
        for suffix in ("", "-wal", "-shm"):
            try:
                st = os.stat(f"{path}{suffix}")
            except FileNotFoundError:
                continue
            size += st.st_size
            mtime = max(mtime, st.st_mtime)
        if mtime:
            out.append(Segment(path, start, size, mtime))
    out.sort(key=lambda s: (s.start, s.path.name))
    return out


def _remove(segment: Segment) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{segment.path}{suffix}")


def prune(directory: Path, max_bytes: int, max_age: float, now: float | None = None) -> int:
    """Delete segments past ``max_age`` seconds, then the oldest beyond ``max_bytes``;
    returns how many were deleted."""
    now = time.time() if now is None else now
    found = segments(directory)
    kept: list[Segment] = []
    deleted = 0
    for seg in found:
        if seg.mtime < now - max_age:
            _remove(seg)
            deleted += 1
        else:
            kept.append(seg)
    total = sum(s.size for s in kept)
    while kept and total > max_bytes:
        seg = kept.pop(0)
        _remove(seg)
        total -= seg.size
        deleted += 1
    return deleted


class SegmentStore:
    """The writing side: appends batches to this writer's current segment, rotating and
    pruning as it goes. Used by one thread only."""

    def __init__(
        self,
        directory: Path,
        writer: str,
        max_bytes: int,
        max_age: float,
    ) -> None:
        """Write segments named for ``writer`` into ``directory`` (created, mode 0700)."""
        self.directory = directory
        self.writer = writer
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.segment_bytes = max(64 * 1024, max_bytes // SEGMENTS_PER_LIMIT)
        self._conn: sqlite3.Connection | None = None
        self._path: Path | None = None
        self._opened = 0.0

    def _open(self, now: float) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Room for the segment about to grow: the directory then stays within the limit
        # (plus one segment per other writer).
        prune(self.directory, self.max_bytes - self.segment_bytes, self.max_age, now)
        path = self.directory / f"q-{now:.6f}-{self.writer}.sqlite"
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.chmod(path, 0o600)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")  # a crash may lose the last batch, no more
        conn.execute(SCHEMA)
        self._conn, self._path, self._opened = conn, path, now
        return conn

    def close(self) -> None:
        """Close the current segment (the next append opens a new one)."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
        self._conn = self._path = None

    def append(self, rows: Sequence[Row], now: float | None = None) -> None:
        """Write ``rows`` to the current segment in one transaction."""
        now = time.time() if now is None else now
        conn = self._conn
        if conn is not None and self._must_rotate(now):
            self.close()
            conn = None
        if conn is None:
            conn = self._open(now)
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")

    def _must_rotate(self, now: float) -> bool:
        path = self._path
        if path is None or now - self._opened >= SEGMENT_SECONDS:
            return True
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return True  # deleted under us (pruned by another writer): start anew
        with contextlib.suppress(FileNotFoundError):
            size += os.stat(f"{path}-wal").st_size
        return size >= self.segment_bytes
