"""Alembic environment: runs revisions on the connection ``Store.migrate`` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from clearwall.store.schema import metadata

config = context.config


def run_migrations_online() -> None:
    """Run revisions on the caller's connection, or on a new one from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
        return
    _run(connection)


def _run(connection: object) -> None:
    # render_as_batch lets later revisions ALTER tables on SQLite by copy-and-move.
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("clearwall migrations run online only (Store.migrate)")
run_migrations_online()
