"""Entry point of the ``clearwall`` command: assembles the command groups into one app.

Each group lives in its own module and exposes ``register(app)``; errors derived from
``ClearwallError`` become a one-line message on stderr and exit status 1. A command
named on the command line loads only its own module (``COMMANDS``): all of them take
about 0.56 s to import, ``serve``'s alone 0.10 s, which a restart waits for.
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
    "clearwall.cli.serve",  # serve (DNS gateway + web app + RPZ primary)
    "clearwall.cli.fleet",  # fleet config/key (resolvers fed by zone transfer)
    "clearwall.cli.jobs",  # jobs run (expiry, subscription refresh, witness retries)
    "clearwall.cli.web",  # tokens
    "clearwall.cli.probe",  # probe, probe-helper
    "clearwall.cli.configcmd",  # config validate/show
    "clearwall.cli.doctor",  # doctor: checks a deployment
    "clearwall.cli.requests",  # requests file/list/show/accept/refuse/withdraw
    "clearwall.cli.mirror",  # mirror add/list/remove/sync (follow a registry's log)
)

# The top-level name each module registers: what a command line needs to load.
COMMANDS: dict[str, str] = {
    "init": "clearwall.cli.policy",
    "jurisdictions": "clearwall.cli.policy",
    "authorities": "clearwall.cli.policy",
    "orders": "clearwall.cli.policy",
    "check": "clearwall.cli.policy",
    "export": "clearwall.cli.policy",
    "ledger": "clearwall.cli.ledger",
    "witness": "clearwall.cli.witness",
    "serve": "clearwall.cli.serve",
    "fleet": "clearwall.cli.fleet",
    "jobs": "clearwall.cli.jobs",
    "tokens": "clearwall.cli.web",
    "probe": "clearwall.cli.probe",
    "probe-helper": "clearwall.cli.probe",
    "config": "clearwall.cli.configcmd",
    "doctor": "clearwall.cli.doctor",
    "requests": "clearwall.cli.requests",
    "mirror": "clearwall.cli.mirror",
}


def _root() -> None:
    """clearwall: a transparent, jurisdiction-aware DNS policy gateway."""


def modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules a command line needs: the named command's alone, or all of
    them (for ``--help``, no command, or a name no module registers)."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    module = COMMANDS.get(command) if command is not None else None
    return (module,) if module is not None else COMMAND_MODULES


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """Build the root typer app with the command groups ``argv`` needs (default: every
    command group that is installed)."""
    app = typer.Typer(
        name="clearwall",
        help="clearwall: a transparent, jurisdiction-aware DNS policy gateway.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # A group, even when only one command is loaded (typer would make a lone command
    # the root, taking its name for an argument).
    app.callback()(_root)
    for module_name in COMMAND_MODULES if argv is None else modules_for(argv):
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
    app = build_app(sys.argv[1:])
    try:
        app(standalone_mode=True)
    except ClearwallError as exc:
        typer.echo(f"clearwall: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
