"""``clearwall doctor``: checks a deployment and says what is wrong and how to fix it.

Each check is one small function returning ``Finding``s: the store (reachable, migrated),
the ledger key (readable, private, the key of the published checkpoint), the tiles (the
whole log re-verified, as ``ledger verify`` does), the upstream resolvers (answering),
the listeners (bindable, or held by a gateway that answers), certificates given with
``--cert`` (dates), the clock (against the newest log entry, the database's clock, and a
``--time-url`` server), and the disk (room for the query log and the tiles). The exit
status is 1 when any check fails; warnings alone leave it 0.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import errno
import json
import math
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from clearwall.cli.common import ConfigOption, DbOption, errors, settings
from clearwall.config import Config, EncryptedUpstream, HostPort

if TYPE_CHECKING:
    from clearwall.ledger.log import TransparencyLog

OK, WARN, FAIL = "ok", "warn", "FAIL"
CERT_WARN_DAYS = 14
SKEW_WARN = 5.0  # seconds
SKEW_FAIL = 60.0
TILES_MIN_FREE = 100 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """One result: which check, its status, what was seen and, for problems, the fix."""

    check: str
    status: str  # ok, warn, FAIL
    detail: str
    fix: str = ""


@dataclass
class Deployment:
    """What the checks look at: the config and the store URL in force."""

    config: Config
    db_url: str
    certs: tuple[Path, ...] = ()
    time_url: str | None = None
    timeout: float = 2.0


def check_store(d: Deployment) -> list[Finding]:
    """The store answers and its schema is at the newest migration."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from clearwall.errors import ClearwallError
    from clearwall.store.db import MIGRATIONS, Store

    where = Store(d.db_url).engine.url.render_as_string(hide_password=True)
    try:
        store = Store(d.db_url)
        if not store.is_initialized():
            return [
                Finding("store", FAIL, f"no clearwall store at {where}", "run `clearwall init`")
            ]
        with store.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        size = store.log_size()
        store.dispose()
    except (ClearwallError, Exception) as exc:  # a driver error of any kind is the finding
        return [
            Finding(
                "store",
                FAIL,
                f"cannot read {where}: {' '.join(str(exc).split())[:300]}",
                "check [store] url, that the database runs and that this user may read it",
            )
        ]
    if current != head:
        return [
            Finding(
                "store",
                FAIL,
                f"schema at revision {current or 'none'}, the code expects {head}",
                "run `clearwall init` (it applies pending migrations) after a backup",
            )
        ]
    return [Finding("store", OK, f"{where}: migrated ({head}), {size} log entries")]


def _tlog(d: Deployment) -> TransparencyLog:
    from clearwall.ledger.log import TransparencyLog
    from clearwall.store.db import Store

    return TransparencyLog(Store(d.db_url), d.config.ledger)


def check_ledger_key(d: Deployment) -> list[Finding]:
    """The key file is readable, private, and signs the published checkpoint."""
    from clearwall.errors import ClearwallError
    from clearwall.ledger.signing import load_signer

    path = d.config.ledger.key_file
    if path is not None and not d.config.ledger.signs():
        return _check_follower(d)
    try:
        path = d.config.ledger.key_path()
        signer = load_signer(path)
    except (ClearwallError, OSError) as exc:
        return [
            Finding(
                "ledger key",
                FAIL,
                f"{path or '[ledger] key_file'}: {exc}",
                "restore the key from your backup ([ledger] key_file); a new key cannot sign "
                "the existing log's checkpoints",
            )
        ]
    out: list[Finding] = []
    if path.stat().st_mode & 0o077:
        out.append(
            Finding("ledger key", WARN, f"{path} is readable by others", f"chmod 600 {path}")
        )
    try:
        tlog = _tlog(d)
        published = tlog.published()
    except ClearwallError as exc:
        return [
            *out,
            Finding(
                "ledger key",
                FAIL,
                f"the published checkpoint does not verify with {path} ({signer.verifier.vkey}):"
                f" {exc}",
                "the key file was replaced or [ledger] origin changed: restore the key that "
                "signed the log, or the origin it was created with",
            ),
        ]
    if published is None:
        return [
            *out,
            Finding("ledger key", WARN, "no published checkpoint yet", "run `clearwall serve`"),
        ]
    return [
        *out,
        Finding(
            "ledger key",
            OK,
            f"{signer.verifier.vkey} signs the checkpoint of size {published.size}",
        ),
    ]


