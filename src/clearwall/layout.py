"""Where a store's files live: its ledger key, its public log and its compiled snapshots.

A store is one thing: its files are found from the store URL and the config, never from
the working directory, so every command finds them from anywhere. Unless the config
names them (``[ledger] key_file`` and ``tiles_dir``; relative paths in a config file are
relative to that file), a SQLite store ``D/NAME.db`` keeps

- its ledger signer key in ``D/NAME.ledger.key``,
- its public log (checkpoint, tiles, rule files) in ``D/NAME-log/``,
- the snapshots a gateway compiles from it in ``D/snapshots/``,
- the query log of a gateway serving it, when on, in ``D/querylog/``.
- the self-signed TLS pair ``clearwall init`` makes for the encrypted listeners in
  ``D/tls/`` (unless ``[dns] tls_cert`` and ``tls_key`` name one).

A store that is not a file (PostgreSQL) has no place of its own on disk: the config must
name both ledger paths, and its snapshots go beside the key file.

Stores made before this layout kept ``./var/ledger.key`` and ``./var/log`` relative to
the directory a command ran from; ``make run``'s ``var/clearwall.db`` thus has them in
its own directory. Those files are still found: when a SQLite store's own ledger files
do not exist, ``D/ledger.key`` and ``D/log/`` are used if the store recorded the
checkpoint published there (so another store's files are never taken by mistake).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import os
import sqlite3
from pathlib import Path

from clearwall.config import LedgerConfig, LoggingConfig
from clearwall.errors import ConfigError

LEGACY_KEY = "ledger.key"
LEGACY_TILES = "log"
SNAPSHOTS = "snapshots"
QUERYLOG = "querylog"


def sqlite_file(store_url: str) -> Path | None:
    """The absolute database file of a SQLite store URL (``sqlite:///path[?…]``), else None.

    A relative path is taken relative to the working directory, as any path given on a
    command line; what derives from it is absolute from then on.
    """
    scheme, sep, rest = store_url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(os.path.abspath(path))


def resolve_ledger(ledger: LedgerConfig, store_url: str) -> LedgerConfig:
    """``ledger`` with absolute ``key_file`` and ``tiles_dir`` for the store at ``store_url``.

    Raises ConfigError naming the missing option when the store is not a SQLite file and
    the config does not say where its ledger lives.
    """
    key, tiles = ledger.key_file, ledger.tiles_dir
    db = sqlite_file(store_url)
    if key is None or tiles is None:
        if db is None and not store_url.startswith(("postgres", "sqlite")):
            return ledger  # not a store at all: opening it says why (unsupported database)
        if db is None:
            missing = " and ".join(
                name for name, value in (("key_file", key), ("tiles_dir", tiles)) if value is None
            )
            raise ConfigError(
                f"[ledger] {missing} must be set for a store that is not a SQLite file "
                f"({_display(store_url)}): the ledger key and the public log need a "
                "directory of their own (see docs/store.md, 'Where a store's files live')"
            )
        legacy = _legacy(db) if key is None and tiles is None else None
        if legacy is not None:
            key, tiles = legacy
        key = key if key is not None else db.with_name(f"{db.stem}.ledger.key")
        tiles = tiles if tiles is not None else db.with_name(f"{db.stem}-log")
    return dataclasses.replace(
        ledger, key_file=Path(os.path.abspath(key)), tiles_dir=Path(os.path.abspath(tiles))
    )


def snapshot_dir(store_url: str, ledger: LedgerConfig) -> Path:
    """Where a gateway keeps the snapshots it compiles from ``store_url`` unless told:
    ``snapshots/`` beside a SQLite store's file, else beside the ledger key file."""
    db = sqlite_file(store_url)
    if db is not None:
        return db.parent / SNAPSHOTS
    return resolve_ledger(ledger, store_url).key_path().parent / SNAPSHOTS


def querylog_dir(store_url: str, ledger: LedgerConfig) -> Path:
    """Where the query log of a gateway of ``store_url`` is kept unless ``[logging]
    query_log_dir`` says: ``querylog/`` beside a SQLite store's file, else beside the
    ledger key file."""
    db = sqlite_file(store_url)
    if db is not None:
        return db.parent / QUERYLOG
    return resolve_ledger(ledger, store_url).key_path().parent / QUERYLOG


def query_log_location(logging: LoggingConfig, store_url: str, ledger: LedgerConfig) -> Path:
    """``[logging] query_log_dir`` if set, else the store's ``querylog_dir``."""
    if logging.query_log_dir is not None:
        return logging.query_log_dir
    return querylog_dir(store_url, ledger)


def _legacy(db: Path) -> tuple[Path, Path] | None:
    """The old ``var/ledger.key`` and ``var/log`` beside ``db``, when they belong to it."""
    key, tiles = db.parent / LEGACY_KEY, db.parent / LEGACY_TILES
    own_key = db.with_name(f"{db.stem}.ledger.key")
    if own_key.exists() or not key.is_file() or not db.is_file():
        return None
    published = _published_head(tiles / "checkpoint")
    if published is None or not _store_recorded(db, *published):
        return None
    return key, tiles


def _published_head(checkpoint: Path) -> tuple[int, bytes] | None:
    """(size, root) of a checkpoint file, unverified: only matched against the store."""
    try:
        body = checkpoint.read_text(encoding="utf-8").split("\n\n", 1)[0].split("\n")
        return int(body[1]), base64.b64decode(body[2], validate=True)
    except (OSError, UnicodeDecodeError, IndexError, ValueError, binascii.Error):
        return None


def _store_recorded(db: Path, size: int, root: bytes) -> bool:
    """Whether the SQLite store ``db`` recorded the checkpoint (size, root) as its own."""
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT 1 FROM checkpoints WHERE tree_size = ? AND root_hash = ?", (size, root)
            ).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def _display(store_url: str) -> str:
    """A store URL without its password, for messages."""
    scheme, sep, rest = store_url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return store_url
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else store_url
