"""Prometheus metrics of the DNS gateway, counted in plain integers on the hot path.

``prometheus_client`` counters take a lock and a label lookup per increment (~1 µs);
the data plane instead bumps dictionary entries and this module's collector turns them
into metric families only when ``/metrics`` is scraped. No client address is ever a label.
``prometheus_client`` and dnspython are imported at the first scrape, not by the data
plane: a gateway that serves no metrics does not hold them (about 9 MiB of RSS).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from clearwall.model import OrderRef

if TYPE_CHECKING:
    from prometheus_client.core import Metric

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


class DNSMetrics:
    """Counters of one data-plane process; read by ``DNSCollector`` at scrape time."""

    def __init__(self) -> None:
        self.queries: dict[tuple[int, int, str], int] = {}  # (qtype, rcode, decision)
        self.blocks: dict[int, int] = {}  # order id -> blocked answers
        self.orders: dict[int, OrderRef] = {}  # order id -> ref, for labels
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache_size: Callable[[], int] = lambda: 0
        self.inflight = 0
        self.malformed = 0
        self.tcp_connections = 0
        self.tcp_evicted = 0  # connections closed to give their slot to a new client
        self.upstream_failures = 0
        self.stale_served = 0
        self.policy_version = 0
        self.policy_swaps = 0
        self.querylog_records = 0  # written by the query log's writer thread
        self.querylog_dropped = 0  # not recorded: the writer had fallen behind
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0

    def count_query(self, qtype: int, rcode: int, decision: str) -> None:
        """Count one answered (or dropped) query."""
        key = (qtype, rcode, decision)
        q = self.queries
        q[key] = q.get(key, 0) + 1

    def count_block(self, order: OrderRef) -> None:
        """Count one block answer citing ``order``."""
        b = self.blocks
        oid = order.id
        b[oid] = b.get(oid, 0) + 1
        if oid not in self.orders:
            self.orders[oid] = order

    def observe_upstream(self, seconds: float) -> None:
        """Record one upstream round trip."""
        self._latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def latency_buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative histogram buckets and the sum, in Prometheus form."""
        out: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self._latency, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out, self._latency_sum


def _qtype_text(qtype: int) -> str:
    import dns.rdatatype

    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))
    except ValueError:
        return str(qtype)


def _rcode_text(rcode: int) -> str:
    import dns.rcode

    try:
        return dns.rcode.to_text(dns.rcode.Rcode.make(rcode))
    except ValueError:
        return str(rcode)


