"""The policy commands: init, jurisdictions, authorities, orders, check and export."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from clearwall.cli.common import (
    ConfigOption,
    DbOption,
    count_progress,
    errors,
    fail,
    file_progress,
    ledger_sync,
    open_reader,
    open_service,
    published_size,
    settings,
)
from clearwall.config import Config
from clearwall.errors import FormatError
from clearwall.model import Action, AuthorityKind, Category, OrderStatus, Verdict
from clearwall.policy.model import RuleSpec
from clearwall.store.reader import PolicyReader
from clearwall.store.validate import check_dates

FORMAT_CHOICES = ("auto", "hosts", "domains", "wildcard", "adblock", "dnsmasq", "unbound", "rpz")
EXPORT_CHOICES = ("rpz", "domains", "hosts")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _choice(value: str, choices: tuple[str, ...] | type[enum.Enum], what: str) -> str:
    """Validate a choice ourselves so that a bad value is a one-line error, not a usage dump."""
    names = tuple(m.value for m in choices) if isinstance(choices, type) else choices
    text = value.strip().lower()
    if text not in names:
        fail(f"invalid {what} {value!r}: choose one of {', '.join(names)}")
    return text


def _plain(value: Any) -> Any:
    """A JSON-friendly form of the store's values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(_plain(value), indent=2, ensure_ascii=False))


def _parse_rules(path: Path, fmt: str) -> list[RuleSpec]:
    """Parse a list file; report bad lines as ``file:line: reason`` on stderr."""
    from clearwall.formats import parse_file

    if not path.is_file():
        fail(f"{path}: no such file")
    with file_progress(path, f"reading {path.name}") as progress:
        result = parse_file(path, format=fmt, progress=progress)
    if not result.rules:
        first = f" (first problem: {result.issues[0]})" if result.issues else ""
        raise FormatError(
            f"{path}: no rules found in this {result.format} list, nothing imported{first}"
        )
    for issue in result.issues:
        typer.echo(str(issue), err=True)
    typer.echo(
        f"{path}: {len(result.rules)} rules ({result.format}), {len(result.issues)} lines reported",
        err=True,
    )
    return result.rules


def register(app: typer.Typer) -> None:
    """Add init, jurisdictions, authorities, orders, check and export to the root app."""
    app.command("init")(init)
    jurisdictions = typer.Typer(help="Legal areas and the client networks in them.")
    authorities = typer.Typer(help="Bodies that issue orders, each in one jurisdiction.")
    orders = typer.Typer(help="Orders: the legal instruments that carry rules.")
    for group, name in (
        (jurisdictions, "jurisdictions"),
        (authorities, "authorities"),
        (orders, "orders"),
    ):
        group.info.no_args_is_help = True
        app.add_typer(group, name=name)
    jurisdictions.command("add")(jurisdictions_add)
    jurisdictions.command("update")(jurisdictions_update)
    jurisdictions.command("list")(jurisdictions_list)
    jurisdictions.command("show")(jurisdictions_show)
    authorities.command("add")(authorities_add)
    authorities.command("list")(authorities_list)
    authorities.command("show")(authorities_show)
    orders.command("add")(orders_add)
    orders.command("amend")(orders_amend)
    orders.command("revoke")(orders_revoke)
    orders.command("expire")(orders_expire)
    orders.command("list")(orders_list)
    orders.command("show")(orders_show)
    app.command("check")(check)
    app.command("export")(export)


# -- init ----------------------------------------------------------------------------


