"""Shared test fixtures: where the real data lives, and fresh stores on real databases.

``sqlite_url`` is a SQLite file in the test's tmp dir; ``pg_url`` is a fresh database in a
throwaway PostgreSQL cluster started once per session (initdb into a temp dir, unix
socket only, trust auth, torn down at exit); ``store_url`` runs a test on both.
"""

from __future__ import annotations

import glob
import http.server
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway PostgreSQL server reachable over a unix socket."""

    bindir: Path
    datadir: Path
    socket_dir: Path
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) for ``database`` on this cluster."""
        return (
            f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"
        )

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction on the maintenance database."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """Start a private PostgreSQL cluster for the session (skip only if it cannot exist)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)")
    prefix: list[str] = []
    if os.geteuid() == 0:
        # The server refuses to run as root: run it as the distribution's postgres user.
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no 'postgres' system user to run the server as")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="clearwall-pg-"))
    if prefix:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    datadir, socket_dir = base / "data", base
    user = "postgres"
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-A",
            "trust",
            "-U",
            user,
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log = base / "server.log"
    options = (
        f"-p {port} -k {socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    )
    started = subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-o",
            options,
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "start",
        ],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        text = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {text[-2000:]}")
    cluster = PostgresCluster(bindir, datadir, socket_dir, port, user)
    try:
        yield cluster
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


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
