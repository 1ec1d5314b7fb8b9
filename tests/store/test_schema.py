"""Migrations create exactly the declared schema, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from clearwall.store import Store, open_store, schema


def test_migrations_match_metadata(store: Store) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, schema.metadata) == []
        assert ctx.get_current_revision() == "0001_initial"


def test_migrate_twice_is_harmless(store_url: str) -> None:
    first = open_store(store_url, migrate=True)
    first.migrate()
    assert first.log_size() == 0
    with first.read() as conn:
        assert conn.execute(select(schema.log_head)).all() == [(1, 0)]
    first.dispose()


def test_uninitialized_store_says_what_to_do(sqlite_url: str) -> None:
    import pytest

    from clearwall.errors import StoreError

    with pytest.raises(StoreError, match="clearwall init"):
        open_store(sqlite_url)
    # Asking must not create an empty file that later looks like an initialized store.
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()


def test_checkpoints(store: Store) -> None:
    assert store.latest_checkpoint() is None
    store.add_checkpoint(2, b"\x01" * 32, "note 2\n")
    store.add_checkpoint(5, b"\x02" * 32, "note 5\n")
    store.add_checkpoint(5, b"\x03" * 32, "ignored\n")
    latest = store.latest_checkpoint()
    assert latest is not None and latest.tree_size == 5 and latest.root_hash == b"\x02" * 32
    assert latest.created_at.tzinfo is dt.UTC
    assert [c.tree_size for c in store.checkpoints()] == [2, 5]


def test_postgres_url_short_form_is_accepted() -> None:
    store = Store("postgresql://u@/db?host=/tmp")
    assert store.engine.url.drivername == "postgresql+psycopg"


def test_in_memory_twin() -> None:
    """``sqlite://`` is a private in-memory store for fast single-threaded tests."""
    from clearwall.store import PolicyService

    store = open_store("sqlite://", migrate=True)
    service = PolicyService(store)
    service.add_jurisdiction("xa", "A")
    assert [j.code for j in service.jurisdictions()] == ["xa"]
    assert open_store("sqlite://", migrate=True).log_size() == 0  # another, empty twin
