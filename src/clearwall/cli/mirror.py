"""The ``clearwall mirror`` commands: follow a registry's public log and adopt its orders."""

from __future__ import annotations

from typing import Annotated

import typer

from clearwall.cli.common import ConfigOption, DbOption, errors, fail, open_service

KeyOption = Annotated[
    str,
    typer.Option("--key", help="The registry's checkpoint verifier key (vkey text or file)."),
]
JurisdictionOption = Annotated[
    list[str],
    typer.Option(
        "--jurisdiction",
        "-j",
        help="A registry jurisdiction to adopt: CODE (the same code here) or "
        "REGISTRY=LOCAL (repeat for several).",
    ),
]
WitnessOption = Annotated[
    list[str] | None,
    typer.Option("--witness", help="A witness vkey (text or file) whose cosignature counts."),
]
QuorumOption = Annotated[
    int | None,
    typer.Option(
        "--quorum",
        help="How many --witness cosignatures a checkpoint needs (default: all of them).",
    ),
]
Which = Annotated[str, typer.Argument(metavar="MIRROR", help="Mirror id or registry URL.")]


def _text(value: str) -> str:
    """A key given as text or as the path of a file holding it."""
    from pathlib import Path

    path = Path(value)
    try:
        return path.read_text(encoding="utf-8").strip() if path.is_file() else value.strip()
    except OSError:
        return value.strip()


def add(
    url: Annotated[str, typer.Argument(help="The registry's base URL (it serves /log/).")],
    key: KeyOption,
    jurisdiction: JurisdictionOption,
    witness: WitnessOption = None,
    quorum: QuorumOption = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Follow a registry: verify its log and adopt its orders for the named jurisdictions
    (`clearwall serve` syncs every [federation] interval; `mirror sync` now)."""
    from clearwall.federation import records

    with errors():
        service, _ = open_service(db, config, migrate=True)
        mapping = records.parse_mapping(jurisdiction)
        witnesses = [_text(w) for w in witness or []]
        m = records.add(service.store, url, _text(key), mapping, witnesses, quorum)
    pairs = ", ".join(f"{r}->{loc}" for r, loc in sorted(m.jurisdictions.items()))
    typer.echo(f"mirror {m.id}: {m.url} (adopting {pairs}); run `clearwall mirror sync`")


def list_(db: DbOption = None, config: ConfigOption = None) -> None:
    """List the registries followed, how far their log is verified and the last attempt."""
    from clearwall.federation import records

    with errors():
        service, _ = open_service(db, config, migrate=True)
        mirrors = records.list_all(service.store)
        evidence = records.evidence(service.store)
    if not mirrors:
        typer.echo("no mirrors")
    for m in mirrors:
        pairs = ",".join(f"{r}->{loc}" for r, loc in sorted(m.jurisdictions.items()))
        synced = m.synced_at.isoformat(timespec="seconds") if m.synced_at else "never"
        typer.echo(
            f"{m.id}\t{m.url}\t{pairs}\tsize {m.size}\tsynced {synced}\t{m.status}"
            + (f": {m.last_error}" if m.last_error else "")
        )
        for e in evidence:
            if e.mirror_id == m.id:
                typer.echo(f"\tEVIDENCE {e.id} {e.at.isoformat(timespec='seconds')}: {e.detail}")


def remove(
    which: Which,
    withdraw: Annotated[
        bool, typer.Option("--withdraw", help="Also revoke the orders adopted from it.")
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Stop following a registry. Its adopted orders stay in force unless --withdraw
    (each then gets an order-revoked entry naming the reason)."""
    from sqlalchemy import select

    from clearwall.federation import records
    from clearwall.model import OrderStatus
    from clearwall.store import repositories as repo
    from clearwall.store import schema

    with errors():
        service, _ = open_service(db, config, migrate=True)
        m = records.find(service.store, which)
        with service.store.read() as conn:
            t = schema.mirror_orders
            ids = [
                int(r[0]) for r in conn.execute(select(t.c.order_id).where(t.c.mirror_id == m.id))
            ]
            active = [i for i in ids if repo.get_order(conn, i).status is OrderStatus.ACTIVE]
        if active and not withdraw:
            fail(
                f"{len(active)} order(s) adopted from {m.url} are in force "
                f"({', '.join(map(str, active))}): pass --withdraw to revoke them, "
                "or revoke them first"
            )
        for order_id in active:
            service.revoke_order(order_id, f"mirror of {m.url} removed by the operator")
        records.remove(service.store, m.id)
    typer.echo(f"mirror {m.id} ({m.url}) removed; {len(active)} adopted order(s) revoked")


def sync(
    which: Annotated[
        str | None, typer.Argument(metavar="[MIRROR]", help="Mirror id or URL (default: all).")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Sync now: verify each registry's new checkpoint and entries and adopt its orders.
    Exits 1 when any registry could not be followed (the reason is recorded)."""
    import logging

    from clearwall.errors import MirrorError
    from clearwall.federation import records
    from clearwall.federation import sync as federation

    # The command prints each outcome itself; the job's log line would say it twice.
    logging.getLogger("clearwall.federation").addHandler(logging.NullHandler())
    failed = False
    with errors():
        service, _ = open_service(db, config, migrate=True)
        mirrors = [records.find(service.store, which)] if which else records.list_all(service.store)
        for m in mirrors:
            try:
                typer.echo(federation.sync(service, m).line())
            except MirrorError as exc:
                failed = True
                typer.echo(f"{m.url}: {exc.status.upper()}: {exc}", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``mirror`` command group to the root app."""
    group = typer.Typer(
        help="Follow registries' public logs and adopt their orders (federation).",
        no_args_is_help=True,
    )
    group.command("add")(add)
    group.command("list")(list_)
    group.command("remove")(remove)
    group.command("sync")(sync)
    app.add_typer(group, name="mirror")
