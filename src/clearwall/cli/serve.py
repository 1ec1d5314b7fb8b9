"""The ``clearwall serve`` command: the DNS gateway (and the web app beside it).

Flags override the config file. Policy comes from the store (``--db``), compiled at
start and hot-swapped when the log grows, or from a compiled snapshot (``--snapshot``).
Client addresses are never logged. Without a web app the command execs the gateway's
lean entry (``clearwall.dnsserver.entry``), so the DNS processes do not carry the CLI's
imports.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from clearwall.config import BlockConfig, Config, HostPort, load_config
from clearwall.errors import ConfigError

log = logging.getLogger("clearwall.serve")


def _overrides(
    dns: list[str] | None,
    web: str | None,
    db: str | None,
    upstream: list[str] | None,
    workers: int | None,
    encrypted: dict[str, Any] | None = None,
    xfr: list[str] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if xfr:
        out["xfr"] = {"listen": list(xfr)}
    dns_section: dict[str, Any] = {}
    if dns:
        dns_section["listen"] = list(dns)
    for key, value in (encrypted or {}).items():
        if value:
            dns_section[key] = value
    if upstream:
        dns_section["upstream"] = {"servers": list(upstream)}
    if workers is not None:
        if workers < 1:
            raise ConfigError("--workers must be at least 1")
        dns_section["workers"] = workers
    if dns_section:
        out["dns"] = dns_section
    if web is not None:
        out["web"] = {"listen": web}
    if db is not None:
        out["store"] = {"url": db}
    return out


def _web_starter(config: Config, store_url: str) -> Callable[[Any, Callable[[], Any]], None]:
    """Start the web app (portal, API, block pages, /metrics) on ``[web] listen`` and the
    dedicated block-page app on ``[web] blockpage_listen``, each on a thread of its own."""

    def start(collector: Any, policy: Callable[[], Any]) -> None:
        import uvicorn
        from prometheus_client import CollectorRegistry

        from clearwall.web.app import create_app, create_blockpage_app

        registry = CollectorRegistry()
        registry.register(collector)

        def run(app: Any, listen: HostPort, name: str) -> None:
            server = uvicorn.Server(
                uvicorn.Config(
                    app, host=listen.host, port=listen.port, log_level="warning", access_log=False
                )
            )
            threading.Thread(target=server.run, name=name, daemon=True).start()

        listen = config.web.listen
        if listen is not None:
            app = create_app(config, store_url, snapshot_provider=policy, metrics_registry=registry)
            run(app, listen, "web")
            log.info("web app on http://%s (portal, API, block pages, /metrics)", listen)
        pages = config.web.blockpage_listen
        if pages is not None:
            app = create_blockpage_app(config, store_url, snapshot_provider=policy)
            run(app, pages, "blockpages")
            log.info("block pages only on http://%s (point the sinkhole addresses here)", pages)

    return start


# The RPZ primary's process, kept referenced for as long as this process lives.
_XFR: list[subprocess.Popen[bytes]] = []


def _start_xfr(
    config: Config, config_path: Path | None, overrides: dict[str, Any], store_url: str, level: str
) -> None:
    """Start the RPZ primary (``clearwall.xfr.entry``) in a process beside the gateway.

    Its stdin is a pipe whose write end this process keeps, across the gateway's exec
    too: when the gateway exits for any reason the primary reads end of file and stops.
    """
    from clearwall.xfr.entry import launch_args
    from clearwall.xfr.keys import primary_keys

    primary_keys(config.xfr)  # a bad key file or a missing key stops serve here, not later
    proc = subprocess.Popen(
        launch_args(config_path, overrides, store_url, level), stdin=subprocess.PIPE
    )
    assert proc.stdin is not None
    os.set_inheritable(proc.stdin.fileno(), True)
    _XFR.append(proc)
    log.info(
        "RPZ primary (pid %d) serving zone transfers on %s",
        proc.pid,
        ", ".join(str(hp) for hp in config.xfr.listen),
    )


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root app."""

    @app.command("serve")
    def serve(
        config: Annotated[
            Path | None,
            typer.Option("--config", "-c", help="TOML config file; default: $CLEARWALL_CONFIG."),
        ] = None,
        dns: Annotated[
            list[str] | None,
            typer.Option("--dns", help="DNS listen address IP[:PORT] (repeatable)."),
        ] = None,
        web: Annotated[
            str | None,
            typer.Option("--web", help="Web app address IP:PORT; 'off' to not start it."),
        ] = None,
        db: Annotated[
            str | None,
            typer.Option(
                "--db", envvar="CLEARWALL_DB", help="Store URL (sqlite:///… or postgresql://…)."
            ),
        ] = None,
        upstream: Annotated[
            list[str] | None,
            typer.Option("--upstream", help="Upstream resolver IP[:PORT] (repeatable)."),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option("--workers", help="DNS worker processes sharing the port (SO_REUSEPORT)."),
        ] = None,
        dot: Annotated[
            list[str] | None,
            typer.Option("--dot", help="DNS over TLS listen address IP[:PORT] (853; repeatable)."),
        ] = None,
        doh: Annotated[
            list[str] | None,
            typer.Option(
                "--doh", help="DNS over HTTPS listen address IP[:PORT] (443; repeatable)."
            ),
        ] = None,
        doq: Annotated[
            list[str] | None,
            typer.Option("--doq", help="DNS over QUIC listen address IP[:PORT] (853; repeatable)."),
        ] = None,
        tls_cert: Annotated[
            str | None,
            typer.Option("--tls-cert", help="PEM certificate (chain) of the encrypted listeners."),
        ] = None,
        tls_key: Annotated[
            str | None, typer.Option("--tls-key", help="PEM private key of that certificate.")
        ] = None,
        snapshot: Annotated[
            Path | None,
            typer.Option(
                "--snapshot", help="Serve this compiled snapshot instead of compiling the store."
            ),
        ] = None,
        snapshot_dir: Annotated[
            Path | None,
            typer.Option(
                "--snapshot-dir",
                help=(
                    "Where compiled snapshots are written (default: a snapshots directory "
                    "beside a SQLite store's file, else beside the ledger key file)."
                ),
            ),
        ] = None,
        xfr: Annotated[
            list[str] | None,
            typer.Option(
                "--xfr",
                help="Serve the policy as RPZ zones (AXFR/IXFR, NOTIFY) on IP:PORT (repeatable).",
            ),
        ] = None,
        log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, …")] = "",
    ) -> None:
        """Run the DNS gateway (and the web app) until SIGTERM/SIGINT; SIGHUP reloads config."""
        from clearwall.cli.common import config_path
        from clearwall.dnsserver.options import ServeOptions
        from clearwall.layout import resolve
        from clearwall.layout import snapshot_dir as default_snapshot_dir

        config = config_path(config)
        web_off = web is not None and web.lower() in ("off", "none", "")
        encrypted = {"dot": dot, "doh": doh, "doq": doq, "tls_cert": tls_cert, "tls_key": tls_key}
        overrides = _overrides(dns, None if web_off else web, db, upstream, workers, encrypted, xfr)
        if web_off:
            overrides["web"] = {"listen": ""}
        cfg = load_config(config, overrides)
        if snapshot is None:
            # The store's own files, found once here and handed down as absolute paths:
            # the gateway publishes the log before it enforces a policy, and the RPZ
            # primary checks its store's TSIG keys, wherever they run.
            own = resolve(cfg, cfg.store.url)
            overrides["ledger"] = {
                "key_file": str(own.ledger.key_file),
                "tiles_dir": str(own.ledger.tiles_dir),
            }
            if own.xfr.keys_file is not None:
                overrides.setdefault("xfr", {})["keys_file"] = str(own.xfr.keys_file)
            cfg = load_config(config, overrides)
            if cfg.logging.query_log and cfg.logging.query_log_dir is None:
                # Beside the store too, as an absolute path every DNS worker writes to.
                from clearwall.layout import querylog_dir

                where = querylog_dir(cfg.store.url, cfg.ledger)
                overrides.setdefault("logging", {})["query_log_dir"] = str(where)
                cfg = load_config(config, overrides)
        if cfg.web.listen is not None and cfg.dns.block.public_url == BlockConfig().public_url:
            # Order links in SDE JSON and on block pages must reach this web app unless the
            # operator configured the public address it is reached at.
            dns_section = overrides.setdefault("dns", {})
            dns_section.setdefault("block", {})["public_url"] = f"http://{cfg.web.listen}"
            cfg = load_config(config, overrides)
        level = (log_level or cfg.logging.level).upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        store_url = None if snapshot is not None else cfg.store.url
        if snapshot_dir is None and store_url is not None:
            snapshot_dir = default_snapshot_dir(store_url, cfg.ledger)
        web_listen: HostPort | None = cfg.web.listen
        from clearwall.dnsserver.resolvconf import default_upstreams

        upstreams = default_upstreams(cfg.dns)  # fails here, clearly, when there is none
        log.info(
            "clearwall serve starting: DNS %s, %d worker(s), policy %s",
            ", ".join(str(hp) for hp in cfg.dns.listen),
            cfg.dns.workers,
            f"snapshot {snapshot}" if snapshot else "from the store",
        )
        log.info("upstream: %s", upstreams.describe())
        for kind, name in (("dot", "DoT"), ("doh", "DoH"), ("doq", "DoQ")):
            for hp in getattr(cfg.dns, kind):
                log.info("%s on %s (certificate %s)", name, hp, cfg.dns.tls_cert)
        for code, servers in sorted(cfg.dns.upstream.per_jurisdiction.items()):
            log.info("upstream for %s: %s", code, ", ".join(str(s) for s in servers))
        if cfg.xfr.listen:
            if store_url is None:
                raise ConfigError("the RPZ primary (--xfr) reads the store: drop --snapshot")
            _start_xfr(cfg, config, overrides, store_url, level)
        web_wanted = web_listen is not None or cfg.web.blockpage_listen is not None
        web_app = _web_starter(cfg, store_url) if (store_url and web_wanted) else None
        opts = ServeOptions(
            config=cfg,
            config_path=config,
            overrides=overrides,
            store_url=store_url,
            snapshot=snapshot,
            snapshot_dir=snapshot_dir,
            metrics_listen=web_listen,
            web_app=web_app,
        )
        if web_app is None and not os.environ.get("CLEARWALL_SERVE_IN_PROCESS"):
            from clearwall.dnsserver.entry import launch_args

            argv = launch_args(opts, level)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(argv[0], argv)  # same pid: signals and supervisors see no change
        from clearwall.dnsserver.workers import serve as run

        run(opts)
