"""Metrics of the mirrored registries, read from the store at scrape time.

The jobs that sync the registries run in their own process; what they did is in the
store (``mirrors`` and ``mirror_evidence``), so the web app's ``/metrics`` reads it there
and every gateway on the same store reports the same.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import inspect

from clearwall.federation import records
from clearwall.store.db import Store

log = logging.getLogger(__name__)

STATUSES = ("new", "ok", "unreachable", "invalid", "refused")


class MirrorCollector:
    """``clearwall_mirror_*`` gauges and counters, one series per registry URL."""

    def __init__(self, store: Store) -> None:
        """Read the mirrors of ``store``."""
        self.store = store

    def describe(self) -> list[Any]:
        """Nothing up front: the families are built at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        """The families (none when the store cannot be read or mirrors nothing)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        try:
            if not inspect(self.store.engine).has_table("mirrors"):
                return
            mirrors = records.list_all(self.store)
            evidence = records.evidence(self.store)
        except Exception as exc:  # a scrape must not fail for a database moment
            log.warning("metrics: mirrors not readable: %s", exc)
            return
        size = GaugeMetricFamily(
            "clearwall_mirror_size", "Registry log entries verified so far", labels=["registry"]
        )
        synced = GaugeMetricFamily(
            "clearwall_mirror_synced_timestamp_seconds",
            "When a registry's checkpoint was last verified and followed",
            labels=["registry"],
        )
        status = GaugeMetricFamily(
            "clearwall_mirror_status",
            "1 for the outcome of the last sync attempt (ok, unreachable, invalid, refused)",
            labels=["registry", "status"],
        )
        failures = CounterMetricFamily(
            "clearwall_mirror_failures",
            "Sync attempts that changed nothing because the registry could not be followed",
            labels=["registry"],
        )
        refusals = GaugeMetricFamily(
            "clearwall_mirror_evidence",
            "Refused checkpoints kept as evidence of a forked or rewritten registry log",
            labels=["registry"],
        )
        for m in mirrors:
            size.add_metric([m.url], m.size)
            if m.synced_at is not None:
                synced.add_metric([m.url], m.synced_at.timestamp())
            for name in STATUSES:
                status.add_metric([m.url, name], 1.0 if m.status == name else 0.0)
            failures.add_metric([m.url], m.failures)
            refusals.add_metric([m.url], sum(1 for e in evidence if e.mirror_id == m.id))
        yield from (size, synced, status, failures, refusals)


def register(registry: CollectorRegistry, store: Store) -> None:
    """Add the collector to ``registry`` once."""
    with contextlib.suppress(ValueError):  # already there when apps share a registry
        registry.register(MirrorCollector(store))
