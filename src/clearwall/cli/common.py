"""Shared CLI plumbing: the --db/--config options, store opening, errors and progress bars."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from clearwall.config import Config, load_config
from clearwall.errors import ClearwallError

if TYPE_CHECKING:  # imported where used: `clearwall serve` execs the gateway without them
    from clearwall.store import PolicyService, Store
    from clearwall.store.reader import PolicyReader

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store URL (sqlite:///path or postgresql://user@host/db); "
        "default: $CLEARWALL_DB, else the config's [store] url.",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (TOML); default: $CLEARWALL_CONFIG if set.",
        show_default=False,
    ),
]

stderr = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print ``clearwall: error: message`` on one line to stderr and exit with status 1."""
    text = " ".join(str(message).split())
    typer.echo(f"clearwall: error: {text}", err=True)
    raise typer.Exit(1)


@contextmanager
def errors() -> Iterator[None]:
    """Turn clearwall and OS errors raised inside the block into a one-line failure."""
    try:
        yield
    except ClearwallError as exc:
        fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        fail(f"{where}{exc.strerror or exc}")


@dataclass(frozen=True)
class Settings:
    """The config and the store URL a command runs with; ``config.ledger`` and
    ``config.xfr`` hold the store's own file paths (``clearwall.layout``)."""

    config: Config
    config_path: Path | None
    db_url: str


def config_path(config: Path | None) -> Path | None:
    """The config file a command reads: --config, else $CLEARWALL_CONFIG, else none."""
    if config is None and os.environ.get("CLEARWALL_CONFIG"):
        return Path(os.environ["CLEARWALL_CONFIG"])
    return config


def settings(db: str | None, config: Path | None) -> Settings:
    """Resolve the config file and the store URL (--db, then $CLEARWALL_DB, then the
    config), and the paths of that store's files (ledger, TSIG keys)."""
    from clearwall.layout import resolve

    path = config_path(config)
    cfg = load_config(path)
    url = db or os.environ.get("CLEARWALL_DB") or cfg.store.url
    return Settings(resolve(cfg, url), path, url)


def ledger_sync(cfg: Config, store: Store) -> Callable[[], None] | None:
    """The after-commit hook that writes tiles and a signed checkpoint, if a key exists.

    Without a ledger key (a store set up before ``init`` made one, or a read-only copy) the
    entries are still committed; the ledger writes their tiles on its next sync (a
    gateway does so before it enforces them).
    """
    if not cfg.ledger.key_path().exists():
        return None
    from clearwall.ledger.log import TransparencyLog

    log = TransparencyLog(store, cfg.ledger)

    def sync() -> None:
        log.sync()

    return sync


def published_size(s: Settings, store: Store) -> int:
    """Publish every committed log entry and return the published checkpoint's size: what
    ``check`` and ``export`` read the policy at, as a gateway enforces it (nothing the
    public log does not show)."""
    from clearwall.ledger.log import TransparencyLog

    return TransparencyLog(store, s.config.ledger).publish()


def open_service(
    db: str | None, config: Path | None, *, migrate: bool = False
) -> tuple[PolicyService, Settings]:
    """Open the store named by the options and a PolicyService over it (with ledger sync)."""
    from clearwall.store import PolicyService, open_store

    s = settings(db, config)
    store = open_store(s.db_url, migrate=migrate)
    return PolicyService(store, after_commit=ledger_sync(s.config, store)), s


def open_reader(db: str | None, config: Path | None) -> tuple[PolicyReader, Settings]:
    """Open the store named by the options for reading its records."""
    from clearwall.store import open_store
    from clearwall.store.reader import PolicyReader

    s = settings(db, config)
    return PolicyReader(open_store(s.db_url)), s


def is_tty() -> bool:
    """True when stderr is a terminal (progress bars are drawn only then)."""
    return sys.stderr.isatty()


@contextmanager
def file_progress(path: Path, label: str) -> Iterator[Callable[[int], None]]:
    """A byte progress bar over reading ``path``; yields ``callback(bytes_read)``."""
    total = path.stat().st_size if path.exists() else 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not is_tty(),
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def count_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar over a count; yields ``callback(done, total)``."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        console=stderr,
        transient=True,
        disable=not is_tty(),
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
