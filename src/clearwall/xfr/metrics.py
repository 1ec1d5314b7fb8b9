"""The primary's Prometheus metrics: requests, refusals, transfers, NOTIFY, zone serials.

They live in a registry of their own, served on ``[xfr] metrics_listen``: the primary
runs in a process of its own, beside the gateway's.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class XfrMetrics:
    """Every counter and gauge of the primary, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create the metrics in ``registry`` (a fresh one by default)."""
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "clearwall_xfr_requests",
            "Requests by kind (soa, ns, axfr, ixfr, other).",
            ["kind"],
            registry=r,
        )
        self.transfers = Counter(
            "clearwall_xfr_transfers",
            "Answers to AXFR/IXFR: axfr, ixfr (a difference), ixfr-full (a full zone for an "
            "unknown serial), ixfr-current (already up to date), udp (IXFR over UDP: SOA only).",
            ["kind"],
            registry=r,
        )
        self.bytes_sent = Counter(
            "clearwall_xfr_tcp_bytes_sent",
            "Octets sent over TCP, length prefixes included.",
            registry=r,
        )
        self.refused = Counter(
            "clearwall_xfr_refused",
            "Requests refused, by reason: acl, unsigned, badkey, badsig, badtime (TSIG), zone, "
            "type, connections.",
            ["reason"],
            registry=r,
        )
        self.malformed = Counter(
            "clearwall_xfr_malformed",
            "Requests answered FORMERR or dropped as malformed.",
            registry=r,
        )
        self.notify_sent = Counter(
            "clearwall_xfr_notify_sent",
            "NOTIFY messages sent, retries included.",
            ["secondary"],
            registry=r,
        )
        self.notify_acked = Counter(
            "clearwall_xfr_notify_acked", "NOTIFY acknowledged.", ["secondary"], registry=r
        )
        self.notify_retries = Counter(
            "clearwall_xfr_notify_retries",
            "NOTIFY retried after a timeout (back-off doubles each time).",
            ["secondary"],
            registry=r,
        )
        self.notify_failed = Counter(
            "clearwall_xfr_notify_failed",
            "NOTIFY given up: every retry timed out, or the secondary answered with an error.",
            ["secondary"],
            registry=r,
        )
        self.serial = Gauge(
            "clearwall_xfr_zone_serial",
            "Serial (log tree size) of each zone.",
            ["zone"],
            registry=r,
        )
        self.triggers = Gauge(
            "clearwall_xfr_zone_triggers", "Triggers (owners) in each zone.", ["zone"], registry=r
        )
        self.compute_seconds = Gauge(
            "clearwall_xfr_compute_seconds",
            "Seconds the last policy version took to read and turn into zones.",
            registry=r,
        )
        self.pending_starts = Gauge(
            "clearwall_xfr_orders_pending_start",
            "Orders on the log whose effective date has passed since the last log entry: the "
            "zones show them from the next entry on.",
            registry=r,
        )
