"""Runs the gateway: one process, or N worker processes sharing the port (SO_REUSEPORT).

The supervisor (the process ``clearwall serve`` starts) forks the workers before it
starts an event loop or a thread (fork, not spawn: no multiprocessing resource tracker,
no second interpreter start-up) and then owns the control plane: it
compiles policy snapshots (``policy_source``) and serves metrics. Each worker runs its
own event loop, listeners, chain and cache, and mmap-loads the same snapshot directory,
so N workers share one copy of the policy in the page cache. The supervisor sends new
snapshot paths down a pipe; workers send their counters back every second.
SIGTERM/SIGINT stop everything gracefully; SIGHUP reloads the config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from clearwall.config import Config, DNSConfig, LoggingConfig, load_config
from clearwall.control.policy_source import PolicySource, load_snapshot
from clearwall.dnsserver.gateway import Gateway, build_gateway
from clearwall.dnsserver.handlers import build_paths, describe
from clearwall.dnsserver.handlers.base import Services
from clearwall.dnsserver.lifeline import die_with_parent
from clearwall.dnsserver.metrics import DNSCollector, DNSMetrics, absorb, export
from clearwall.dnsserver.options import ServeOptions
from clearwall.dnsserver.policyholder import EMPTY_POLICY, PolicyHolder, PolicyView
from clearwall.jobs.process import JobsSchedule

log = logging.getLogger(__name__)

METRICS_PUSH_INTERVAL = 1.0


def _initial_policy(opts: ServeOptions) -> tuple[Path | None, PolicySource | None]:
    if opts.snapshot is not None:
        from clearwall.control.policy_source import saved_size

        log.info("serving the compiled snapshot %s: %s", opts.snapshot, saved_size(opts.snapshot))
        return opts.snapshot, None
    if opts.store_url is None:
        return None, None
    from clearwall.layout import snapshot_dir

    source = PolicySource(
        opts.store_url,
        opts.config.dns.block.public_url,
        opts.snapshot_dir or snapshot_dir(opts.store_url, opts.config.ledger),
        opts.config.dns.reload_interval,
        publish=lambda _p, _equivalent: None,
        consolidate_after=opts.config.dns.consolidate_after,
        ledger=opts.config.ledger,
    )
    return source.start_policy(opts.head_check), source


def _reachable(source: PolicySource | None) -> Callable[[], bool | None] | None:
    """Whether the watched store answered its last poll, for ``clearwall_store_reachable``."""
    if source is None:
        return None
    return lambda: source.store_reachable


def _start_metrics(
    opts: ServeOptions, collector: DNSCollector, policy: Callable[[], PolicyView]
) -> None:
    if opts.web_app is not None:
        try:
            opts.web_app(collector, policy)
        except Exception as exc:
            log.error("web app not started: %s", exc)
        return
    listen = opts.metrics_listen
    if listen is None:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(collector)
    try:
        start_http_server(listen.port, listen.host, registry=registry)
        log.info("metrics on http://%s/metrics", listen)
    except OSError as exc:
        log.warning("metrics endpoint %s not started: %s", listen, exc)


def prepare_tls(dns: DNSConfig) -> None:
    """Make the encrypted listeners' TLS contexts now, before any worker is forked: a bad
    certificate fails the start at once, and the workers inherit one session-ticket key,
    so a client resumes its TLS session whichever worker its next connection reaches."""
    if not dns.encrypted:
        return
    from clearwall.dnsserver import tls

    if dns.dot:
        tls.server_context(dns.tls_cert, dns.tls_key, (tls.ALPN_DOT,))
    if dns.doh:
        tls.server_context(dns.tls_cert, dns.tls_key, tls.ALPN_DOH)
    if dns.doq:
        tls.certificate_names(dns.tls_cert)  # aioquic loads it again; this checks it early


def serve(opts: ServeOptions) -> None:
    """Run until SIGTERM/SIGINT: one process when workers == 1, else a supervisor; with
    a store, its jobs (``clearwall.jobs``) are kept on their schedule by this process,
    each batch run in a child process."""
    prepare_tls(opts.config.dns)
    started_path, source = _initial_policy(opts)
    jobs = _jobs(opts)
    try:
        if opts.config.dns.workers <= 1:
            if jobs is not None:
                jobs.start()
            uvloop.run(_serve_single(opts, started_path, source))
        else:
            workers = _fork_workers(opts.config.dns, started_path, source, opts.config.logging)
            if jobs is not None:
                jobs.start()  # its thread after the fork: workers are forked thread-free
            uvloop.run(_supervise(opts, started_path, source, workers))
    finally:
        if jobs is not None:
            jobs.stop()
    log.info("clearwall DNS stopped")


def _jobs(opts: ServeOptions) -> JobsSchedule | None:
    """The jobs of the store served (none for a compiled snapshot)."""
    if opts.store_url is None:
        return None
    level = logging.getLogger().level
    return JobsSchedule(opts.config, opts.store_url, opts.config_path, opts.overrides, level)


def _stop_signals(stop: asyncio.Event, reload: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)


def quiet_gc() -> None:
    """Move everything built at start-up (snapshot, imports) out of the collector's sight
    and collect young objects less often: the data plane makes no reference cycles on the
    hot path (refcounting frees its garbage), so full collections walking the cache and
    the snapshot would only cost latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def _load(path: Path | None) -> PolicyView | None:
    return None if path is None else load_snapshot(path)


