"""Shared test fixtures: where the real data lives, and fresh stores on real databases.

``sqlite_url`` is a SQLite file in the test's tmp dir; ``pg_url`` is a fresh database in a
throwaway PostgreSQL cluster started once per session (initdb into a temp dir, unix
socket only, trust auth, torn down at exit); ``store_url`` runs a test on both.
"""

from __future__ import annotations

import http.server
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pgserver import (
    PostgresCluster,
    PostgresFailed,
    PostgresUnavailable,
    postgres_cluster,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CLEARWALL_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data directory (../shared/data); tests read lists from it."""
    if not DATA.is_dir():
        pytest.fail(f"shared data directory missing: {DATA}")
    return DATA


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLAlchemy URL for a fresh SQLite file (created on first use)."""
    return f"sqlite:///{tmp_path / 'clearwall.db'}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """Start a private PostgreSQL cluster for the session (skip only if it cannot exist)."""
    try:
        with postgres_cluster() as cluster:
            yield cluster
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    except PostgresFailed as exc:
        pytest.fail(str(exc))


_db_counter = itertools.count()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A SQLAlchemy URL for a fresh, empty PostgreSQL database, dropped after the test."""
    name = f"cw_{os.getpid()}_{next(_db_counter)}"
    pg_cluster.admin(f'CREATE DATABASE "{name}"')
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The same test on a SQLite file and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def list_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving ``list.txt`` from a temporary directory."""
    (tmp_path / "www").mkdir()
    path = tmp_path / "www" / "list.txt"
    path.write_text("||sub-one.example^\n||sub-two.example^\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path / "www"), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/list.txt", path
    server.shutdown()
    server.server_close()
