"""The ``requests`` commands: cross-border requests filed, listed, shown and decided.

The CLI works on the store directly, as the operator: it names the acting authority
(``--authority``) and the service checks that it belongs to the side that may take the
step (the sender files and withdraws, the receiver accepts and refuses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clearwall.cli.common import ConfigOption, DbOption, errors, open_reader, open_service
from clearwall.cli.policy import FORMAT_CHOICES, JsonOption, _choice, _parse_rules, _print_json
from clearwall.ledger.entries import RequestAsk
from clearwall.model import Action, Category
from clearwall.store.records import CrossBorderRequest, RequestStatus


def register(app: typer.Typer) -> None:
    """Add the ``requests`` group to the root app."""
    group = typer.Typer(help="Cross-border requests between jurisdictions, on the log.")
    group.info.no_args_is_help = True
    app.add_typer(group, name="requests")
    group.command("file")(requests_file)
    group.command("list")(requests_list)
    group.command("show")(requests_show)
    group.command("accept")(requests_accept)
    group.command("refuse")(requests_refuse)
    group.command("withdraw")(requests_withdraw)


AuthorityOption = Annotated[int, typer.Option(help="The acting authority's id.")]


def requests_file(
    authority: AuthorityOption,
    to: Annotated[str, typer.Option(help="The receiving jurisdiction's code.")],
    category: Annotated[str, typer.Option(help=", ".join(c.value for c in Category))],
    legal_basis: Annotated[str, typer.Option(help="The sender's own legal basis.")],
    reference: Annotated[str, typer.Option(help="The sender's reference.")],
    names: Annotated[Path, typer.Option(help="List file with the names (any list format).")],
    ask: Annotated[str, typer.Option(help="block, or lift (a block).")] = "block",
    format: Annotated[str, typer.Option(help=", ".join(FORMAT_CHOICES))] = "auto",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """File a request to another jurisdiction (a log entry; it blocks nothing); prints its id."""
    ask = _choice(ask, RequestAsk, "ask")
    category = _choice(category, Category, "category")
    format = _choice(format, FORMAT_CHOICES, "format")
    with errors():
        service, _ = open_service(db, config)
        specs = _parse_rules(names, format)
        request = service.file_request(authority, to, ask, category, legal_basis, reference, specs)
        typer.echo(str(request.id))


def _took(r: CrossBorderRequest) -> str:
    took = r.time_to_decision
    return "-" if took is None else str(took).split(".")[0]


def requests_list(
    jurisdiction: Annotated[
        str | None, typer.Option(help="Only requests sent by or to this jurisdiction.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="open, accepted, refused, withdrawn.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List requests: id, status, from, to, ask, category, reference, names, time to decision."""
    state = RequestStatus(_choice(status, RequestStatus, "status")) if status else None
    with errors():
        reader, _ = open_reader(db, config)
        items = [
            r
            for r in reader.requests(jurisdiction=jurisdiction.lower() if jurisdiction else None)
            if state is None or r.status is state
        ]
        if as_json:
            _print_json(items)
            return
        for r in items:
            typer.echo(
                f"{r.id}\t{r.status.value}\t{r.from_jurisdiction}\t{r.to_jurisdiction}\t"
                f"{r.ask}\t{r.category}\t{r.reference}\t{len(r.rules)}\t{_took(r)}"
            )


def requests_show(
    request_id: Annotated[int, typer.Argument(metavar="ID")],
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one request: who asked whom for what, on which basis, and the decision."""
    with errors():
        reader, _ = open_reader(db, config)
        r = reader.request(request_id)
        if as_json:
            _print_json(r)
            return
        filer = reader.authority(r.authority_id)
        rows = [
            ("id", r.id),
            ("status", r.status.value),
            ("from", f"{r.from_jurisdiction} ({filer.id} {filer.name})"),
            ("to", r.to_jurisdiction),
            ("asks", r.ask),
            ("category", r.category),
            ("legal basis", r.legal_basis),
            ("reference", r.reference),
            ("filed", f"{r.filed_at.isoformat()} (log entry {r.filed_log_index})"),
            ("names", f"{len(r.rules)} (digest {r.rules_digest})"),
        ]
        if r.decided_at is not None:
            by = reader.authority(r.decided_by) if r.decided_by is not None else None
            rows += [
                ("decided", f"{r.decided_at.isoformat()} (log entry {r.decided_log_index})"),
                ("by", f"{by.id} {by.name} ({by.jurisdiction})" if by else "-"),
                ("reason", r.decision or "-"),
                ("took", _took(r)),
            ]
        if r.order_id is not None:
            rows.append(("order", r.order_id))
        for key, value in rows:
            typer.echo(f"{key + ':':<13}{value}")
        for line in r.rules:
            typer.echo(line)


def requests_accept(
    request_id: Annotated[int, typer.Argument(metavar="ID")],
    authority: AuthorityOption,
    legal_basis: Annotated[str, typer.Option(help="The receiver's own legal basis.")],
    reference: Annotated[str, typer.Option(help="The receiver's order reference.")],
    title: Annotated[
        str, typer.Option(help="Title of the order (default: names the request).")
    ] = "",
    action: Annotated[
        str, typer.Option(help="nxdomain, nodata, refused or sinkhole.")
    ] = "nxdomain",
    expires: Annotated[str | None, typer.Option(help="Sunset (date or ISO time, UTC).")] = None,
    document_url: Annotated[str, typer.Option(help="Where the order can be read.")] = "",
    reason: Annotated[str, typer.Option(help="Why it is accepted (published).")] = "",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Accept a request: an order of the receiving jurisdiction citing it; prints the order id."""
    action = _choice(action, Action, "action")
    with errors():
        service, _ = open_service(db, config)
        _, order = service.accept_request(
            request_id,
            authority,
            legal_basis,
            reference,
            title=title,
            action=action,
            expires=expires,
            document_url=document_url,
            reason=reason,
        )
        typer.echo(str(order.id))


def requests_refuse(
    request_id: Annotated[int, typer.Argument(metavar="ID")],
    authority: AuthorityOption,
    reason: Annotated[str, typer.Option(help="Why it is refused (published).")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Refuse a request with a reason (a log entry; no policy changes)."""
    with errors():
        service, _ = open_service(db, config)
        request = service.refuse_request(request_id, authority, reason)
        typer.echo(f"request {request.id} refused", err=True)


def requests_withdraw(
    request_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why it is withdrawn (published).")],
    authority: Annotated[
        int | None, typer.Option(help="The withdrawing authority (default: the filer).")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Withdraw a request by the requesting side (a log entry)."""
    with errors():
        service, _ = open_service(db, config)
        request = service.withdraw_request(request_id, reason, authority)
        typer.echo(f"request {request.id} withdrawn", err=True)
