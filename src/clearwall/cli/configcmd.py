"""The ``clearwall config`` commands: validate a config file and show the effective config."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from clearwall.cli.common import ConfigOption, DbOption, config_path, errors, settings
from clearwall.config import HostPort, Secondary


def _plain(value: Any) -> Any:
    if isinstance(value, HostPort | Secondary):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to the root app."""
    group = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)
    app.add_typer(group, name="config")

    @group.command("validate")
    def validate(
        file: Annotated[Path | None, typer.Argument(help="Config file (TOML) to check.")] = None,
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Load a config file; exit 0 when every option is valid for the store it names
        (or --db's), else name the bad one."""
        with errors():
            path = file or config_path(config)
            settings(db, path)  # also: a PostgreSQL store needs its [ledger] paths, and
            # its [xfr] keys_file when secondaries name keys
            if path is None:
                typer.echo("no config file given; the built-in defaults are valid")
                return
            typer.echo(f"{path}: ok")

    @group.command("show")
    def show(db: DbOption = None, config: ConfigOption = None) -> None:
        """Print the effective configuration (file, then defaults) as JSON, with the
        paths of the store's files (ledger, TSIG keys) resolved."""
        with errors():
            s = settings(db, config)
            data = _plain(s.config)
            data["store"]["effective_url"] = s.db_url
            typer.echo(json.dumps(data, indent=2))
