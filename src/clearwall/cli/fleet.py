"""The ``clearwall fleet`` commands: what a resolver fed by our zone transfers needs.

``fleet config TARGET`` prints the configuration a secondary needs for one jurisdiction's
zones (in the order it must load them); ``fleet key NAME`` creates a TSIG key in
``[xfr] keys_file``, which lives with the store (``D/NAME.xfr.keys`` beside a SQLite
store ``D/NAME.db``, see ``clearwall.layout``), so both work from any directory. The
text printed is what the tests run the real resolvers with.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from clearwall.cli.common import ConfigOption, DbOption, errors, fail, settings
from clearwall.config import Config, HostPort
from clearwall.errors import ConfigError
from clearwall.xfr.keys import ALGORITHM, TsigKey, add_key, load_keys
from clearwall.xfr.zones import BASES, Basis, zone_name

TARGETS = ("unbound", "pdns-recursor", "bind", "knot-resolver")

_WHY = {
    Basis.CENSORED: "censored by a court or regulator order",
    Basis.BLOCKED: "blocked by an operator order",
}


def register(app: typer.Typer) -> None:
    """Add the ``fleet`` command group to the root app."""
    group = typer.Typer(
        help="Resolvers fed by zone transfer: their configuration and TSIG keys.",
        no_args_is_help=True,
    )
    app.add_typer(group, name="fleet")
    group.command("config")(fleet_config)
    group.command("key")(fleet_key)


def _primary(config: Config, primary: str | None) -> HostPort:
    """The address secondaries reach the primary at: --primary, else the one address of
    ``[xfr] listen`` (a wildcard, or one of several, leaves the choice to the operator)."""
    if primary:
        try:
            return HostPort.parse(primary, 53)
        except ValueError as exc:
            raise ConfigError(f"--primary: {exc}") from exc
    listen = config.xfr.listen
    if not listen:
        raise ConfigError("give --primary IP:PORT: the config has no [xfr] listen address")
    if len(listen) > 1:
        raise ConfigError(
            f"give --primary IP:PORT: [xfr] listen has {len(listen)} addresses "
            f"({', '.join(str(hp) for hp in listen)}); name the one this resolver reaches"
        )
    if ipaddress.ip_address(listen[0].host).is_unspecified:
        raise ConfigError(
            f"give --primary IP:PORT: [xfr] listen is {listen[0]}, every address of the "
            "host; name the one this resolver reaches"
        )
    return listen[0]


def _key(config: Config, name: str | None) -> TsigKey | None:
    if not name:
        return None
    path = config.xfr.keys_path()
    key = load_keys(path).get(name.rstrip(".").lower())
    if key is None:
        raise ConfigError(
            f"no TSIG key {name!r} in {path}; create it with `clearwall fleet key {name}`"
        )
    return key


def _extra(config: Config, basis: Basis, jurisdiction: str) -> str:
    """The EDE extra text: why, and where the portal explains each name."""
    portal = config.dns.block.public_url.rstrip("/")
    return f"{_WHY[basis]} in {jurisdiction}; see {portal}/search"


def unbound(config: Config, jurisdiction: str, primary: HostPort, key: TsigKey | None) -> str:
    """An ``unbound.conf`` fragment: respip in the modules, one ``rpz:`` clause per zone."""
    if key is not None:
        raise ConfigError(
            "Unbound's rpz: clause has no TSIG option (Unbound 1.17): leave [xfr] keys_file "
            "without keys and admit this resolver by address in [xfr] allow, or give it no --tsig"
        )
    at = f"{primary.host}@{primary.port}"
    lines = [
        f"# Unbound: clearwall's policy for jurisdiction {jurisdiction} from {primary}.",
        "# Keep the rpz: clauses in this order: the first zone with a match decides.",
        "# Unbound 1.17 sends no Extended DNS Error for RPZ answers.",
        "server:",
        '    module-config: "respip validator iterator"',
    ]
    for basis in BASES:
        name = zone_name(jurisdiction, basis, config.xfr.suffix)
        lines += [
            "rpz:",
            f'    name: "{name}"',
            f"    primary: {at}",
            f"    allow-notify: {primary.host}",
            "    rpz-log: yes",
            f'    rpz-log-name: "{jurisdiction} {basis.value}"',
        ]
    return "\n".join(lines) + "\n"


def pdns_recursor(config: Config, jurisdiction: str, primary: HostPort, key: TsigKey | None) -> str:
    """A Lua config file (``lua-config-file=`` in recursor.conf): one ``rpzPrimary`` per
    zone, with the EDE code and text resolvers send for its blocks."""
    lines = [
        f"-- PowerDNS Recursor: clearwall's policy for jurisdiction {jurisdiction} from {primary}.",
        "-- Load it with lua-config-file=<this file>; keep the zones in this order: the first",
        "-- zone with a match decides. Before 5.1 the recursor does not act on NOTIFY for",
        f"-- RPZ: it polls at the zones' SOA refresh ({config.xfr.refresh} s, [xfr] refresh).",
    ]
    address = f"[{primary.host}]:{primary.port}" if ":" in primary.host else str(primary)
    for basis in BASES:
        name = zone_name(jurisdiction, basis, config.xfr.suffix)
        options = [
            f'policyName="{jurisdiction}.{basis.value}"',
            f"extendedErrorCode={basis.ede.value}",
            f'extendedErrorExtra="{_extra(config, basis, jurisdiction)}"',
        ]
        if key is not None:
            options += [
                f'tsigname="{key.name}"',
                f'tsigalgo="{key.algorithm}"',
                f'tsigsecret="{key.secret}"',
            ]
        lines.append(f'rpzPrimary("{address}", "{name}", {{{", ".join(options)}}})')
    return "\n".join(lines) + "\n"


def bind(
    config: Config,
    jurisdiction: str,
    primary: HostPort,
    key: TsigKey | None,
    options: bool = False,
) -> str:
    """BIND 9: the secondary zones (and key) for the top level of named.conf, or with
    ``options`` the ``response-policy`` statement for its ``options { }`` block."""
    names = [zone_name(jurisdiction, basis, config.xfr.suffix) for basis in BASES]
    if options:
        zones = " ".join(f'zone "{name}";' for name in names)
        return (
            f"// BIND 9, inside options {{ }}: clearwall's zones for {jurisdiction}, in this "
            "order (the first with a match decides).\n"
            "// BIND rebuilds its policy at most every min-update-interval seconds (60 by "
            "default): 1 enforces a change at once.\n"
            "// qname-wait-recurse no: a blocked name is answered without first resolving it "
            "(as the gateway does).\n"
            "// BIND 9.20 and later can signal EDE: add `ede censored;` to the first zone and "
            "`ede blocked;` to the second.\n"
            f"response-policy {{ {zones} }} qname-wait-recurse no min-update-interval 1;\n"
        )
    lines = [
        f"// BIND 9: clearwall's zones for jurisdiction {jurisdiction} from {primary}, for the "
        "top level of named.conf.",
        f"// The response-policy statement: `clearwall fleet config bind --jurisdiction "
        f"{jurisdiction} --options`.",
    ]
    via = ""
    if key is not None:
        lines.append(f'key "{key.name}" {{ algorithm {key.algorithm}; secret "{key.secret}"; }};')
        via = f' key "{key.name}"'
    for name in names:
        lines += [
            f'zone "{name}" {{',
            "    type secondary;",
            f"    primaries port {primary.port} {{ {primary.host}{via}; }};",
            f'    file "{name}db";',
            f"    allow-notify {{ {primary.host}; }};",
            "    allow-query { localhost; };",
            "};",
        ]
    return "\n".join(lines) + "\n"


def knot_resolver(config: Config, jurisdiction: str, directory: Path) -> str:
    """A kresd Lua fragment: each zone from a file that ``clearwall export rpz --watch``
    keeps current (Knot Resolver does not transfer zones)."""
    lines = [
        f"-- Knot Resolver: clearwall's policy for jurisdiction {jurisdiction}, from files.",
        "-- Knot Resolver cannot transfer RPZ zones; keep the files current on this host with",
        f"--   clearwall export rpz --jurisdiction {jurisdiction} --directory {directory} --watch",
        "-- which rewrites them atomically whenever the log grows; kresd reloads a file when it",
        "-- changes (needs lua-cqueues). The first zone with a match decides. Knot Resolver",
        "-- reads no rpz-ip triggers (response-IP rules) and sends EDE only for NXDOMAIN blocks.",
    ]
    for basis in BASES:
        name = zone_name(jurisdiction, basis, config.xfr.suffix)
        path = directory / f"{name}rpz"
        code = "CENSORED" if basis is Basis.CENSORED else "BLOCKED"
        message = _extra(config, basis, jurisdiction).replace("'", "")[:250]
        lines.append(
            f"policy.add(policy.rpz(policy.DENY_MSG('{message}', kres.extended_error.{code}), "
            f"'{path}', true))"
        )
    return "\n".join(lines) + "\n"


def fleet_config(
    target: Annotated[str, typer.Argument(metavar="unbound|pdns-recursor|bind|knot-resolver")],
    jurisdiction: Annotated[str, typer.Option(help="Whose zones the resolver loads.")],
    primary: Annotated[
        str | None,
        typer.Option(
            help="IP:PORT the resolver reaches the primary at (default: the config's one "
            "[xfr] listen address)."
        ),
    ] = None,
    tsig: Annotated[
        str | None, typer.Option(help="Name of the TSIG key (in [xfr] keys_file) it signs with.")
    ] = None,
    options: Annotated[
        bool, typer.Option("--options", help="bind: the statement for options { } instead.")
    ] = False,
    directory: Annotated[
        Path,
        typer.Option(help="knot-resolver: where the exported zone files are kept."),
    ] = Path("/var/lib/knot-resolver/clearwall"),
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the configuration a resolver needs to load a jurisdiction's zones."""
    if target not in TARGETS:
        fail(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    with errors():
        cfg = settings(db, config).config
        code = jurisdiction.strip().lower()
        if target == "knot-resolver":
            if tsig:
                raise ConfigError("knot-resolver reads files: --tsig does not apply")
            typer.echo(knot_resolver(cfg, code, directory.absolute()), nl=False)
            return
        address = _primary(cfg, primary)
        key = _key(cfg, tsig)
        if target == "unbound":
            text = unbound(cfg, code, address, key)
        elif target == "pdns-recursor":
            text = pdns_recursor(cfg, code, address, key)
        else:
            text = bind(cfg, code, address, key, options)
        typer.echo(text, nl=False)


def fleet_key(
    name: Annotated[str, typer.Argument(help="The key's name, e.g. the secondary's host name.")],
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a TSIG key (hmac-sha256) in the store's [xfr] keys_file, unless it exists;
    print its name."""
    with errors():
        where = settings(db, config).config.xfr.keys_path()
        key, created = add_key(where, name)
        typer.echo(
            f"{'created' if created else 'exists'}: {key.name} ({ALGORITHM}) in {where}", err=True
        )
        typer.echo(key.name)