def _check_follower(d: Deployment) -> list[Finding]:
    """A node without the key (``[ledger] vkey``): the published checkpoint is the
    signer's (``docs/cluster.md``)."""
    from clearwall.errors import ClearwallError

    vkey = d.config.ledger.vkey
    try:
        published = _tlog(d).published()
    except ClearwallError as exc:
        return [
            Finding(
                "ledger key",
                FAIL,
                f"the published checkpoint does not verify with [ledger] vkey {vkey}: {exc}",
                "set [ledger] vkey to what `clearwall ledger key` prints on the node holding "
                "the key, then run `clearwall ledger sync`",
            )
        ]
    if published is None:
        return [
            Finding(
                "ledger key",
                WARN,
                f"no key here (the signer is {vkey}) and no checkpoint published yet",
                "start the node holding the key, then `clearwall serve` here",
            )
        ]
    return [
        Finding(
            "ledger key",
            OK,
            f"no key here: this node serves what {vkey} signed (checkpoint of size "
            f"{published.size})",
        )
    ]


def check_tiles(d: Deployment) -> list[Finding]:
    """The published tiles and checkpoints equal what the store's entries imply."""
    from clearwall.errors import ClearwallError
    from clearwall.ledger.audit import audit
    from clearwall.ledger.log import TransparencyLog
    from clearwall.ledger.published import ledger_verifier
    from clearwall.store.db import Store
    from clearwall.store.logmatch import checker

    try:
        store = Store(d.db_url)
        tlog = TransparencyLog(store, d.config.ledger)
        verifier = ledger_verifier(d.config.ledger)
        report = audit(store, tlog, verifier, checker(store))
    except (ClearwallError, OSError) as exc:
        return [Finding("tiles", FAIL, f"cannot audit the log: {exc}", "fix the findings above")]
    if report.problems:
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        return [
            Finding(
                "tiles",
                FAIL,
                f"{report.problems[0]}{more}",
                "run `clearwall ledger verify` for the list; restore "
                f"{d.config.ledger.tiles_path()} from backup, or let `clearwall serve` republish",
            )
        ]
    return [Finding("tiles", OK, f"{report.size} entries, tiles and checkpoints consistent")]


