"""What the console's dashboard reads: the gateway's counters and the query log's buckets.

Only aggregates: counters summed over labels, and counts per hour. No client appears.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from clearwall.querylog import Filters, QueryLogReader
from clearwall.web.context import WebContext
from clearwall.web.queries import order_facts


def log_directory(ctx: WebContext) -> Path:
    """The query log the gateway beside this web app writes (``[logging] query_log_dir``,
    else beside the store); a path that holds nothing when it cannot be found."""
    from clearwall.errors import ClearwallError
    from clearwall.layout import query_log_location

    try:
        return query_log_location(ctx.config.logging, ctx.store.url, ctx.config.ledger)
    except ClearwallError:  # a PostgreSQL store without ledger paths: no place known
        return Path("/nonexistent/clearwall-querylog")


@dataclass
class GatewayFigures:
    """The gateway's counters at this moment (all zero without a gateway)."""

    queries_by_decision: Counter[str] = field(default_factory=Counter)
    blocks_by_category: Counter[str] = field(default_factory=Counter)
    blocks_by_jurisdiction: Counter[str] = field(default_factory=Counter)
    cache_hit_ratio: float = 0.0
    upstream_count: float = 0.0
    upstream_sum: float = 0.0
    upstream_buckets: list[tuple[str, float]] = field(default_factory=list)
    upstream_failures: float = 0.0
    policy_version: int = 0
    querylog_dropped: float = 0.0

    @property
    def upstream_mean_ms(self) -> float:
        """Mean upstream round trip in milliseconds."""
        return 1000.0 * self.upstream_sum / self.upstream_count if self.upstream_count else 0.0

    def latency_histogram(self) -> list[tuple[str, float]]:
        """Upstream round trips per latency band (not cumulative), for a bar chart."""
        out: list[tuple[str, float]] = []
        below = 0.0
        lower = "0"
        for bound, cumulative in self.upstream_buckets:
            label = f"> {lower} s" if bound == "+Inf" else f"≤ {bound} s"
            out.append((label, cumulative - below))
            below, lower = cumulative, bound
        return [(k, v) for k, v in out if v]


def gateway_figures(registry: CollectorRegistry | None, jurisdiction: str | None) -> GatewayFigures:
    """Read the DNS collector's families from ``registry`` (``jurisdiction``: only the
    blocks of that jurisdiction's orders are counted by category and jurisdiction)."""
    f = GatewayFigures()
    if registry is None:
        return f
    for family in registry.collect():
        name = family.name
        for s in family.samples:
            if name == "clearwall_dns_queries" and s.name.endswith("_total"):
                f.queries_by_decision[s.labels["decision"]] += int(s.value)
            elif name == "clearwall_dns_blocks" and s.name.endswith("_total"):
                code = s.labels["jurisdiction"]
                if jurisdiction is None or code == jurisdiction:
                    f.blocks_by_category[s.labels["category"]] += int(s.value)
                    f.blocks_by_jurisdiction["all" if code == "*" else code.upper()] += int(s.value)
            elif name == "clearwall_dns_cache_hit_ratio":
                f.cache_hit_ratio = float(s.value)
            elif name == "clearwall_dns_upstream_latency_seconds":
                if s.name.endswith("_bucket"):
                    f.upstream_buckets.append((s.labels["le"], float(s.value)))
                elif s.name.endswith("_count"):
                    f.upstream_count = float(s.value)
                elif s.name.endswith("_sum"):
                    f.upstream_sum = float(s.value)
            elif name == "clearwall_dns_upstream_failures" and s.name.endswith("_total"):
                f.upstream_failures = float(s.value)
            elif name == "clearwall_dns_policy_version":
                f.policy_version = int(s.value)
            elif name == "clearwall_querylog_dropped" and s.name.endswith("_total"):
                f.querylog_dropped = float(s.value)
    return f


@dataclass
class History:
    """Counts per hour from the query log over the last ``HOURS`` hours."""

    start: float
    end: float
    by_decision: dict[str, list[tuple[float, float]]]
    blocks_by_jurisdiction: dict[str, list[tuple[float, float]]]
    blocks_by_category: dict[str, list[tuple[float, float]]]


HOURS = 24


def history(
    reader: QueryLogReader, store: object, jurisdiction: str | None, now: float | None = None
) -> History:
    """The last day of the query log in hourly buckets (an authority: its clients only)."""
    now = time.time() if now is None else now
    end = (now // 3600 + 1) * 3600
    start = end - HOURS * 3600
    f = Filters(since=start, jurisdiction=jurisdiction)
    by_decision: dict[str, list[tuple[float, float]]] = {}
    for (t, decision), n in sorted(reader.buckets(f, 3600.0).items()):
        by_decision.setdefault(decision, []).append((t, float(n)))
    by_jurisdiction: dict[str, list[tuple[float, float]]] = {}
    per_order: dict[tuple[float, int], int] = {}
    for t, code, orders, n in reader.block_buckets(f, 3600.0):
        label = code.upper() or "no jurisdiction"
        series = by_jurisdiction.setdefault(label, [])
        series.append((t, float(n)))
        if orders:
            per_order[(t, orders[0])] = per_order.get((t, orders[0]), 0) + n
    categories = {
        o.order.id: o.order.category.value
        for o in order_facts(store, {oid for _, oid in per_order})  # type: ignore[arg-type]
    }
    by_category: dict[str, dict[float, float]] = {}
    for (t, oid), n in per_order.items():
        cell = by_category.setdefault(categories.get(oid, "unknown"), {})
        cell[t] = cell.get(t, 0.0) + n
    return History(
        start,
        end,
        by_decision,
        _merge(by_jurisdiction),
        {k: sorted(v.items()) for k, v in by_category.items()},
    )


def _merge(series: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for label, pts in series.items():
        sums: dict[float, float] = {}
        for t, v in pts:
            sums[t] = sums.get(t, 0.0) + v
        out[label] = sorted(sums.items())
    return out
