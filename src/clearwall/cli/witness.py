"""The ``clearwall witness`` commands: run a witness, print its key, manage its logs, evidence."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Annotated

import typer

from clearwall.cli.common import errors
from clearwall.config import HostPort

DEFAULT_DB = "sqlite:///var/witness.db"
DEFAULT_KEY = Path("var/witness.key")

WitnessDb = Annotated[
    str | None,
    typer.Option(
        "--db",
        help=f"Witness database URL (sqlite:///… or postgresql://…); default: "
        f"$CLEARWALL_WITNESS_DB, else {DEFAULT_DB}.",
        show_default=False,
    ),
]
KeyFile = Annotated[
    Path,
    typer.Option("--key", help="Witness key file; created (mode 0600) when missing."),
]
KeyName = Annotated[
    str | None,
    typer.Option(
        "--name",
        help="Key name for a new key file (default: <host name>/witness); an existing key"
        " must carry this name.",
    ),
]


def _db(url: str | None) -> str:
    return url or os.environ.get("CLEARWALL_WITNESS_DB") or DEFAULT_DB


def register(app: typer.Typer) -> None:
    """Add the ``witness`` command group to the root app."""
    witness = typer.Typer(
        help="Witness other logs: cosign checkpoints that extend what was seen (C2SP).",
        no_args_is_help=True,
    )
    app.add_typer(witness, name="witness")
    logs = typer.Typer(help="The logs this witness cosigns.", no_args_is_help=True)
    witness.add_typer(logs, name="logs")

    @witness.command("key")
    def key(key: KeyFile = DEFAULT_KEY, name: KeyName = None) -> None:
        """Print the witness's verifier key (C2SP vkey, type 0x04); logs and verifiers pin it."""
        from clearwall.witness.keys import load_or_create

        with errors():
            cosigner, created = load_or_create(key, name)
        if created:
            typer.echo(f"created witness key file {key} (mode 0600)", err=True)
        typer.echo(cosigner.verifier.vkey)

    @witness.command("serve")
    def serve(
        listen: Annotated[
            str, typer.Option("--listen", help="IP:PORT to serve the witness on.")
        ] = "127.0.0.1:7380",
        db: WitnessDb = None,
        key: KeyFile = DEFAULT_KEY,
        name: KeyName = None,
    ) -> None:
        """Serve POST /add-checkpoint and GET /<origin hash>/checkpoint until interrupted."""
        import uvicorn

        from clearwall.witness.keys import load_or_create
        from clearwall.witness.server import create_app
        from clearwall.witness.store import WitnessStore

        with errors():
            where = HostPort.parse(listen, 7380)
            cosigner, created = load_or_create(key, name)
            store = WitnessStore(_db(db))
            known = store.logs()
            app = create_app(store, cosigner)
        if created:
            typer.echo(f"created witness key file {key} (mode 0600)", err=True)
        if not known:
            typer.echo(
                "no logs to witness yet: add one with `clearwall witness logs add ORIGIN VKEY`",
                err=True,
            )
        typer.echo(f"witness {cosigner.verifier.vkey} on http://{where}", err=True)
        uvicorn.run(app, host=where.host, port=where.port, log_level="warning")

    @logs.command("add")
    def logs_add(
        origin: Annotated[str, typer.Argument(help="The log's origin (checkpoint first line).")],
        vkey: Annotated[str, typer.Argument(help="The log's verifier key (C2SP vkey).")],
        db: WitnessDb = None,
    ) -> None:
        """Witness the log ORIGIN, trusting checkpoints signed by VKEY (repeat to add keys)."""
        from clearwall.witness.protocol import add_log_key
        from clearwall.witness.store import WitnessStore

        with errors():
            added = add_log_key(WitnessStore(_db(db)), origin, vkey)
        if vkey.split("+", 1)[0] != origin:
            typer.echo(f"note: the key's name is not the origin {origin!r}", err=True)
        typer.echo(f"{'witnessing' if added else 'already witnessing'} {origin}")

    @logs.command("list")
    def logs_list(db: WitnessDb = None) -> None:
        """List the witnessed logs: origin, latest cosigned size and time, keys."""
        from clearwall.witness.store import WitnessStore

        with errors():
            found = WitnessStore(_db(db)).logs()
        for log in found:
            when = log.updated_at.isoformat(timespec="seconds") if log.note else "never cosigned"
            typer.echo(f"{log.origin}\tsize {log.size}\t{when}\t{' '.join(log.vkeys)}")

    @witness.command("evidence")
    def evidence(
        db: WitnessDb = None,
        origin: Annotated[
            str | None, typer.Option("--origin", help="Only this log's evidence.")
        ] = None,
        full: Annotated[
            bool, typer.Option("--full", help="Print each request body (the log-signed proof).")
        ] = False,
    ) -> None:
        """List checkpoints that did not extend the cosigned one (signed by the log: proof)."""
        from clearwall.witness.store import WitnessStore

        with errors():
            found = WitnessStore(_db(db)).evidence(origin)
        if not found:
            typer.echo("no evidence kept")
            return
        for e in found:
            typer.echo(
                f"#{e.id} {e.received_at.isoformat(timespec='seconds')} {e.origin} HTTP "
                f"{e.status}: {e.reason}; sent size {e.size} root "
                f"{base64.b64encode(e.root).decode()}, held size {e.stored_size} root "
                f"{base64.b64encode(e.stored_root).decode()}"
            )
            if full:
                typer.echo(e.request)
