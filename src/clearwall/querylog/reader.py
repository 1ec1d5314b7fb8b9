"""Reading the query log for the console and the export: filters, pages, top names.

Segments are opened read-only, newest first, and each is asked with the same filters;
results are merged in Python. Nothing here writes, so a reader can never lose records.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clearwall.querylog.record import Entry, decode_orders
from clearwall.querylog.store import Segment, segments

DECISIONS = ("allow", "block", "refuse", "ratelimit", "fail")


@dataclass(frozen=True, slots=True)
class Filters:
    """What to show: each field narrows the result; None or "" means any."""

    name: str = ""  # the name or any name below it
    decision: str = ""
    order: int | None = None
    since: float | None = None  # Unix seconds
    until: float | None = None
    jurisdiction: str | None = None  # an authority sees only its jurisdiction's clients

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.name:
            name = self.name.strip().rstrip(".").lower()
            clauses.append("(qname = ? OR qname LIKE ? ESCAPE '\\')")
            escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [name, f"%.{escaped}"]
        if self.decision:
            clauses.append("decision = ?")
            params.append(self.decision)
        if self.order is not None:
            clauses.append("orders LIKE ?")
            params.append(f"%,{int(self.order)},%")
        if self.since is not None:
            clauses.append("time >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("time < ?")
            params.append(self.until)
        if self.jurisdiction is not None:
            clauses.append("jurisdiction = ?")
            params.append(self.jurisdiction)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(
        time=float(row[0]),
        client=str(row[1]),
        jurisdiction=str(row[2]),
        qname=str(row[3]),
        qtype=int(row[4]),
        decision=str(row[5]),
        orders=decode_orders(str(row[6])),
        rcode=None if row[7] is None else int(row[7]),
        latency_ms=float(row[8]),
        transport=str(row[9]),
        count=int(row[10]),
        latency_max_ms=float(row[11]),
    )


class QueryLogReader:
    """Reads the segments of one query-log directory."""

    def __init__(self, directory: Path) -> None:
        """Read ``[logging] query_log_dir``."""
        self.directory = directory

    def segments(self, f: Filters | None = None) -> list[Segment]:
        """The segments that may hold records matching ``f``'s time range, oldest first."""
        found = segments(self.directory)
        if f is None:
            return found
        return [
            s
            for s in found
            if (f.until is None or s.start < f.until) and (f.since is None or s.mtime >= f.since)
        ]

    @contextlib.contextmanager
    def _open(self, segment: Segment) -> Iterator[sqlite3.Connection | None]:
        try:
            conn = sqlite3.connect(f"file:{segment.path}?mode=ro", uri=True)
        except sqlite3.Error:
            yield None  # pruned since it was listed
            return
        try:
            yield conn
        finally:
            conn.close()

    def _ask(self, segment: Segment, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with self._open(segment) as conn:
            if conn is None:
                return []
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error:
                return []  # deleted or still empty (no table yet)

    def search(self, f: Filters, limit: int = 100, offset: int = 0) -> list[Entry]:
        """Matching records, newest first (``offset`` skips that many records)."""
        where, params = f.where()
        want = limit + offset
        rows: list[tuple[Any, ...]] = []
        for seg in reversed(self.segments(f)):
            if len(rows) >= want:
                # Segments of several writers overlap in time: skip only those last
                # written before the oldest row kept so far.
                rows.sort(key=lambda r: r[0], reverse=True)
                del rows[want:]
                if seg.mtime < rows[-1][0]:
                    continue
            rows += self._ask(
                seg, f"SELECT * FROM queries{where} ORDER BY time DESC LIMIT ?", [*params, want]
            )
        rows.sort(key=lambda r: r[0], reverse=True)
        return [_entry(r) for r in rows[offset:want]]

    def count(self, f: Filters) -> int:
        """How many answers the matching records stand for."""
        where, params = f.where()
        return sum(
            int(r[0] or 0)
            for seg in self.segments(f)
            for r in self._ask(seg, f"SELECT sum(count) FROM queries{where}", params)
        )

    def tally(self, f: Filters, column: str) -> Counter[str]:
        """Answers of the matching records by one column (``decision``, ``jurisdiction``, …)."""
        if column not in ("decision", "jurisdiction", "qname", "transport"):
            raise ValueError(f"cannot tally by {column!r}")
        where, params = f.where()
        out: Counter[str] = Counter()
        for seg in self.segments(f):
            for key, n in self._ask(
                seg, f"SELECT {column}, sum(count) FROM queries{where} GROUP BY {column}", params
            ):
                out[str(key)] += int(n)
        return out

    def top_blocked(self, f: Filters, limit: int = 10) -> list[tuple[int, list[tuple[str, int]]]]:
        """Per order, its most blocked names: ``[(order, [(name, count), …]), …]``,
        orders with the most blocks first."""
        where, params = Filters(
            name=f.name,
            decision="block",
            order=f.order,
            since=f.since,
            until=f.until,
            jurisdiction=f.jurisdiction,
        ).where()
        per_order: dict[int, Counter[str]] = {}
        for seg in self.segments(f):
            for orders, qname, n in self._ask(
                seg,
                f"SELECT orders, qname, sum(count) FROM queries{where} GROUP BY orders, qname",
                params,
            ):
                for oid in decode_orders(str(orders)):
                    if f.order is None or oid == f.order:
                        per_order.setdefault(oid, Counter())[str(qname)] += int(n)
        ranked = sorted(per_order.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        return [
            (oid, sorted(names.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])
            for oid, names in ranked
        ]

    def export(self, f: Filters) -> Iterator[Entry]:
        """Every matching record, oldest segment first (for JSON lines)."""
        where, params = f.where()
        for seg in self.segments(f):
            with self._open(seg) as conn:
                if conn is None:
                    continue
                try:
                    cursor = conn.execute(f"SELECT * FROM queries{where} ORDER BY time", params)
                    for row in cursor:
                        yield _entry(row)
                except sqlite3.Error:
                    continue

    def buckets(self, f: Filters, width: float) -> dict[tuple[float, str], int]:
        """Counts per (time bucket start, decision), ``width`` seconds per bucket."""
        where, params = f.where()
        out: dict[tuple[float, str], int] = {}
        for seg in self.segments(f):
            for start, decision, n in self._ask(
                seg,
                f"SELECT CAST(time / ? AS INTEGER) * ?, decision, sum(count) FROM queries{where} "
                "GROUP BY 1, 2",
                [width, width, *params],
            ):
                key = (float(start), str(decision))
                out[key] = out.get(key, 0) + int(n)
        return out

    def block_buckets(
        self, f: Filters, width: float
    ) -> list[tuple[float, str, tuple[int, ...], int]]:
        """Blocks per (time bucket start, jurisdiction, orders), ``width`` seconds each."""
        where, params = Filters(
            decision="block", since=f.since, until=f.until, jurisdiction=f.jurisdiction
        ).where()
        out: list[tuple[float, str, tuple[int, ...], int]] = []
        for seg in self.segments(f):
            for start, code, orders, n in self._ask(
                seg,
                f"SELECT CAST(time / ? AS INTEGER) * ?, jurisdiction, orders, sum(count) "
                f"FROM queries{where} GROUP BY 1, 2, 3",
                [width, width, *params],
            ):
                out.append((float(start), str(code), decode_orders(str(orders)), int(n)))
        return out
