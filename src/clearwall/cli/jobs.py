"""The ``clearwall jobs`` commands: run the scheduled upkeep once (``serve`` runs it always)."""

from __future__ import annotations

from typing import Annotated

import typer

from clearwall.cli.common import ConfigOption, DbOption, errors, fail, open_service

JobNames = Annotated[
    list[str],
    typer.Argument(
        metavar="JOB...", help="expire, refresh, witnesses, mirrors, or all (in that order)."
    ),
]


def run(names: JobNames, db: DbOption = None, config: ConfigOption = None) -> None:
    """Run jobs once now, as `clearwall serve` runs them every minute (and witness
    retries every ledger.witness_retry seconds)."""
    from clearwall.jobs.runner import JOBS, Jobs, run_once
    from clearwall.ledger.log import TransparencyLog

    wanted = list(JOBS) if names == ["all"] else names
    unknown = [n for n in wanted if n not in JOBS]
    if unknown or not wanted:
        fail(f"unknown job {', '.join(unknown) or '(none)'}: choose {', '.join(JOBS)} or all")
    with errors():
        service, s = open_service(db, config)
        tlog = TransparencyLog(service.store, s.config.ledger)
        for name, done in run_once(Jobs(s.config, service, tlog), wanted):
            typer.echo(f"{name}: {done}")


def register(app: typer.Typer) -> None:
    """Add the ``jobs`` command group to the root app."""
    group = typer.Typer(
        help="Scheduled upkeep: order expiry, subscription refresh, witness retries, mirrors.",
        no_args_is_help=True,
    )
    group.command("run")(run)
    app.add_typer(group, name="jobs")
