"""A throwaway PostgreSQL server for the tests and the benchmarks: initdb into a temporary
directory, unix socket only, trust auth, no fsync, stopped and removed on exit."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.ports import free_port


class PostgresUnavailable(Exception):
    """The PostgreSQL server cannot run on this machine."""


class PostgresFailed(Exception):
    """The PostgreSQL server did not start."""


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


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Start a private PostgreSQL cluster, stopped and removed on exit.

    Raises PostgresUnavailable when the server cannot exist here (no binaries, root
    without a postgres user) and PostgresFailed when it did not start.
    """
    bindir = _pg_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)"
        )
    prefix: list[str] = []
    if os.geteuid() == 0:
        # The server refuses to run as root: run it as the distribution's postgres user.
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root and no 'postgres' system user to run the server as"
            ) from None
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
    port = free_port()
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
        raise PostgresFailed(f"PostgreSQL did not start: {text[-2000:]}")
    cluster = PostgresCluster(bindir, datadir, socket_dir, port, user)
    try:
        yield cluster
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
