"""The RPZ primary: follows the log, turns each policy version into zones, serves and notifies.

Each time the store's log grows, the new policy version is read (only the orders the
new entries name) and every jurisdiction's zones are computed off the event loop; then
each zone's history takes the new version under the serial = the new tree size, and
every secondary is sent a NOTIFY for each zone whose content changed. Transfers keep
being served meanwhile from the version in force when they started.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from math import inf
from typing import Any

import dns.name

from clearwall.config import Config
from clearwall.store.db import Store
from clearwall.xfr.feed import PolicyFeed, PolicyVersion, publisher
from clearwall.xfr.history import ZoneHistory, serial_of
from clearwall.xfr.keys import keyring, primary_keys
from clearwall.xfr.messages import ZoneRecords
from clearwall.xfr.metrics import XfrMetrics
from clearwall.xfr.notify import Notifier
from clearwall.xfr.server import Responder, ServedZone, XfrServer
from clearwall.xfr.zones import Change, Zone, ZoneSet

log = logging.getLogger(__name__)

RETRY_MAX = 10.0  # seconds between attempts while a new version cannot be read or published


class Primary:
    """The zones of a store's policy, served over ``[xfr] listen`` and pushed by NOTIFY."""

    def __init__(self, config: Config, store: Store, metrics: XfrMetrics | None = None) -> None:
        """Serve ``store``'s policy as ``config``'s ``[xfr]`` section says; sinkhole
        addresses and the order links come from ``[dns.block]``. The ledger and the TSIG
        keys are the store's own unless the config names them (``clearwall.layout``)."""
        from clearwall.layout import resolve

        config = resolve(config, store.url)
        self.config = config
        x = config.xfr
        self.store = store
        self.metrics = metrics or XfrMetrics()
        # Serial = the published checkpoint's size: the fleet enforces nothing the public
        # log does not show (the primary publishes what is committed, as a gateway does).
        self.feed = PolicyFeed(store, publisher(store, config.ledger))
        self.zoneset = ZoneSet(x.suffix, config.dns.block.public_url)
        self.version: PolicyVersion | None = None
        self.zones: dict[dns.name.Name, ServedZone] = {}
        keys = primary_keys(x)
        self.responder = Responder(lambda: self.zones, x.allow, keyring(keys), self.metrics)
        self.server = XfrServer(self.responder, x.idle_timeout, x.max_connections)
        self.notifier = Notifier(
            x.secondaries,
            {name: key.key() for name, key in keys.items()},
            self.metrics,
            x.notify_timeout,
            x.notify_retries,
            (x.refresh, x.retry, x.expire, x.ttl),
        )
        self.changed = asyncio.Event()  # set after each new version (tests wait on it)
        self._starts: list[tuple[float, int]] = []
        self._warned: set[int] = set()

    def compute(self) -> tuple[PolicyVersion, dict[str, tuple[Zone, Change | None]]]:
        """Read the current policy version and bring the zones to it (blocking: run it in
        a thread; only the names the change can affect are recomputed)."""
        started = time.monotonic()
        version = self.feed.read()
        zones = self.zoneset.update(version.orders, version.jurisdictions, version.at)
        # The zones are millions of long-lived objects: keep them out of the collector's
        # full passes, which would otherwise walk them all now and then (about 1 s for a
        # million triggers) in the middle of a change.
        gc.freeze()
        entries = self.zoneset.index.entries
        self._starts = sorted((e.start, e.ref.id) for e in entries if version.at < e.start < inf)
        self.metrics.compute_seconds.set(time.monotonic() - started)
        return version, zones

    def apply(
        self, version: PolicyVersion, zones: dict[str, tuple[Zone, Change | None]]
    ) -> list[tuple[Zone, int]]:
        """Make ``zones`` of ``version`` current; the (zone, serial) pairs whose content
        changed or that are new."""
        x = self.config.xfr
        block = self.config.dns.block
        serial = serial_of(version.tree_size)
        served: dict[dns.name.Name, ServedZone] = {}
        changed: list[tuple[Zone, int]] = []
        for zone, change in zones.values():
            name = dns.name.from_text(zone.name)
            known = self.zones.get(name)
            if known is None:
                records = ZoneRecords(
                    zone.name,
                    x.ttl,
                    (x.refresh, x.retry, x.expire),
                    block.sinkhole_ipv4,
                    block.sinkhole_ipv6,
                )
                known = ServedZone(ZoneHistory(zone, serial, x.history), records)
                changed.append((zone, serial))
            elif known.history.serial != serial and known.history.update(zone, serial, change):
                changed.append((zone, serial))
            served[name] = known
            self.metrics.serial.labels(zone.name).set(serial)
            self.metrics.triggers.labels(zone.name).set(len(zone.policies))
        for gone in set(self.zones) - set(served):
            log.info("xfr: zone %s no longer served (its jurisdiction is gone)", gone)
        self.zones = served
        self.version = version
        return changed

    def _pending_starts(self) -> None:
        """Count (and warn once about) orders whose effective date passed after the log's
        last entry: the zones, a function of the log, show them from the next entry."""
        if self.version is None:
            return
        now = time.time()
        pending = [order_id for start, order_id in self._starts if start <= now]
        self.metrics.pending_starts.set(len(pending))
        for order_id in pending:
            if order_id not in self._warned:
                self._warned.add(order_id)
                log.warning(
                    "xfr: order %d took effect after the log's last entry (size %d): resolvers "
                    "fed by zone transfer enforce it from the next log entry",
                    order_id,
                    self.version.tree_size,
                )

    async def update(self) -> list[tuple[Zone, int]]:
        """Read and apply the current version (in a thread), notify, return what changed."""
        version, zones = await asyncio.to_thread(self.compute)
        if self.version is not None and version.tree_size == self.version.tree_size:
            return []
        first = self.version is None
        changed = self.apply(version, zones)
        if first:
            for name in zones:
                for note in self.zoneset.notes(name):
                    log.info("xfr: %s: %s", name, note)
        log.info(
            "xfr: serial %d (log size %d): %d zones, %d changed",
            serial_of(version.tree_size),
            version.tree_size,
            len(self.zones),
            len(changed),
        )
        for served, serial in changed:
            self.notifier.notify(served.name, serial, served.jurisdiction)
        self.changed.set()
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set: the first version, the listeners, then a poll of
        the log's size every ``[xfr] reload_interval`` seconds."""
        x = self.config.xfr
        await self.update()
        await self.server.start(x.listen)
        metrics = self._start_metrics() if x.metrics_listen is not None else None
        wait = x.reload_interval
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    break
                try:
                    size = await asyncio.to_thread(self.feed.size)
                    if self.version is None or size != self.version.tree_size:
                        await self.update()
                    self._pending_starts()
                    wait = x.reload_interval
                except Exception as exc:  # keep serving the last good version
                    log.error("xfr: policy update failed, still serving the last one: %s", exc)
                    # A failure that persists (the log cannot be published, say) is retried
                    # ever less often, as the gateway does: not an error line every poll.
                    wait = min(max(wait * 2, 1.0), RETRY_MAX)
        finally:
            self.notifier.cancel()
            await self.server.stop()
            if metrics is not None:  # its port is free again once the primary stops
                metrics.shutdown()
                metrics.server_close()

    def _start_metrics(self) -> Any:
        """The Prometheus endpoint on ``[xfr] metrics_listen`` (its HTTP server), or None
        when it cannot listen (a warning: transfers matter more than their metrics)."""
        from prometheus_client import start_http_server

        listen = self.config.xfr.metrics_listen
        assert listen is not None
        try:
            server, _thread = start_http_server(
                listen.port, listen.host, registry=self.metrics.registry
            )
        except OSError as exc:
            log.warning("xfr: metrics endpoint %s not started: %s", listen, exc)
            return None
        log.info("xfr: metrics on http://%s/metrics", listen)
        return server
