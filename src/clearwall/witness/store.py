"""The witness's own small database: the logs it witnesses, their latest checkpoints, evidence.

Three tables, created on first use (SQLite or PostgreSQL through the policy store's
engine setup, so SQLite writes take the lock up front with ``BEGIN IMMEDIATE``):

- ``witness_logs``: one row per origin, holding the latest checkpoint cosigned for it
  (size, root hash, and the note as served to monitors); a new log starts at size 0;
- ``witness_log_keys``: the log's verifier keys (one origin may have several: rotation);
- ``witness_evidence``: checkpoints validly signed by a log that did not extend what the
  witness had cosigned (tlog-witness: "it might be proof of log misbehavior").

The check of a request's old size against the stored one and the update are one write
transaction with the log's row locked (``SELECT … FOR UPDATE``), so two requests can
never roll the stored size back (the race tlog-witness describes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from clearwall.errors import Conflict, NotFound, StoreError
from clearwall.ledger.merkle import EMPTY_ROOT
from clearwall.store.db import Store

metadata = MetaData()

witness_logs = Table(
    "witness_logs",
    metadata,
    Column("origin", Text, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", Text, nullable=False),  # latest cosigned checkpoint, as served
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

witness_log_keys = Table(
    "witness_log_keys",
    metadata,
    Column("origin", Text, ForeignKey("witness_logs.origin"), primary_key=True),
    Column("vkey", Text, primary_key=True),
)

witness_evidence = Table(
    "witness_evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", Text, ForeignKey("witness_logs.origin"), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", Integer, nullable=False),  # the HTTP status the witness answered
    Column("reason", Text, nullable=False),
    Column("stored_size", BigInteger, nullable=False),  # what the witness held then
    Column("stored_root", LargeBinary, nullable=False),
    Column("size", BigInteger, nullable=False),  # what the log sent
    Column("root", LargeBinary, nullable=False),
    Column("request", Text, nullable=False),  # the whole request body: signed by the log
    Column("digest", LargeBinary, nullable=False),
    UniqueConstraint("origin", "digest", name="uq_witness_evidence_digest"),
)


@dataclass(frozen=True, slots=True)
class WitnessedLog:
    """A log the witness follows and the latest checkpoint it cosigned for it."""

    origin: str
    vkeys: tuple[str, ...]
    size: int
    root: bytes
    note: str  # "" until the first cosignature
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Evidence:
    """A validly signed checkpoint that did not extend the cosigned one."""

    id: int
    origin: str
    received_at: dt.datetime
    status: int
    reason: str
    stored_size: int
    stored_root: bytes
    size: int
    root: bytes
    request: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WitnessStore:
    """The witness database at a SQLAlchemy URL (tables created when missing)."""

    def __init__(self, url: str) -> None:
        """Open (and if needed create) the witness database at ``url``."""
        self.db = Store(url)
        if self.db.sqlite_path is not None:
            self.db.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            metadata.create_all(self.db.engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create the witness tables: {exc}") from exc

    def dispose(self) -> None:
        """Close pooled connections."""
        self.db.dispose()

    # -- the logs ------------------------------------------------------------------

    def add_log(self, origin: str, vkey: str) -> bool:
        """Witness ``origin`` with key ``vkey``; False when that key was already there."""
        with self.db.write() as conn:
            row = conn.execute(
                select(witness_logs.c.origin).where(witness_logs.c.origin == origin)
            ).first()
            if row is None:
                now = _now()
                conn.execute(
                    witness_logs.insert().values(
                        origin=origin,
                        size=0,
                        root=EMPTY_ROOT,
                        note="",
                        added_at=now,
                        updated_at=now,
                    )
                )
            have = conn.execute(
                select(witness_log_keys.c.vkey).where(
                    witness_log_keys.c.origin == origin, witness_log_keys.c.vkey == vkey
                )
            ).first()
            if have is not None:
                return False
            conn.execute(witness_log_keys.insert().values(origin=origin, vkey=vkey))
            return True

    def _log(self, conn: Connection, origin: str, *, lock: bool) -> WitnessedLog | None:
        query = select(witness_logs).where(witness_logs.c.origin == origin)
        if lock and self.db.dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return None
        keys = conn.execute(
            select(witness_log_keys.c.vkey)
            .where(witness_log_keys.c.origin == origin)
            .order_by(witness_log_keys.c.vkey)
        ).scalars()
        return WitnessedLog(
            row.origin, tuple(keys), int(row.size), bytes(row.root), row.note, row.updated_at
        )

    def get_log(self, origin: str) -> WitnessedLog | None:
        """The log ``origin`` and its latest cosigned checkpoint, or None if not witnessed."""
        with self.db.read() as conn:
            return self._log(conn, origin, lock=False)

    def logs(self) -> list[WitnessedLog]:
        """Every witnessed log, by origin."""
        with self.db.read() as conn:
            origins = conn.execute(
                select(witness_logs.c.origin).order_by(witness_logs.c.origin)
            ).scalars()
            out = [self._log(conn, o, lock=False) for o in list(origins)]
        return [log for log in out if log is not None]

    def by_origin_hash(self, digest_hex: str) -> WitnessedLog | None:
        """The log whose SHA-256(origin), lowercase hex, is ``digest_hex`` (monitoring)."""
        for log in self.logs():
            if hashlib.sha256(log.origin.encode()).hexdigest() == digest_hex:
                return log
        return None

    # -- the atomic check-and-update --------------------------------------------------

    @contextmanager
    def locked(self, origin: str) -> Iterator[tuple[Connection, WitnessedLog]]:
        """A write transaction holding ``origin``'s row locked; NotFound if not witnessed."""
        with self.db.write() as conn:
            log = self._log(conn, origin, lock=True)
            if log is None:
                raise NotFound(f"log {origin!r} is not witnessed here")
            yield conn, log

    def update(
        self, conn: Connection, log: WitnessedLog, size: int, root: bytes, note: str
    ) -> None:
        """Record the new cosigned checkpoint in the locked transaction (compare-and-swap)."""
        t = witness_logs
        result = conn.execute(
            t.update()
            .where(t.c.origin == log.origin, t.c.size == log.size, t.c.root == log.root)
            .values(size=size, root=root, note=note, updated_at=_now())
        )
        if result.rowcount != 1:  # belt and braces: the row lock should make this impossible
            raise Conflict(f"log {log.origin!r} changed during the request")

    def keep_evidence(
        self,
        conn: Connection,
        log: WitnessedLog,
        status: int,
        reason: str,
        size: int,
        root: bytes,
        request: str,
    ) -> None:
        """Keep a conflicting, validly signed request (once per distinct body)."""
        digest = hashlib.sha256(request.encode("utf-8")).digest()
        t = witness_evidence
        seen = conn.execute(
            select(t.c.id).where(t.c.origin == log.origin, t.c.digest == digest)
        ).first()
        if seen is not None:
            return
        conn.execute(
            t.insert().values(
                origin=log.origin,
                received_at=_now(),
                status=status,
                reason=reason,
                stored_size=log.size,
                stored_root=log.root,
                size=size,
                root=root,
                request=request,
                digest=digest,
            )
        )

    def evidence(self, origin: str | None = None) -> list[Evidence]:
        """Kept evidence, oldest first (of one origin, or all)."""
        t = witness_evidence
        query = select(t).order_by(t.c.id)
        if origin is not None:
            query = query.where(t.c.origin == origin)
        with self.db.read() as conn:
            return [
                Evidence(
                    int(r.id),
                    r.origin,
                    r.received_at,
                    int(r.status),
                    r.reason,
                    int(r.stored_size),
                    bytes(r.stored_root),
                    int(r.size),
                    bytes(r.root),
                    r.request,
                )
                for r in conn.execute(query)
            ]