def init(
    demo: Annotated[
        bool, typer.Option("--demo", help="Add the demo jurisdictions, authorities and orders.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(help="Real-data directory for --demo (default: $CLEARWALL_DATA)."),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Create the store (migrations), its ledger key and public log directory; optionally a
    demo."""
    with errors():
        s = settings(db, config)
        if demo:
            from clearwall.demo import data_dir

            # Before anything is written: a store created without its demo would make
            # the next `make run` (which inits only a missing store) serve an empty one.
            data = data_dir(data)
        ledger = s.config.ledger
        ledger.tiles_path().mkdir(parents=True, exist_ok=True)
        key_file = ledger.key_path()
        follows = not ledger.signs()  # one of several nodes: the signer holds the key
        if follows:
            typer.echo(
                f"no ledger key made: this node serves what [ledger] vkey {ledger.vkey} signs",
                err=True,
            )
        if not key_file.exists() and not follows:
            from clearwall.ledger.signing import create_key_file

            key_file.parent.mkdir(parents=True, exist_ok=True)
            vkey = create_key_file(key_file, ledger.origin)
            typer.echo(f"ledger key created: {key_file} (verifier key {vkey})", err=True)
        _tls_pair(s.config, s.db_url)
        service, _ = open_service(s.db_url, config, migrate=True)
        if demo:
            from clearwall.demo import install_demo

            service.after_commit = None  # one ledger sync at the end covers every order
            with count_progress("importing demo rules") as progress:
                summary = install_demo(service, data, progress=progress)
            typer.echo(summary.describe(), err=True)
        sync = ledger_sync(s.config, service.store)
        if sync is not None:
            sync()
        typer.echo(
            f"ledger key {key_file}, public log {ledger.tiles_path()}", err=True
        )  # where this store's own files are, wherever the command ran from
        typer.echo(f"store ready: {service.store.engine.url.render_as_string(hide_password=True)}")


def _tls_pair(config: Config, store_url: str) -> None:
    """Create the encrypted listeners' self-signed certificate and key (``[dns] tls_cert``
    and ``tls_key``, else ``tls/`` beside a SQLite store's file, else ``var/tls/``) unless
    they exist; print its fingerprint, which a client pins (``kdig +tls-pin``) or
    compares by hand. ``make run``'s store is var/clearwall.db: var/tls/."""
    from clearwall.dnsserver.tls import make_self_signed, spki_pin
    from clearwall.layout import sqlite_file

    database = sqlite_file(store_url)
    directory = database.parent / "tls" if database is not None else Path("var/tls")
    cert = Path(config.dns.tls_cert or directory / "cert.pem")
    key = Path(config.dns.tls_key or directory / "key.pem")
    if cert.exists() and key.exists():
        return
    if cert.exists() or key.exists():
        typer.echo(f"TLS: only one of {cert} and {key} exists; not replacing it", err=True)
        return
    fingerprint = make_self_signed(cert, key)
    typer.echo(
        f"TLS certificate created: {cert} (key {key}, mode 0600), self-signed for "
        f"clearwall.localhost, 127.0.0.1 and ::1\n"
        f"  SHA-256 fingerprint {fingerprint}\n"
        f"  SPKI pin (kdig +tls-pin=…) {spki_pin(str(cert))}",
        err=True,
    )


# -- jurisdictions ----------------------------------------------------------------------


def jurisdictions_add(
    code: Annotated[str, typer.Argument(help="ISO 3166-1 alpha-2 code or an operator code.")],
    name: Annotated[str, typer.Option(help="Full name.")],
    network: Annotated[
        list[str] | None, typer.Option(help="A client network (CIDR) in it; repeatable.")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Add a jurisdiction with its client networks (a logged change); prints its code."""
    with errors():
        service, _ = open_service(db, config)
        j = service.add_jurisdiction(code, name, network or [])
        typer.echo(j.code)


def jurisdictions_update(
    code: Annotated[str, typer.Argument(help="The jurisdiction's code.")],
    name: Annotated[str | None, typer.Option(help="A new full name.")] = None,
    add_network: Annotated[
        list[str] | None, typer.Option(help="A client network (CIDR) to add; repeatable.")
    ] = None,
    remove_network: Annotated[
        list[str] | None, typer.Option(help="A client network (CIDR) to remove; repeatable.")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Rename a jurisdiction or change its networks (one logged change); prints its
    networks."""
    with errors():
        service, _ = open_service(db, config)
        j = service.update_jurisdiction(
            code, name=name, add_networks=add_network or [], remove_networks=remove_network or []
        )
        typer.echo(f"{j.code}\t{j.name}\t{', '.join(str(n) for n in j.networks) or '-'}")


def jurisdictions_list(
    db: DbOption = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """List jurisdictions: code, name, networks."""
    with errors():
        reader, _ = open_reader(db, config)
        items = reader.jurisdictions()
        if as_json:
            _print_json(items)
            return
        for j in items:
            nets = ", ".join(str(n) for n in j.networks) or "-"
            typer.echo(f"{j.code}\t{j.name}\t{nets}")


def jurisdictions_show(
    code: str, db: DbOption = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Show one jurisdiction, its networks and its authorities."""
    with errors():
        reader, _ = open_reader(db, config)
        j = reader.jurisdiction(code)
        auths = reader.authorities(j.code)
        if as_json:
            _print_json({**_plain(j), "authorities": _plain(auths)})
            return
        typer.echo(f"code:        {j.code}\nname:        {j.name}")
        typer.echo(f"networks:    {', '.join(str(n) for n in j.networks) or '-'}")
        for a in auths:
            typer.echo(f"authority:   {a.id} {a.name} ({a.kind.value})")


# -- authorities ------------------------------------------------------------------------


def authorities_add(
    name: Annotated[str, typer.Option(help="Name of the court, regulator, CERT or operator.")],
    kind: Annotated[str, typer.Option(help="court, regulator, cert or operator.")],
    jurisdiction: Annotated[str, typer.Option(help="The one jurisdiction it acts in.")],
    contact: Annotated[
        list[str] | None, typer.Option(help="Public contact: mailto:, tel: or URL; repeatable.")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Add an authority; prints the new id alone."""
    kind = _choice(kind, AuthorityKind, "kind")
    with errors():
        service, _ = open_service(db, config)
        a = service.add_authority(name, kind, jurisdiction, contact or [])
        typer.echo(str(a.id))


def authorities_list(
    jurisdiction: Annotated[str | None, typer.Option(help="Only this jurisdiction.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List authorities: id, jurisdiction, kind, name."""
    with errors():
        reader, _ = open_reader(db, config)
        items = reader.authorities(jurisdiction.lower() if jurisdiction else None)
        if as_json:
            _print_json(items)
            return
        for a in items:
            typer.echo(f"{a.id}\t{a.jurisdiction}\t{a.kind.value}\t{a.name}")


def authorities_show(
    authority_id: Annotated[int, typer.Argument(metavar="ID")],
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one authority and its orders."""
    with errors():
        reader, _ = open_reader(db, config)
        a = reader.authority(authority_id)
        items = reader.orders(authority_id=a.id)
        if as_json:
            _print_json({**_plain(a), "orders": [o.id for o in items]})
            return
        typer.echo(f"id:           {a.id}\nname:         {a.name}\nkind:         {a.kind.value}")
        typer.echo(f"jurisdiction: {a.jurisdiction}")
        typer.echo(f"contacts:     {', '.join(a.contacts) or '-'}")
        for o in items:
            typer.echo(f"order:        {o.id} [{o.status.value}] {o.reference} {o.title}")


# -- orders -----------------------------------------------------------------------------


def orders_add(
    authority: Annotated[int, typer.Option(help="Issuing authority id.")],
    title: Annotated[str, typer.Option(help="Title of the order.")],
    legal_basis: Annotated[str, typer.Option(help="Statute or case the order rests on.")],
    reference: Annotated[str, typer.Option(help="The authority's reference number.")],
    category: Annotated[str, typer.Option(help=", ".join(c.value for c in Category))],
    action: Annotated[str, typer.Option(help="nxdomain, nodata, refused or sinkhole.")],
    rules: Annotated[Path, typer.Option(help="List file with the rules.")],
    format: Annotated[str, typer.Option(help=", ".join(FORMAT_CHOICES))] = "auto",
    issued: Annotated[str | None, typer.Option(help="Date issued (YYYY-MM-DD).")] = None,
    effective_from: Annotated[
        str | None, typer.Option(help="Effective from (date or ISO time, UTC); default now.")
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Sunset (date or ISO time, UTC).")] = None,
    document_url: Annotated[str, typer.Option(help="Where the order can be read.")] = "",
    all_jurisdictions: Annotated[
        bool,
        typer.Option(
            "--all-jurisdictions",
            help="Apply everywhere: operator security orders, and CERT security feeds.",
        ),
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Create an order with its rules in one transaction; prints the new order id alone."""
    category = _choice(category, Category, "category")
    action = _choice(action, Action, "action")
    format = _choice(format, FORMAT_CHOICES, "format")
    with errors():
        service, _ = open_service(db, config)
        # Fail fast on what can be checked before parsing a large file (the service
        # checks all of it again inside the transaction).
        issuer = PolicyReader(service.store).authority(authority)
        if all_jurisdictions:
            from clearwall.store.service import all_jurisdictions_refusal

            why = all_jurisdictions_refusal(issuer, Category(category))
            if why:
                fail(why)
        check_dates(issued, effective_from, expires)
        specs = _parse_rules(rules, format)
        with count_progress("writing rules") as progress:
            order = service.add_order(
                authority,
                title,
                legal_basis,
                reference,
                category,
                action,
                specs,
                issued=issued,
                effective_from=effective_from,
                expires=expires,
                document_url=document_url,
                all_jurisdictions=all_jurisdictions,
                progress=progress,
            )
        typer.echo(str(order.id))


def orders_amend(
    order_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why the rule set changes (published).")],
    rules: Annotated[Path | None, typer.Option(help="List file whose rules to add.")] = None,
    remove: Annotated[Path | None, typer.Option(help="List file whose rules to remove.")] = None,
    format: Annotated[str, typer.Option(help=", ".join(FORMAT_CHOICES))] = "auto",
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Add/remove rules of an order (re-importing the same list changes nothing); prints the id."""
    format = _choice(format, FORMAT_CHOICES, "format")
    if rules is None and remove is None:
        fail("give --rules FILE and/or --remove FILE")
    with errors():
        service, _ = open_service(db, config)
        PolicyReader(service.store).order(order_id)
        add_specs = _parse_rules(rules, format) if rules else []
        remove_specs = _parse_rules(remove, format) if remove else []
        before = service.store.log_size()
        with count_progress("writing rules") as progress:
            order = service.amend_order(
                order_id, add_specs, remove_specs, reason, progress=progress
            )
        if service.store.log_size() == before:
            typer.echo(f"order {order.id}: no change, nothing logged", err=True)
        typer.echo(str(order.id))


def orders_revoke(
    order_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: Annotated[str, typer.Option(help="Why the order is withdrawn (published).")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Revoke an order; the revocation is a log entry."""
    with errors():
        service, _ = open_service(db, config)
        order = service.revoke_order(order_id, reason)
        typer.echo(f"order {order.id} revoked", err=True)


def orders_expire(db: DbOption = None, config: ConfigOption = None) -> None:
    """Mark orders past their sunset as expired (one log entry each); prints their ids."""
    with errors():
        service, _ = open_service(db, config)
        for order_id in service.expire_due():
            typer.echo(str(order_id))


def orders_list(
    jurisdiction: Annotated[str | None, typer.Option(help="Only this jurisdiction.")] = None,
    authority: Annotated[int | None, typer.Option(help="Only this authority.")] = None,
    status: Annotated[str | None, typer.Option(help="active, revoked or expired.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """List orders: id, status, jurisdiction, authority, category, action, reference, title."""
    state = OrderStatus(_choice(status, OrderStatus, "status")) if status else None
    with errors():
        reader, _ = open_reader(db, config)
        items = reader.orders(
            authority_id=authority,
            jurisdiction=jurisdiction.lower() if jurisdiction else None,
            status=state,
        )
        if as_json:
            _print_json(items)
            return
        auths = {a.id: a for a in reader.authorities()}
        for o in items:
            where = "*" if o.all_jurisdictions else auths[o.authority_id].jurisdiction
            typer.echo(
                f"{o.id}\t{o.status.value}\t{where}\t{auths[o.authority_id].name}\t"
                f"{o.category.value}\t{o.action.value}\t{o.reference}\t{o.title}"
            )


def orders_show(
    order_id: Annotated[int, typer.Argument(metavar="ID")],
    show_rules: Annotated[bool, typer.Option("--rules", help="Also print every rule.")] = False,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one order: authority, legal basis, dates, digest, log entry; optionally its rules."""
    with errors():
        reader, _ = open_reader(db, config)
        compiled = reader.compiled_order(order_id)
        o, a = compiled.order, compiled.authority
        from clearwall.ledger.entries import rules_digest

        digest, count = rules_digest(compiled.rules)
        if as_json:
            data = {
                **_plain(o),
                "authority": _plain(a),
                "rules_digest": digest,
                "rule_count": count,
                "revoked_reason": reader.order_revoked_reason(o.id),
            }
            if show_rules:
                data["rules"] = [r.describe() for r in compiled.rules]
            _print_json(data)
            return
        rows = [
            ("id", o.id),
            ("title", o.title),
            ("status", o.status.value),
            ("authority", f"{a.id} {a.name} ({a.kind.value}, {a.jurisdiction})"),
            ("applies to", "all jurisdictions" if o.all_jurisdictions else a.jurisdiction),
            ("legal basis", o.legal_basis),
            ("reference", o.reference),
            ("category", o.category.value),
            ("action", o.action.value),
            ("issued", o.issued.isoformat()),
            ("effective", o.effective_from.isoformat()),
            ("expires", o.expires.isoformat() if o.expires else "-"),
            ("document", o.document_url or "-"),
            ("log entry", "-" if o.log_index is None else o.log_index),
            ("rules", f"{count} (digest {digest})"),
        ]
        reason = reader.order_revoked_reason(o.id)
        if reason:
            rows.append(("revoked", reason))
        for key, value in rows:
            typer.echo(f"{key + ':':<13}{value}")
        if show_rules:
            for rule in compiled.rules:
                typer.echo(rule.describe())


# -- check and export ---------------------------------------------------------------------


def _verdict_json(name: str, jurisdiction: str | None, verdict: Verdict) -> dict[str, Any]:
    return {
        "name": name,
        "jurisdiction": jurisdiction,
        "decision": verdict.decision.value,
        "action": verdict.action.value if verdict.action else None,
        "orders": [
            {
                "id": c.order.id,
                "authority": c.order.authority,
                "jurisdiction": c.order.jurisdiction,
                "category": c.order.category.value,
                "legal_basis": c.order.legal_basis,
                "reference": c.order.reference,
                "rule": c.rule,
            }
            for c in verdict.citations
        ],
    }


def check(
    name: Annotated[str, typer.Argument(help="The domain name to check.")],
    client: Annotated[
        str | None, typer.Option(help="Decide for a client at this IP (its jurisdiction).")
    ] = None,
    jurisdiction: Annotated[
        str | None, typer.Option(help="Decide for clients of this jurisdiction.")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Explain the decision for NAME: allow/block, the action, and every order that applies."""
    if client and jurisdiction:
        fail("give --client or --jurisdiction, not both")
    with errors():
        from clearwall.control.reuse import current_policy
        from clearwall.layout import snapshot_dir
        from clearwall.policy.names import normalize_name

        canonical = normalize_name(name)
        service, s = open_service(db, config)
        # The policy the public log shows (published first): the snapshot a gateway
        # saved, once the published checkpoint covers it and the log confirms it, with
        # the entries published since over it; else a compile.
        snapshot = current_policy(
            service.store,
            s.db_url,
            s.config.dns.block.public_url,
            published_size(s, service.store),
            snapshot_dir(s.db_url, s.config.ledger),
        )
        where: str | None
        if client:
            try:
                ipaddress.ip_address(client)
            except ValueError:
                fail(f"invalid client address {client!r}")
            where = snapshot.jurisdiction_of(client) or s.config.dns.default_jurisdiction or None
        elif jurisdiction:
            where = PolicyReader(service.store).jurisdiction(jurisdiction).code
        else:
            where = s.config.dns.default_jurisdiction or None
        verdict = snapshot.match(canonical, where or "")
        if as_json:
            typer.echo(json.dumps(_verdict_json(canonical, where, verdict), ensure_ascii=False))
            return
        scope = f"clients in {where}" if where else "clients in no jurisdiction"
        if verdict.blocked:
            assert verdict.action is not None
            typer.echo(f"{canonical}: BLOCKED for {scope} ({verdict.action.value})")
        else:
            typer.echo(f"{canonical}: allowed for {scope}")
        for c in verdict.citations:
            o = c.order
            typer.echo(
                f"  order {o.id} [{o.category.value}] by {o.authority} ({o.jurisdiction}): "
                f"{o.title}; {o.legal_basis}; ref. {o.reference}; rule: {c.rule}"
            )


def export(
    kind: Annotated[str, typer.Argument(metavar="rpz|domains|hosts")],
    jurisdiction: Annotated[str, typer.Option(help="Whose effective policy to export.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (atomically) instead of stdout."),
    ] = None,
    origin: Annotated[
        str | None, typer.Option(help="RPZ: the zone name (default rpz.JUR.clearwall.).")
    ] = None,
    basis: Annotated[
        str | None,
        typer.Option(help="RPZ: only the censored or the blocked zone the primary serves."),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option(help="RPZ: write both zones the primary serves here, as ZONErpz files."),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option("--watch", help="RPZ: keep running, rewriting the files when the log grows."),
    ] = False,
    interval: Annotated[
        float, typer.Option(help="--watch: seconds between looks at the log's size.")
    ] = 1.0,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Export a jurisdiction's effective policy as an RPZ zone, a domains or a hosts list.

    RPZ states the matcher's verdicts exactly (docs/xfr.md): one zone with every trigger,
    or with --basis/--directory the censored and blocked zones the RPZ primary serves.
    """
    kind = _choice(kind, EXPORT_CHOICES, "export format")
    if kind != "rpz" and (basis or directory or watch):
        fail("--basis, --directory and --watch apply to rpz only")
    if output is not None and directory is not None:
        fail("give --output or --directory, not both")
    if watch and output is None and directory is None:
        fail("--watch writes files: give --output or --directory")
    if interval <= 0:
        fail("--interval must be positive")
    with errors():
        from clearwall.control.reuse import current_policy
        from clearwall.formats import export_domains, export_hosts
        from clearwall.layout import snapshot_dir
        from clearwall.policy.snapshot import PolicySnapshot

        service, s = open_service(db, config)
        code = PolicyReader(service.store).jurisdiction(jurisdiction).code
        if kind == "rpz":
            _export_rpz(
                service.store, s.config, code, output, origin, basis, directory, watch, interval
            )
            return
        # Resolvers fed this export enforce it: only what the public log shows.
        url = s.config.dns.block.public_url
        size = published_size(s, service.store)
        saved = snapshot_dir(s.db_url, s.config.ledger)
        snapshot = current_policy(service.store, s.db_url, url, size, saved, whole=True)
        assert isinstance(snapshot, PolicySnapshot)
        pairs = list(snapshot.rules_for(code))
        if kind == "domains":
            text = export_domains(rule for rule, _ in pairs)
        else:
            text = export_hosts(rule for rule, _ in pairs)
        if output is None:
            typer.echo(text, nl=False)
        else:
            from clearwall.xfr.files import write_atomically

            write_atomically(output, text)
            typer.echo(f"{output}: {len(pairs)} rules exported", err=True)


def _export_rpz(
    store: Any,
    cfg: Config,
    code: str,
    output: Path | None,
    origin: str | None,
    basis: str | None,
    directory: Path | None,
    watch: bool,
    interval: float,
) -> None:
    """``export rpz``: the zones ``clearwall.xfr`` computes, as files or on stdout."""
    import signal

    from clearwall.xfr.feed import PolicyFeed, publisher
    from clearwall.xfr.files import ZoneFiles, file_name
    from clearwall.xfr.zones import Basis

    only = None
    combined = None
    if basis is not None or directory is not None:
        if origin:
            fail(
                "--origin names the one-zone export; the zones of --basis/--directory are "
                "named by [xfr] suffix"
            )
        if basis is not None:
            only = Basis(_choice(basis, tuple(b.value for b in Basis), "basis"))
    else:  # one zone with every trigger
        combined = origin or f"rpz.{code}.clearwall."
        combined = combined if combined.endswith(".") else combined + "."
    # Resolvers fed this export enforce it: only what the public log shows.
    feed = PolicyFeed(store, publisher(store, cfg.ledger))
    files = ZoneFiles(feed, cfg, code, only, combined)
    if output is None and directory is None:
        for _zone, text in files.texts():
            typer.echo(text, nl=False)
        return

    def path_of(zone: Any) -> Path:
        return output if output is not None else Path(directory or ".") / file_name(zone)

    if not watch:
        for path in files.write(path_of):
            typer.echo(f"{path}: log size {files.tree_size}", err=True)
        return
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    files.watch(path_of, interval, lambda: bool(stopping))
