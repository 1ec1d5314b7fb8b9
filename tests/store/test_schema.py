"""Migrations create exactly the declared schema, on SQLite and PostgreSQL, idempotently."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from clearwall.store import Store, open_store, schema
from clearwall.store.reader import PolicyReader


def test_migrations_match_metadata(store: Store) -> None:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, schema.metadata) == []
        assert ctx.get_current_revision() == "0004_mirrors"


def test_the_code_names_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    from clearwall.store.db import MIGRATIONS, SCHEMA_REVISION

    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == SCHEMA_REVISION


def test_a_store_of_an_older_schema_is_refused_until_migrated(store_url: str) -> None:
    """A store an older clearwall made (here: at the jurisdictions migration) is refused
    with the fix, not served until a read of a newer table fails; `init` migrates it."""
    import pytest

    from clearwall.errors import StoreError

    old = Store(store_url)
    old.migrate("0002_log_jurisdictions")
    with pytest.raises(StoreError, match=r"0002_log_jurisdictions.*run `clearwall init`"):
        open_store(store_url)
    open_store(store_url, migrate=True).dispose()  # what `clearwall init` does
    open_store(store_url).dispose()


def test_upgrade_logs_jurisdictions_stored_before_they_were_logged(store_url: str) -> None:
    """A store from before jurisdiction-set entries: the upgrade logs each jurisdiction
    once, as stored, so the loader keeps enforcing its networks; re-running adds nothing."""
    from clearwall.ledger import entries
    from clearwall.store.loader import load_policy

    old = Store(store_url)
    old.migrate("0001_initial")
    with old.write() as conn:  # what add_jurisdiction wrote then: rows, no entry
        conn.execute(schema.jurisdictions.insert().values(code="xa", name="A"))
        conn.execute(
            schema.jurisdiction_networks.insert(), [{"jurisdiction": "xa", "cidr": "10.7.0.0/16"}]
        )
    assert load_policy(old)[1] == []  # not on the log: not enforced
    old.migrate()
    old.migrate()
    [entry] = old.log_entries()
    event = __import__("json").loads(entry.data)
    assert event["type"] == entries.JurisdictionSet.TYPE
    assert event["jurisdiction"] == {"code": "xa", "name": "A", "networks": ["10.7.0.0/16"]}
    [xa] = load_policy(old)[1]
    assert [str(n) for n in xa.networks] == ["10.7.0.0/16"]
    old.dispose()


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
    assert latest.note == "note 5\n"
    assert [c.tree_size for c in store.checkpoints()] == [2, 5]
    # Late cosignatures replace the note of that checkpoint only (same size and root).
    store.replace_checkpoint_note(5, b"\x03" * 32, "another root\n")
    store.replace_checkpoint_note(5, b"\x02" * 32, "note 5\ncosigned\n")
    assert [c.note for c in store.checkpoints()] == ["note 2\n", "note 5\ncosigned\n"]


def test_postgres_url_short_form_is_accepted() -> None:
    store = Store("postgresql://u@/db?host=/tmp")
    assert store.engine.url.drivername == "postgresql+psycopg"


def test_in_memory_twin() -> None:
    """``sqlite://`` is a private in-memory store for fast single-threaded tests."""
    from clearwall.store import PolicyService

    store = open_store("sqlite://", migrate=True)
    service = PolicyService(store)
    service.add_jurisdiction("xa", "A")
    assert [j.code for j in PolicyReader(service.store).jurisdictions()] == ["xa"]
    assert open_store("sqlite://", migrate=True).log_size() == 0  # another, empty twin