def rebuild_chain(gw: Gateway, dns: DNSConfig) -> list[str]:
    """Rebuild the handler chain for a reloaded config (listeners stay as they are)."""
    gw.policy.clear_listeners()  # the old handlers go away with their swap listeners
    # The encrypted upstreams' connections are kept unless their trust changed.
    old = gw.services.encrypted if gw.services is not None else None
    if getattr(old, "ca_file", None) != dns.upstream.ca_file:
        old = None
    services = Services(
        config=dns,
        policy=gw.policy,
        metrics=gw.metrics,
        transport=gw.transport,
        querylog=gw.querylog,  # [logging] changes apply on restart
        encrypted=old,
        listeners=gw.server.encrypted,
    )
    if gw.services is not None:
        services.clock = gw.services.clock
    built = build_paths(services)
    gw.services = services
    gw.server.set_paths(built.entry, built.fast, built.miss)
    chain, names = built.entry, built.names
    gw.chain, gw.handlers, gw.config = chain, names, dns
    gw.server.config = dns
    return names


def _reloaded(opts: ServeOptions) -> Config | None:
    """The config file read again and checked as far as building a chain needs (its
    upstreams: resolv.conf is read again too); None, logged, when it cannot be used, so
    the running chain stays as it is."""
    from clearwall.dnsserver.resolvconf import default_upstreams

    try:
        config = load_config(opts.config_path, opts.overrides)
        upstreams = default_upstreams(config.dns)
    except Exception as exc:
        log.error("SIGHUP: config not reloaded: %s", exc)
        return None
    log.info("SIGHUP: upstream: %s", upstreams.describe())
    return config


def _reloader(opts: ServeOptions, gw: Gateway) -> Callable[[], None]:
    def reload() -> None:
        if opts.config_path is None:
            log.info("SIGHUP: no config file to reload")
            return
        config = _reloaded(opts)
        if config is None:
            return
        if config.dns.listen != gw.config.listen:
            log.warning("SIGHUP: listen addresses change only on restart")
        names = rebuild_chain(gw, config.dns)
        log.info("SIGHUP: config reloaded; DNS chain: %s", describe(names))

    return reload


async def _serve_single(opts: ServeOptions, path: Path | None, source: PolicySource | None) -> None:
    loop = asyncio.get_running_loop()
    gw = build_gateway(opts.config.dns, _load(path), logging_config=opts.config.logging)
    await gw.start()
    _start_metrics(
        opts, DNSCollector(lambda: [gw.metrics], _reachable(source)), lambda: gw.policy.current
    )

    def apply(new_path: Path, equivalent: bool) -> None:
        try:
            gw.swap(load_snapshot(new_path), equivalent)
            gc.freeze()  # the new snapshot joins the long-lived objects
            log.info("policy swapped to version %d", gw.policy.current.tree_size)
        except Exception as exc:
            log.error("policy snapshot %s not loaded: %s", new_path, exc)

    if source is not None:
        source.publish = lambda p, e: loop.call_soon_threadsafe(apply, p, e)
        source.start()
    stop = asyncio.Event()
    _stop_signals(stop, _reloader(opts, gw))
    quiet_gc()
    log.info("clearwall DNS ready (policy version %d, 1 process)", gw.policy.current.tree_size)
    await stop.wait()
    log.info("clearwall DNS stopping")
    if source is not None:
        source.stop()
    await gw.stop()


if TYPE_CHECKING:  # multiprocessing is imported only when workers are forked
    import multiprocessing.connection
    import multiprocessing.process

    Workers = list[
        tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]
    ]