class DNSCollector:
    """Exposes one or more ``DNSMetrics`` (summed) in the Prometheus exposition format.

    A ``prometheus_client`` collector by protocol (``collect``); register it with a
    ``CollectorRegistry``.
    """

    def __init__(
        self,
        sources: Callable[[], list[DNSMetrics]],
        store_reachable: Callable[[], bool | None] | None = None,
    ) -> None:
        """Sum ``sources``; ``store_reachable`` says whether the policy store answered
        the last poll (None or absent: no store is watched, no metric)."""
        self._sources = sources
        self._store_reachable = store_reachable

    def collect(self) -> Iterator[Metric]:
        """Build every metric family from the current counters."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        sources = self._sources()
        queries = CounterMetricFamily(
            "clearwall_dns_queries",
            "DNS queries answered, by type, rcode and decision",
            labels=["qtype", "rcode", "decision"],
        )
        merged: dict[tuple[int, int, str], int] = {}
        for m in sources:
            for key, value in list(m.queries.items()):
                merged[key] = merged.get(key, 0) + value
        for (qtype, rcode, decision), value in sorted(merged.items()):
            queries.add_metric([_qtype_text(qtype), _rcode_text(rcode), decision], value)
        yield queries

        blocks = CounterMetricFamily(
            "clearwall_dns_blocks",
            "Block answers, by order, category and jurisdiction",
            labels=["order", "category", "jurisdiction", "authority"],
        )
        for m in sources:
            for oid, value in list(m.blocks.items()):
                o = m.orders[oid]
                blocks.add_metric([str(oid), o.category.value, o.jurisdiction, o.authority], value)
        yield blocks

        hits = sum(m.cache_hits for m in sources)
        misses = sum(m.cache_misses for m in sources)
        yield CounterMetricFamily("clearwall_dns_cache_hits", "Answer cache hits", value=hits)
        yield CounterMetricFamily("clearwall_dns_cache_misses", "Answer cache misses", value=misses)
        yield GaugeMetricFamily(
            "clearwall_dns_cache_hit_ratio",
            "Cache hits / lookups",
            value=hits / (hits + misses) if hits + misses else 0.0,
        )
        yield GaugeMetricFamily(
            "clearwall_dns_cache_entries",
            "Entries in the answer cache",
            value=sum(m.cache_size() for m in sources),
        )
        yield GaugeMetricFamily(
            "clearwall_dns_inflight",
            "Upstream queries in flight",
            value=sum(m.inflight for m in sources),
        )
        yield GaugeMetricFamily(
            "clearwall_dns_tcp_connections",
            "Open client TCP connections",
            value=sum(m.tcp_connections for m in sources),
        )
        yield CounterMetricFamily(
            "clearwall_dns_tcp_evicted",
            "TCP connections closed, idle longest first, to admit a new one (table full)",
            value=sum(m.tcp_evicted for m in sources),
        )
        yield CounterMetricFamily(
            "clearwall_dns_malformed",
            "Malformed queries (FORMERR/drop)",
            value=sum(m.malformed for m in sources),
        )
        yield CounterMetricFamily(
            "clearwall_dns_upstream_failures",
            "Queries no upstream answered",
            value=sum(m.upstream_failures for m in sources),
        )
        yield CounterMetricFamily(
            "clearwall_dns_stale_served",
            "Stale answers served (RFC 8767)",
            value=sum(m.stale_served for m in sources),
        )
        yield GaugeMetricFamily(
            "clearwall_dns_policy_version",
            "Policy version in force",
            value=max((m.policy_version for m in sources), default=0),
        )
        reachable = None if self._store_reachable is None else self._store_reachable()
        if reachable is not None:
            yield GaugeMetricFamily(
                "clearwall_store_reachable",
                "1 when the policy store answered the last poll; 0 while it is away (the "
                "policy in force stays)",
                value=1 if reachable else 0,
            )
        yield CounterMetricFamily(
            "clearwall_dns_policy_swaps",
            "Policy snapshot swaps",
            value=sum(m.policy_swaps for m in sources),
        )
        yield CounterMetricFamily(
            "clearwall_querylog_records",
            "Query-log records written (0 while [logging] query_log is off)",
            value=sum(m.querylog_records for m in sources),
        )
        yield CounterMetricFamily(
            "clearwall_querylog_dropped",
            "Query-log records dropped because the writer fell behind",
            value=sum(m.querylog_dropped for m in sources),
        )
        hist = HistogramMetricFamily(
            "clearwall_dns_upstream_latency_seconds", "Upstream round-trip time"
        )
        total: dict[str, float] = {}
        total_sum = 0.0
        for m in sources:
            buckets, s = m.latency_buckets()
            total_sum += s
            for bound, bucket_count in buckets:
                total[bound] = total.get(bound, 0.0) + bucket_count
        hist.add_metric([], list(total.items()), total_sum)
        yield hist


_SCALARS = (
    "cache_hits",
    "cache_misses",
    "inflight",
    "malformed",
    "tcp_connections",
    "tcp_evicted",
    "upstream_failures",
    "stale_served",
    "policy_version",
    "policy_swaps",
    "querylog_records",
    "querylog_dropped",
)


def export(m: DNSMetrics) -> dict[str, object]:
    """A picklable copy of a worker's counters, sent to the supervisor."""
    out: dict[str, object] = {name: getattr(m, name) for name in _SCALARS}
    out["queries"] = dict(m.queries)
    out["blocks"] = dict(m.blocks)
    out["orders"] = dict(m.orders)
    out["cache_entries"] = m.cache_size()
    out["latency"] = list(m._latency)
    out["latency_sum"] = m._latency_sum
    return out


def absorb(m: DNSMetrics, data: dict[str, object]) -> None:
    """Replace ``m``'s counters by a worker's exported copy."""
    for name in _SCALARS:
        setattr(m, name, data[name])
    m.queries = data["queries"]  # type: ignore[assignment]
    m.blocks = data["blocks"]  # type: ignore[assignment]
    m.orders = data["orders"]  # type: ignore[assignment]
    entries = int(data["cache_entries"])  # type: ignore[call-overload]
    m.cache_size = lambda: entries
    m._latency = data["latency"]  # type: ignore[assignment]
    m._latency_sum = data["latency_sum"]  # type: ignore[assignment]
