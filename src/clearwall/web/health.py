"""Metrics of the control plane for operations: the log's size and its published checkpoint.

With the gateway's ``clearwall_dns_policy_version`` they let an alert see a policy change
that the data plane has not swapped in (deploy/prometheus/clearwall-rules.yml).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


class LogCollector:
    """``clearwall_log_entries`` (the store's log size) and ``clearwall_log_checkpoint_size``
    (the published checkpoint's), read at scrape time."""

    def __init__(self, store: Any, tlog: Any) -> None:
        """Read ``store`` and ``tlog``'s published checkpoint."""
        self.store = store
        self.tlog = tlog

    def describe(self) -> list[Any]:
        """Nothing up front: the families are built at scrape time."""
        return []

    def collect(self) -> Iterator[Any]:
        """The two gauges (a store or checkpoint that cannot be read is left out)."""
        from prometheus_client.core import GaugeMetricFamily

        try:
            size = self.store.log_size()
        except Exception as exc:
            log.warning("metrics: store not readable: %s", exc)
        else:
            yield GaugeMetricFamily(
                "clearwall_log_entries", "Entries committed to the policy log", value=size
            )
        try:
            published = self.tlog.published()
        except Exception as exc:
            log.warning("metrics: published checkpoint not readable: %s", exc)
        else:
            yield GaugeMetricFamily(
                "clearwall_log_checkpoint_size",
                "Size of the published signed checkpoint",
                value=published.size if published is not None else 0,
            )


def register(registry: CollectorRegistry, store: Any, tlog: Any) -> None:
    """Add the collector to ``registry`` once."""
    # Already registered when another app shares the registry.
    with contextlib.suppress(ValueError):
        registry.register(LogCollector(store, tlog))
