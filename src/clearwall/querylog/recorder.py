"""The data plane's side of the query log: a bounded queue and the writer thread.

``Recorder.add`` is called on the reply path, after the reply is ready: it truncates the
client address (memoized per address, so the full address goes no further than this
call), appends one tuple to a deque and returns; when the writer has fallen
``[logging] query_log_queue`` records behind, the record is dropped and counted
instead. A writer thread drains the deque every ``FLUSH_INTERVAL`` seconds (or sooner
when a batch is full), decodes names, and appends the batch to its segment store.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING

from clearwall.config import LoggingConfig
from clearwall.querylog.record import Raw, encode_orders, question_of, truncate
from clearwall.querylog.store import Row, SegmentStore

if TYPE_CHECKING:
    from clearwall.dnsserver.metrics import DNSMetrics

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5  # seconds between the writer's passes
BATCH = 4096  # records per transaction
_PREFIX_MEMO_MAX = 65_536


class Recorder:
    """Queues records for the writer; the only query-log code on the reply path."""

    def __init__(self, config: LoggingConfig, metrics: DNSMetrics, writer: str = "w0") -> None:
        """Record into ``config.query_log_dir`` as ``writer`` (unique per DNS process)."""
        self.config = config
        self.metrics = metrics
        self.limit = config.query_log_queue
        self.queue: collections.deque[Raw] = collections.deque()
        self._prefixes: dict[str, str] = {}
        self._v4 = config.client_prefix_v4
        self._v6 = config.client_prefix_v6
        self.store = SegmentStore(
            config.query_log_dir,
            writer,
            config.query_log_max_mb * 1024 * 1024,
            config.query_log_max_days * 86400.0,
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def add(
        self,
        when: float,
        latency: float,
        host: str,
        jurisdiction: str,
        data: bytes,
        decision: str,
        rcode: int,
        orders: tuple[int, ...],
        tcp: bool,
    ) -> None:
        """Queue one answered query (``when`` on ``time.perf_counter``); never blocks."""
        queue = self.queue
        if len(queue) >= self.limit:
            self.metrics.querylog_dropped += 1
            return
        client = self._prefixes.get(host)
        if client is None:
            client = truncate(host, self._v4, self._v6)
            if len(self._prefixes) >= _PREFIX_MEMO_MAX:
                self._prefixes.clear()
            self._prefixes[host] = client
        queue.append((when, latency, client, jurisdiction, data, decision, rcode, orders, tcp))
        if len(queue) >= BATCH:
            self._wake.set()

    def start(self) -> None:
        """Start the writer thread (after any fork: threads do not survive one)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="querylog", daemon=True)
            self._thread.start()
            log.info(
                "query log on: %s, clients truncated to /%d (IPv4) and /%d (IPv6), "
                "kept %g days and %d MiB at most",
                self.config.query_log_dir,
                self._v4,
                self._v6,
                self.config.query_log_max_days,
                self.config.query_log_max_mb,
            )

    def stop(self) -> None:
        """Write what is queued and stop the writer."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(timeout=10)
            self._thread = None
        try:
            self.flush()
        except Exception as exc:  # shutting down: say so, the records are counted dropped
            log.warning("query log: last records not written: %s", exc)
        self.store.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # a full disk must not kill the writer: count, go on
                self.failures += 1
                if self.failures == 1 or self.failures % 100 == 0:
                    log.warning("query log write failed (%d times): %s", self.failures, exc)

    def flush(self) -> int:
        """Write every queued record now (the writer thread calls this); how many."""
        queue = self.queue
        written = 0
        while queue:
            raw: list[Raw] = []
            pop = queue.popleft
            try:
                for _ in range(BATCH):
                    raw.append(pop())
            except IndexError:
                pass
            # perf_counter times become wall-clock times against one fresh reading, so
            # the clock's adjustments never skew more than one batch.
            wall, perf = time.time(), time.perf_counter()
            rows: list[Row] = []
            for when, latency, client, jurisdiction, data, decision, rcode, orders, tcp in raw:
                qname, qtype = question_of(data)
                rows.append(
                    (
                        wall - (perf - when),
                        client,
                        jurisdiction,
                        qname,
                        qtype,
                        decision,
                        encode_orders(orders),
                        rcode if rcode >= 0 else None,
                        latency * 1000.0,
                        "tcp" if tcp else "udp",
                    )
                )
            try:
                self.store.append(rows, wall)
            except Exception:
                self.metrics.querylog_dropped += len(rows)  # lost: counted as dropped
                raise
            written += len(rows)
            self.metrics.querylog_records += len(rows)
        return written
