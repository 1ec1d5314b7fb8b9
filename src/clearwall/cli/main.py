"""Entry point of the ``clearwall`` command: assembles the command groups into one app.

Each group lives in its own module and exposes ``register(app)``; errors derived from
``ClearwallError`` become a one-line message on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import sys

import typer

from clearwall.errors import ClearwallError

# Each module registers its commands on the root app; the order here is the order of
# `clearwall --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "clearwall.cli.policy",  # init, jurisdictions, authorities, orders, check, export
    "clearwall.cli.ledger",  # ledger key/verify/prove/verify-proof/serve
    "clearwall.cli.witness",  # witness serve/key/logs/evidence
    "clearwall.cli.serve",  # serve (DNS gateway + web app)
    "clearwall.cli.jobs",  # jobs run (expiry, subscription refresh, witness retries)
    "clearwall.cli.web",  # tokens
    "clearwall.cli.probe",  # probe, probe-helper
    "clearwall.cli.configcmd",  # config validate/show
    "clearwall.cli.doctor",  # doctor: checks a deployment
)


def build_app() -> typer.Typer:
    """Build the root typer app with every command group that is installed."""
    app = typer.Typer(
        name="clearwall",
        help="clearwall: a transparent, jurisdiction-aware DNS policy gateway.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that command group is not part of this build
            raise
        module.register(app)
    return app


def main() -> None:
    """Run the CLI; turn clearwall errors into a one-line message and exit status 1."""
    app = build_app()
    try:
        app(standalone_mode=True)
    except ClearwallError as exc:
        typer.echo(f"clearwall: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
