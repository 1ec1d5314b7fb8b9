"""The ``clearwall tokens`` commands: create (secret printed once), list and revoke API tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clearwall.cli.common import ConfigOption, DbOption, settings
from clearwall.store.db import open_store
from clearwall.store.records import TokenRole
from clearwall.store.tokens import TokenStore


def _tokens(db: str | None, config: Path | None) -> TokenStore:
    """The token repository of the store named by ``--db``, $CLEARWALL_DB or the config
    (``--config``, else $CLEARWALL_CONFIG), as every other command finds it."""
    return TokenStore(open_store(settings(db, config).db_url))


def register(app: typer.Typer) -> None:
    """Add the ``tokens`` command group to the root app."""
    tokens = typer.Typer(
        help="API tokens for the admin API (stored hashed; the secret is shown once).",
        no_args_is_help=True,
    )
    app.add_typer(tokens, name="tokens")

    @tokens.command("create")
    def create(
        role: Annotated[
            TokenRole,
            typer.Option(
                help="operator: everything; authority: its jurisdiction; auditor: read-only."
            ),
        ],
        authority: Annotated[
            int | None, typer.Option(help="Authority id (required for --role authority).")
        ] = None,
        label: Annotated[str, typer.Option(help="A note saying who holds the token.")] = "",
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Create a token and print its secret once; only its SHA-256 is stored."""
        secret, info = _tokens(db, config).create(role, authority, label)
        scope = f" for authority {info.authority_id}" if info.authority_id is not None else ""
        typer.echo(
            f"token {info.id}: {info.role.value}{scope}. Store it now, it is not shown again:",
            err=True,
        )
        typer.echo(secret)

    @tokens.command("list")
    def list_tokens(db: DbOption = None, config: ConfigOption = None) -> None:
        """List tokens (id, role, authority, label, created, revoked); never their secrets."""
        for t in _tokens(db, config).list():
            state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
            authority = "-" if t.authority_id is None else str(t.authority_id)
            typer.echo(
                f"{t.id}\t{t.role.value}\t{authority}\t{t.label or '-'}\t"
                f"{t.created_at:%Y-%m-%d}\t{state}"
            )

    @tokens.command("revoke")
    def revoke(
        token_id: Annotated[int, typer.Argument(help="The token's id (see `tokens list`).")],
        db: DbOption = None,
        config: ConfigOption = None,
    ) -> None:
        """Revoke a token; requests carrying it fail from now on."""
        _tokens(db, config).revoke(token_id)
        typer.echo(f"token {token_id} revoked")
