"""Opening a store: engine setup per backend, migrations, and the log's read helpers."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool, StaticPool

from clearwall.errors import NotFound, StoreError
from clearwall.ledger.entries import sorted_rule_lines
from clearwall.ledger.logstore import LogEntry, LogRow, StoredCheckpoint
from clearwall.store import schema
from clearwall.store.notify import notify_commit

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str) -> str:
    """Map the short PostgreSQL scheme to the psycopg 3 driver SQLAlchemy should use."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def _sqlite_setup(engine: Engine) -> None:
    """Give SQLite real transactions: foreign keys on, WAL, and BEGIN IMMEDIATE for writes.

    pysqlite's own implicit transactions begin lazily and would let two writers both read
    the log head and then collide; with autocommit at the driver and an explicit
    ``BEGIN IMMEDIATE`` for write transactions the write lock is taken up front, which is
    what ``SELECT … FOR UPDATE`` gives on PostgreSQL.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA busy_timeout = 30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get("clearwall_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


class Store:
    """A policy database: its engine, its migrations and the log tables' read side.

    Writes go through ``PolicyService``; for the ledger it is a ``LogStore``: committed
    entries (``log_size``, ``log_entries``, ``log_rows``), checkpoints
    (``add_checkpoint``, ``checkpoints``) and the rule lines of orders.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Create the engine for ``url`` (``sqlite:///path`` or ``postgresql://…``)."""
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise StoreError(f"invalid database URL {url!r}") from exc
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {"echo": echo}
        self.sqlite_path: Path | None = None
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                self.sqlite_path = Path(database)
                kwargs["poolclass"] = NullPool  # each process/thread opens its own handle
            else:
                # The in-memory twin (``sqlite://``) for fast tests: one shared connection,
                # since every new connection would see a new, empty database.
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {"check_same_thread": False}
        elif self.dialect == "postgresql":
            kwargs["pool_pre_ping"] = True
        else:
            raise StoreError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        try:
            self.engine = create_engine(self.url, **kwargs)
        except (ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot open database {url!r}: {exc}") from exc
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)

    def __repr__(self) -> str:
        return f"Store({self!s})"

    def __str__(self) -> str:
        """The store's URL, without a password."""
        return self.engine.url.render_as_string(hide_password=True)

    # -- connections -------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection inside a read transaction that sees one consistent snapshot.

        SQLite in WAL mode gives a read transaction a snapshot by itself; PostgreSQL needs
        REPEATABLE READ, else the loader could read the log head before a concurrent commit
        and the orders after it.
        """
        try:
            with self.engine.connect() as raw:
                conn = raw
                if self.dialect == "postgresql":
                    conn = raw.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database read failed: {_short(exc)}") from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a write transaction; commits on exit, rolls back on error."""
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(clearwall_write=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed: {_short(exc)}") from exc

    def dispose(self) -> None:
        """Close pooled connections (tests and short-lived commands call this)."""
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with Alembic (the initial revision creates all)."""
        from alembic import command
        from alembic.config import Config

        if self.sqlite_path is not None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                conn.commit()
        except SQLAlchemyError as exc:
            raise StoreError(f"migration failed: {_short(exc)}") from exc

    def is_initialized(self) -> bool:
        """True when the schema exists (``clearwall init`` has run).

        A SQLite file that does not exist is not created by asking.
        """
        if self.sqlite_path is not None and not self.sqlite_path.exists():
            return False
        try:
            return inspect(self.engine).has_table("log_head")
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open database: {_short(exc)}") from exc

    def require_initialized(self) -> None:
        """Raise StoreError with the fix when the store has no schema yet, or one of
        another version (a store made by an older clearwall, not migrated yet: without
        this, the first read of a newer table fails in the middle of serving)."""
        where = self.engine.url.render_as_string(hide_password=True)
        if not self.is_initialized():
            raise StoreError(f"no clearwall store at {where} (run `clearwall init` first)")
        revision = self.schema_revision()
        if revision != SCHEMA_REVISION:
            raise StoreError(
                f"the store at {where} has schema revision {revision or 'none'}, this "
                f"clearwall needs {SCHEMA_REVISION}: run `clearwall init` on it (it applies "
                "pending migrations; back the store up first)"
            )

    def schema_revision(self) -> str | None:
        """The Alembic revision the schema is at (None: not recorded)."""
        try:
            with self.engine.connect() as conn:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None
        return None if found is None else str(found)

    # -- the log tables (``ledger.logstore.LogStore``) -------------------------------

    def log_size(self) -> int:
        """Number of committed log entries: the policy version."""
        with self.read() as conn:
            size = conn.execute(select(schema.log_head.c.size)).scalar()
        return int(size or 0)

    def log_entries(self, start: int = 0, end: int | None = None) -> list[LogEntry]:
        """Committed entries with ``start <= index < end`` (``end`` defaults to the size)."""
        return [LogEntry(*row) for row in self.log_rows(start, end)]

    def log_entry_time(self, index: int) -> dt.datetime | None:
        """When log entry ``index`` was committed (UTC), or None when there is none."""
        t = schema.log_entries
        with self.read() as conn:
            moment = conn.execute(select(t.c.created_at).where(t.c.idx == index)).scalar()
        if moment is None:
            return None
        assert isinstance(moment, dt.datetime)
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    def log_rows(
        self, start: int = 0, end: int | None = None, batch: int = 20_000
    ) -> Iterator[LogRow]:
        """Committed entries ``start <= index < end`` as (index, data, leaf hash), streamed
        in one read transaction.

        Reads the three columns through the driver's own cursor (no row objects, no
        timestamp decoding), so a million entries stream in a few seconds.
        """
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        sql = f"SELECT idx, data, leaf_hash FROM log_entries WHERE idx >= {mark}"
        params: tuple[int, ...] = (start,)
        if end is not None:
            sql += f" AND idx < {mark}"
            params = (start, end)
        with self.read() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            cur = driver.cursor()
            try:
                cur.execute(sql + " ORDER BY idx", params)
                while rows := cur.fetchmany(batch):
                    for idx, data, lh in rows:
                        yield int(idx), bytes(data), bytes(lh)
            finally:
                cur.close()

    def add_checkpoint(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Record a signed checkpoint; recording the same tree size again is a no-op."""
        t = schema.checkpoints
        with self.write() as conn:
            exists = conn.execute(select(t.c.tree_size).where(t.c.tree_size == tree_size)).first()
            if exists is None:
                conn.execute(
                    t.insert().values(
                        tree_size=tree_size, root_hash=root_hash, note=note, created_at=utcnow()
                    )
                )
                # Nodes that enforce only what the signer signed wake on it (``store.notify``).
                notify_commit(conn, tree_size)

    def replace_checkpoint_note(self, tree_size: int, root_hash: bytes, note: str) -> None:
        """Store ``note`` for the recorded checkpoint (size, root): late witness
        cosignatures reach the nodes that serve the signer's note (``docs/cluster.md``)."""
        t = schema.checkpoints
        with self.write() as conn:
            done = conn.execute(
                update(t)
                .where(t.c.tree_size == tree_size, t.c.root_hash == root_hash)
                .values(note=note)
            )
            if done.rowcount:
                notify_commit(conn, tree_size)

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, oldest first."""
        t = schema.checkpoints
        with self.read() as conn:
            rows = conn.execute(
                select(t.c.tree_size, t.c.root_hash, t.c.note).order_by(t.c.tree_size)
            )
            return [StoredCheckpoint(int(r[0]), bytes(r[1]), str(r[2])) for r in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size, if any."""
        t = schema.checkpoints
        query = select(t.c.tree_size, t.c.root_hash, t.c.note).order_by(t.c.tree_size.desc())
        with self.read() as conn:
            r = conn.execute(query.limit(1)).first()
        return None if r is None else StoredCheckpoint(int(r[0]), bytes(r[1]), str(r[2]))

    def order_rule_lines(self, order_id: int) -> list[bytes] | None:
        """The sorted canonical rule lines an order holds now (None if no such order): what
        the public log's rule file of its current version holds."""
        from clearwall.store import repositories

        with self.read() as conn:
            try:
                repositories.get_order(conn, order_id)
            except NotFound:
                return None
            return sorted_rule_lines(repositories.iter_rules(conn, order_id))


def _short(exc: SQLAlchemyError) -> str:
    """The first line of a driver error, without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


SCHEMA_REVISION = "0004_mirrors"
"""The newest migration, which this code's schema is (tests/store/test_schema.py checks it
is Alembic's head): a store at another revision is refused until migrated."""


def open_store(url: str | None = None, *, migrate: bool = False) -> Store:
    """Open the store at ``url`` (default: ``$CLEARWALL_DB`` or the config default).

    With ``migrate`` the schema is created or upgraded first; otherwise a store without a
    schema raises StoreError telling the user to run ``clearwall init``.
    """
    if url is None:
        from clearwall.config import StoreConfig

        url = os.environ.get("CLEARWALL_DB") or StoreConfig().url
    store = Store(url)
    if migrate:
        store.migrate()
    else:
        store.require_initialized()
    return store