def _fork_workers(
    dns: DNSConfig,
    path: Path | None,
    source: PolicySource | None,
    logging_config: LoggingConfig | None = None,
) -> Workers:
    """Fork the workers (no event loop or thread exists yet, so forking is safe)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    inherited = source.inherited_fds() if source is not None else ()
    workers: Workers = []
    for index in range(dns.workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=worker_main,
            name=f"clearwall-dns-{index}",
            args=(dns, str(path) if path else None, child, index, logging.getLogger().level),
            kwargs={
                "close_fds": (*inherited, *(conn.fileno() for _p, conn in workers)),
                "supervisor": os.getpid(),
                "logging_config": logging_config,
            },
            daemon=True,
        )
        proc.start()
        child.close()
        workers.append((proc, parent))
    return workers


def worker_main(
    dns: DNSConfig,
    path: str | None,
    conn: multiprocessing.connection.Connection,
    index: int,
    log_level: int,
    close_fds: tuple[int, ...] = (),
    supervisor: int | None = None,
    logging_config: LoggingConfig | None = None,
) -> None:
    """Entry point of one worker process; it dies with ``supervisor`` (its parent's pid)."""
    if supervisor is not None:
        die_with_parent(supervisor)  # never serve an old policy on the port alone
    for fd in close_fds:  # the supervisor's pipes (compiler, other workers) are not ours
        with contextlib.suppress(OSError):
            os.close(fd)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when to stop
    if dns.batch_scheduling:
        batch_scheduling()
    uvloop.run(_worker(dns, path, conn, logging_config, f"w{index}"))


def batch_scheduling() -> bool:
    """Put this process under SCHED_BATCH where the platform has it; True when it did.

    Workers that share a core otherwise preempt each other whenever a datagram wakes the
    sleeping one, mid-batch. Measured with 2 workers on one core (hit workload, 3 runs
    each): 93.6k q/CPU-s under SCHED_BATCH against 83.7k without; one worker alone
    105k, unchanged by it.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as exc:
        log.debug("SCHED_BATCH not set: %s", exc)
        return False
    return True


async def _worker(
    dns: DNSConfig,
    path: str | None,
    conn: multiprocessing.connection.Connection,
    logging_config: LoggingConfig | None = None,
    writer: str = "w0",
) -> None:
    loop = asyncio.get_running_loop()
    gw = build_gateway(
        dns,
        _load(Path(path) if path else None),
        reuse_port=True,
        logging_config=logging_config,
        writer=writer,
    )
    await gw.start()
    quiet_gc()
    conn.send(("ready", gw.server.addresses))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def on_message() -> None:
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            stop.set()
            return
        if kind == "swap":
            path, equivalent = value
            try:
                gw.swap(load_snapshot(Path(path)), equivalent)
            except Exception as exc:
                log.error("policy snapshot %s not loaded: %s", path, exc)
        elif kind == "config":
            rebuild_chain(gw, value)
        elif kind == "stop":
            stop.set()

    loop.add_reader(conn.fileno(), on_message)

    async def push() -> None:
        while True:
            await asyncio.sleep(METRICS_PUSH_INTERVAL)
            with contextlib.suppress(OSError, ValueError):
                conn.send(("metrics", export(gw.metrics)))

    pusher = asyncio.ensure_future(push())
    await stop.wait()
    pusher.cancel()
    loop.remove_reader(conn.fileno())
    await gw.stop()


async def _supervise(
    opts: ServeOptions, path: Path | None, source: PolicySource | None, workers: Workers
) -> None:
    loop = asyncio.get_running_loop()
    dns = opts.config.dns
    sinks = [DNSMetrics() for _ in range(dns.workers)]
    ready: list[object] = []
    all_ready = asyncio.Event()
    stop = asyncio.Event()
    for index, (_proc, parent) in enumerate(workers):

        def on_message(
            conn: multiprocessing.connection.Connection = parent, sink: DNSMetrics = sinks[index]
        ) -> None:
            try:
                kind, value = conn.recv()
            except (EOFError, OSError):
                loop.remove_reader(conn.fileno())
                if not stop.is_set():
                    log.error("a DNS worker exited unexpectedly; stopping")
                    stop.set()
                return
            if kind == "metrics":
                absorb(sink, value)
            elif kind == "ready":
                ready.append(value)
                if len(ready) == len(workers):
                    all_ready.set()

        loop.add_reader(parent.fileno(), on_message)
    holder = PolicyHolder(_load(path) or EMPTY_POLICY)  # what the web app shows
    _start_metrics(opts, DNSCollector(lambda: sinks, _reachable(source)), lambda: holder.current)

    def broadcast(message: tuple[str, object]) -> None:
        for _proc, conn in workers:
            with contextlib.suppress(OSError):
                conn.send(message)

    def publish(new_path: Path, equivalent: bool) -> None:
        broadcast(("swap", (str(new_path), equivalent)))
        try:
            holder.swap(load_snapshot(new_path), equivalent)
        except Exception as exc:
            log.error("policy snapshot %s not loaded: %s", new_path, exc)

    if source is not None:
        source.publish = lambda p, e: loop.call_soon_threadsafe(publish, p, e)
        source.start()

    def reload() -> None:
        if opts.config_path is None:
            return
        config = _reloaded(opts)
        if config is None:
            return
        broadcast(("config", config.dns))
        log.info("SIGHUP: config sent to %d workers", len(workers))

    _stop_signals(stop, reload)
    ready_or_stop = asyncio.ensure_future(all_ready.wait())
    await asyncio.wait(
        [ready_or_stop, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if all_ready.is_set():
        log.info(
            "clearwall DNS ready: %d worker processes (pid %d supervising)",
            len(workers),
            os.getpid(),
        )
    await stop.wait()
    log.info("clearwall DNS stopping %d workers", len(workers))
    if source is not None:
        source.stop()
    broadcast(("stop", None))
    for worker, _conn in workers:
        await loop.run_in_executor(None, worker.join, 5)
        if worker.is_alive():
            worker.terminate()