def _dns_answers(hp: HostPort, timeout: float) -> bool:
    import dns.exception
    import dns.message
    import dns.query

    try:
        dns.query.udp(dns.message.make_query(".", "NS"), hp.host, port=hp.port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    return True


def _encrypted_answers(up: EncryptedUpstream, timeout: float, ca_file: str) -> bool:
    """Whether a DoT or DoH upstream answers, its certificate checked as the gateway
    checks it (``[dns.upstream] ca_file``, else the system's trust store)."""
    import ssl

    import dns.message
    import dns.query

    query = dns.message.make_query(".", "NS")
    try:
        if up.scheme == "tls":
            context = ssl.create_default_context(cafile=ca_file or None)
            dns.query.tls(
                query,
                up.host,
                port=up.port,
                timeout=timeout,
                ssl_context=context,
                server_hostname=up.name,
            )
        else:
            url = f"https://{up.host}:{up.port}{up.path}"
            dns.query.https(query, url, timeout=timeout, verify=ca_file or True)
    except Exception:  # dnspython's, ssl's and httpx's errors alike mean "does not answer"
        return False
    return True


def check_upstream(d: Deployment) -> list[Finding]:
    """Every upstream resolver answers a query (any rcode: it is alive)."""
    servers = list(d.config.dns.upstream.servers)
    for more in d.config.dns.upstream.per_jurisdiction.values():
        servers += [hp for hp in more if hp not in servers]
    out = []
    ca_file = d.config.dns.upstream.ca_file
    for hp in servers:
        answers = (
            _dns_answers(hp, d.timeout)
            if isinstance(hp, HostPort)
            else _encrypted_answers(hp, d.timeout, ca_file)
        )
        if answers:
            out.append(Finding("upstream", OK, f"{hp} answers"))
        else:
            out.append(
                Finding(
                    "upstream",
                    FAIL,
                    f"{hp} does not answer within {d.timeout:g} s",
                    "start the resolver or fix [dns.upstream] servers",
                )
            )
    return out


def _bind(hp: HostPort, kind: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in hp.host else socket.AF_INET
    with socket.socket(family, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((hp.host, hp.port))
        except OSError as exc:
            return exc
    return None


def _web_answers(hp: HostPort, timeout: float) -> bool:
    import httpx

    host = f"[{hp.host}]" if ":" in hp.host else hp.host
    try:
        return httpx.get(f"http://{host}:{hp.port}/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def check_listeners(d: Deployment) -> list[Finding]:
    """Each listen address is free, or held by a clearwall that answers there."""
    out = []
    for hp in d.config.dns.listen:
        problem = _bind(hp, socket.SOCK_DGRAM) or _bind(hp, socket.SOCK_STREAM)
        if problem is None:
            out.append(Finding("listeners", OK, f"DNS {hp} is free to bind"))
        elif problem.errno == errno.EADDRINUSE and _dns_answers(hp, d.timeout):
            out.append(Finding("listeners", OK, f"DNS {hp} is in use by a server that answers"))
        elif problem.errno == errno.EACCES:
            out.append(
                Finding(
                    "listeners",
                    FAIL,
                    f"DNS {hp}: permission denied",
                    "ports below 1024 need CAP_NET_BIND_SERVICE (deploy/systemd grants it)",
                )
            )
        else:
            out.append(
                Finding(
                    "listeners",
                    FAIL,
                    f"DNS {hp}: {problem.strerror or problem}, and nothing answers DNS there",
                    "stop the program holding the port (`ss -lunp`) or change [dns] listen",
                )
            )
    webs = (("web", d.config.web.listen), ("block pages", d.config.web.blockpage_listen))
    for name, web in webs:
        if web is None:
            continue
        hp = web
        problem = _bind(hp, socket.SOCK_STREAM)
        if problem is None:
            out.append(Finding("listeners", OK, f"{name} {hp} is free to bind"))
        elif problem.errno == errno.EADDRINUSE and _web_answers(hp, d.timeout):
            out.append(Finding("listeners", OK, f"{name} {hp} is in use by clearwall"))
        else:
            out.append(
                Finding(
                    "listeners",
                    FAIL,
                    f"{name} {hp}: {problem.strerror or problem}",
                    "stop the program holding the port (`ss -ltnp`) or change [web]",
                )
            )
    return out


def check_certificates(d: Deployment) -> list[Finding]:
    """Each ``--cert`` file is a PEM certificate valid now and for two more weeks."""
    from cryptography import x509

    out = []
    now = dt.datetime.now(dt.UTC)
    for path in d.certs:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            out.append(Finding("certificates", FAIL, f"{path}: {exc}", "give a PEM certificate"))
            continue
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        subject = cert.subject.rfc4514_string()
        if now < start:
            out.append(
                Finding(
                    "certificates",
                    FAIL,
                    f"{path} ({subject}) is valid only from {start}",
                    "check the clock, or the certificate's dates",
                )
            )
        elif now >= end:
            out.append(
                Finding(
                    "certificates",
                    FAIL,
                    f"{path} ({subject}) expired on {end}",
                    "renew the certificate and reload the service that uses it",
                )
            )
        elif end - now < dt.timedelta(days=CERT_WARN_DAYS):
            out.append(
                Finding(
                    "certificates", WARN, f"{path} ({subject}) expires on {end}", "renew it soon"
                )
            )
        else:
            out.append(
                Finding("certificates", OK, f"{path} ({subject}) valid until {end:%Y-%m-%d}")
            )
    return out


def _skew(what: str, other: float, now: float) -> Finding:
    skew = now - other
    text = f"this host is {abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} {what}"
    if abs(skew) >= SKEW_FAIL:
        return Finding(
            "clock", FAIL, text, "enable time synchronisation (systemd-timesyncd, chrony)"
        )
    if abs(skew) >= SKEW_WARN:
        return Finding(
            "clock", WARN, text, "enable time synchronisation (systemd-timesyncd, chrony)"
        )
    return Finding("clock", OK, text)


def check_clock(d: Deployment) -> list[Finding]:
    """The clock agrees with the database, a ``--time-url`` server, and the log's past."""
    from sqlalchemy import text

    from clearwall.ledger import entries
    from clearwall.store.db import Store

    out = []
    now = time.time()
    try:
        store = Store(d.db_url)
        size = store.log_size()
        event = entries.parse(store.log_entries(size - 1, size)[0].data) if size else None
        if event is not None and not isinstance(event, entries.UnknownEntry):
            newest = event.time.timestamp()
            if newest > now + SKEW_FAIL:
                out.append(
                    Finding(
                        "clock",
                        FAIL,
                        f"the newest log entry is dated {event.time.isoformat()}, "
                        f"{newest - now:.0f} s in this host's future",
                        "this clock went backwards: fix time synchronisation before writing",
                    )
                )
        if store.engine.dialect.name == "postgresql":
            with store.engine.connect() as conn:
                db_now = conn.execute(text("SELECT extract(epoch FROM now())")).scalar()
            out.append(_skew("the database server", float(db_now or 0), time.time()))
        store.dispose()
    except Exception:  # the store check reports an unreadable store
        pass
    if d.time_url:
        import httpx

        try:
            response = httpx.head(d.time_url, timeout=d.timeout)
            header = response.headers.get("date")
            if header is None:
                raise ValueError("no Date header")
            when = email.utils.parsedate_to_datetime(header).timestamp()
            out.append(_skew(d.time_url, when, time.time()))
        except (httpx.HTTPError, ValueError, TypeError) as exc:
            out.append(
                Finding("clock", WARN, f"{d.time_url}: {exc}", "give a reachable --time-url")
            )
    if not out:
        out.append(Finding("clock", OK, "no reference disagrees (give --time-url to compare)"))
    return out


def _free(path: Path) -> tuple[Path, int]:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe, shutil.disk_usage(probe).free


def check_disk(d: Deployment) -> list[Finding]:
    """Room for the query log's size limit (when it is on) and for the tiles."""
    out = []
    logging = d.config.logging
    if logging.query_log:
        from clearwall.layout import query_log_location

        directory = query_log_location(logging, d.db_url, d.config.ledger)
        where, free = _free(directory)
        used = sum(p.stat().st_size for p in directory.glob("q-*"))
        need = logging.query_log_max_mb * 1024 * 1024 - used
        if free < need:
            out.append(
                Finding(
                    "disk",
                    FAIL,
                    f"{where} has {free // 2**20} MiB free; the query log may grow "
                    f"{need // 2**20} MiB more ([logging] query_log_max_mb = "
                    f"{logging.query_log_max_mb})",
                    "lower query_log_max_mb or give query_log_dir more space",
                )
            )
        else:
            out.append(Finding("disk", OK, f"query log: {free // 2**20} MiB free at {where}"))
    where, free = _free(d.config.ledger.tiles_path())
    if free < TILES_MIN_FREE:
        out.append(
            Finding(
                "disk",
                FAIL,
                f"{where}: only {free // 2**20} MiB free for the log's tiles",
                "free space: the log cannot publish without it",
            )
        )
    else:
        out.append(Finding("disk", OK, f"tiles: {free // 2**20} MiB free at {where}"))
    return out


def _ago(when: dt.datetime | None) -> float:
    """Seconds since ``when`` (infinite when never)."""
    if when is None:
        return math.inf
    moment = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return (dt.datetime.now(dt.UTC) - moment).total_seconds()


def check_mirrors(d: Deployment) -> list[Finding]:
    """Each registry this installation follows was verified and synced lately."""
    from clearwall.errors import ClearwallError
    from clearwall.federation import records
    from clearwall.store.db import Store

    try:
        mirrors = records.list_all(Store(d.db_url))
    except (ClearwallError, Exception) as exc:  # the store check names the cause
        return [Finding("mirrors", WARN, f"cannot list the registries followed: {exc}")]
    if not mirrors:
        return [Finding("mirrors", OK, "no registry followed")]
    stale = 10 * d.config.federation.interval  # ten passes missed
    found = []
    for m in mirrors:
        since = _ago(m.synced_at)
        if m.status == "refused":
            found.append(
                Finding(
                    "mirrors",
                    FAIL,
                    f"{m.url}: refused: {m.last_error}",
                    "its log contradicts what was verified before (a fork or a rewrite: the "
                    "evidence is kept, `clearwall mirror list`); nothing new is adopted from "
                    "it; ask the registry and its witnesses which log is the real one",
                )
            )
        elif m.status in ("unreachable", "invalid"):
            found.append(
                Finding(
                    "mirrors",
                    WARN if since < stale else FAIL,
                    f"{m.url}: {m.status} ({m.last_error}); last verified "
                    + ("never" if m.synced_at is None else f"{since:.0f} s ago"),
                    "check the registry's URL and key (`clearwall mirror list`), that it "
                    "answers from here, then `clearwall mirror sync`",
                )
            )
        elif m.status == "new" or m.synced_at is None:
            found.append(
                Finding(
                    "mirrors",
                    WARN,
                    f"{m.url}: not synced yet",
                    "run `clearwall mirror sync`, or `clearwall serve` (its jobs follow it)",
                )
            )
        elif since >= stale:
            found.append(
                Finding(
                    "mirrors",
                    WARN,
                    f"{m.url}: last verified {since:.0f} s ago (every "
                    f"{d.config.federation.interval:g} s expected)",
                    "check that `clearwall serve` runs (its jobs follow registries)",
                )
            )
        else:
            found.append(
                Finding("mirrors", OK, f"{m.url}: {m.size} entries verified {since:.0f} s ago")
            )
    return found


CHECKS: tuple[tuple[str, Callable[[Deployment], list[Finding]]], ...] = (
    ("store", check_store),
    ("ledger key", check_ledger_key),
    ("tiles", check_tiles),
    ("upstream", check_upstream),
    ("listeners", check_listeners),
    ("certificates", check_certificates),
    ("clock", check_clock),
    ("disk", check_disk),
    ("mirrors", check_mirrors),
)


def run_checks(d: Deployment) -> list[Finding]:
    """Every check in order; a check that crashes is itself a failed finding."""
    found: list[Finding] = []
    for name, check in CHECKS:
        try:
            found += check(d)
        except Exception as exc:
            found.append(Finding(name, FAIL, f"the check crashed: {exc}", "report this as a bug"))
    return found


def register(app: typer.Typer) -> None:
    """Add ``doctor`` to the root app."""

    @app.command("doctor")
    def doctor(
        config: ConfigOption = None,
        db: DbOption = None,
        cert: Annotated[
            list[Path] | None,
            typer.Option("--cert", help="A PEM certificate to check the dates of (repeatable)."),
        ] = None,
        time_url: Annotated[
            str | None,
            typer.Option(
                "--time-url", help="An HTTP(S) URL whose Date header the clock is compared with."
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object per finding.")
        ] = False,
    ) -> None:
        """Check the deployment: store, ledger key, tiles, upstream, listeners, certificates,
        clock, disk, mirrors. Prints what is wrong and how to fix it; exit status 1 on a failure."""
        with errors():
            s = settings(db, config)
        found = run_checks(Deployment(s.config, s.db_url, tuple(cert or ()), time_url))
        for f in found:
            if as_json:
                typer.echo(json.dumps(asdict(f)))
            else:
                typer.echo(f"{f.status:<4}  {f.check}: {f.detail}")
                if f.fix:
                    typer.echo(f"      fix: {f.fix}")
        failed = sum(1 for f in found if f.status == FAIL)
        if not as_json:
            warned = sum(1 for f in found if f.status == WARN)
            typer.echo(
                f"{failed} problem(s), {warned} warning(s)" if failed or warned else "all good"
            )
        if failed:
            raise typer.Exit(1)
