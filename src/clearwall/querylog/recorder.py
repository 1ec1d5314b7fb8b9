"""The data plane's side of the query log: answers counted per second, shipped to a writer.

``Recorder.add`` is called on the reply path, after the reply is ready. Identical answers
within one second (same client, same query bytes after the ID, same transport and
rcode) are one group: the first opens it with its jurisdiction, decision and orders, the
others add one to its count and their latency to its sum and maximum, a dictionary
lookup. Every ``FLUSH_INTERVAL`` seconds (and at each policy swap, so that a group never
spans two policies) the groups are shipped: each client address is truncated to its
network prefix right there (memoized per address), so the full address never leaves
this process; the groups are serialized (``marshal``, one C call) and a shipping thread
writes them to the stdin of a writer process (``querylog.writer``) that decodes the
names and appends them to the SQLite segments.

Why groups: a record per answer cost the reply path about 0.8 µs and the writer 3 µs
per answer (bench/querylog.py); a repeated name now costs a dictionary lookup. Why a
process and not a thread: a writer thread holds the GIL in stretches of up to the
switch interval (5 ms), and replies waited behind it.

When more than ``[logging] query_log_queue`` groups are waiting for the writer, new
ones are dropped and counted (``clearwall_querylog_dropped_total``, in answers), never
waited for; answers the writer fails to store are counted there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import marshal
import queue
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING

from clearwall.config import LoggingConfig
from clearwall.querylog.record import Key, Shipped, truncate

if TYPE_CHECKING:
    from clearwall.dnsserver.metrics import DNSMetrics

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5  # seconds between shipments
_PREFIX_MEMO_MAX = 65_536


Group = list[object]
"""[count, latency sum, latency max, jurisdiction, decision, orders] of one ``Key``."""


class Recorder:
    """Counts answers in groups and ships them to the writer; the only query-log code on
    the reply path (``add``, and the fast path's inlined copy of it in
    ``handlers.querylog``) and on the event loop (``ship``)."""

    def __init__(self, config: LoggingConfig, metrics: DNSMetrics, writer: str = "w0") -> None:
        """Record into ``config.query_log_dir`` as ``writer`` (unique per DNS process)."""
        self.config = config
        self.metrics = metrics
        self.writer = writer
        self.limit = config.query_log_queue
        self.groups: dict[Key, Group] = {}  # the same object for the recorder's life
        self._prefixes: dict[str, str] = {}
        self._v4 = config.client_prefix_v4
        self._v6 = config.client_prefix_v6
        self._outbox: queue.SimpleQueue[tuple[int, int, bytes] | None] = queue.SimpleQueue()
        self.pending = 0  # groups shipped to the writer and not yet acknowledged
        self._shipped = 0
        self._acked = 0
        self._acked_cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self._timer: asyncio.TimerHandle | None = None
        self.failures = 0

    # -- the reply path ----------------------------------------------------------------

    def add(
        self,
        when: float,
        latency: float,
        host: str,
        after_id: bytes,
        tcp: bool,
        rcode: int,
        jurisdiction: str,
        decision: str,
        orders: tuple[int, ...],
    ) -> None:
        """Count one answered query (``when`` on ``time.perf_counter``); never blocks."""
        key = (int(when), host, after_id, tcp, rcode)
        cell = self.groups.get(key)
        if cell is not None:
            cell[0] += 1  # type: ignore[operator]
            cell[1] += latency  # type: ignore[operator]
            if latency > cell[2]:  # type: ignore[operator]
                cell[2] = latency
            return
        self.open(key, latency, jurisdiction, decision, orders)

    def open(
        self, key: Key, latency: float, jurisdiction: str, decision: str, orders: tuple[int, ...]
    ) -> None:
        """Open a group for ``key`` with its first answer (or drop it, counted)."""
        groups = self.groups
        if self.pending + len(groups) >= self.limit:
            self.metrics.querylog_dropped += 1
            return
        groups[key] = [1, latency, latency, jurisdiction, decision, orders]

    def _prefix(self, host: str) -> str:
        client = self._prefixes.get(host)
        if client is None:
            client = truncate(host, self._v4, self._v6)
            if len(self._prefixes) >= _PREFIX_MEMO_MAX:
                self._prefixes.clear()
            self._prefixes[host] = client
        return client

    def ship(self) -> None:
        """Hand the groups to the shipping thread, client addresses truncated."""
        groups = self.groups
        if not groups:
            return
        prefix = self._prefix
        shipped: list[Shipped] = [
            (second, n, lsum, lmax, prefix(host), j, after_id, decision, rcode, orders, tcp)  # type: ignore[misc]
            for (second, host, after_id, tcp, rcode), (n, lsum, lmax, j, decision, orders) in (
                groups.items()
            )
        ]
        groups.clear()
        # perf_counter seconds become wall-clock times against one reading per shipment.
        payload = marshal.dumps((time.time(), time.perf_counter(), shipped))
        answers = sum(s[1] for s in shipped)
        self.pending += len(shipped)
        self._shipped += len(shipped)
        self._outbox.put((len(shipped), answers, payload))

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer process and the threads that feed it and read its replies;
        in an event loop, also ship the groups every ``FLUSH_INTERVAL`` seconds."""
        if self._proc is None:
            self._spawn()
            log.info(
                "query log on: %s, clients truncated to /%d (IPv4) and /%d (IPv6), "
                "kept %g days and %d MiB at most (writer pid %d)",
                self.config.query_log_dir,
                self._v4,
                self._v6,
                self.config.query_log_max_days,
                self.config.query_log_max_mb,
                self._proc.pid if self._proc else -1,
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is None:
            self._tick(loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ship()
        self._timer = loop.call_later(FLUSH_INTERVAL, self._tick, loop)

    def _spawn(self) -> None:
        spec = {
            "dir": str(self.config.query_log_path()),
            "writer": self.writer,
            "max_bytes": self.config.query_log_max_mb * 1024 * 1024,
            "max_age": self.config.query_log_max_days * 86400.0,
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "clearwall.querylog.writer", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._threads = [
            threading.Thread(
                target=self._feed, args=(self._proc.stdin,), name="querylog-ship", daemon=True
            ),
            threading.Thread(
                target=self._read, args=(self._proc.stdout,), name="querylog-acks", daemon=True
            ),
        ]
        for t in self._threads:
            t.start()

    def _feed(self, pipe: IO[bytes]) -> None:
        """Write each shipment to the writer (the write releases the GIL)."""
        while True:
            item = self._outbox.get()
            if item is None:
                break
            count, answers, payload = item
            try:
                pipe.write(len(payload).to_bytes(4, "big") + payload)
                pipe.flush()
            except (OSError, ValueError) as exc:
                self._lost(count, answers, f"the writer process is gone: {exc}")
        with contextlib.suppress(OSError):
            pipe.close()

    def _read(self, pipe: IO[bytes]) -> None:
        """The writer's acknowledgements, one per shipment:
        ``<groups> <answers written> <answers failed> <error>``."""
        for line in pipe:
            parts = line.decode("utf-8", "replace").rstrip("\n").split(" ", 3)
            try:
                groups, written, failed = int(parts[0]), int(parts[1]), int(parts[2])
            except (IndexError, ValueError):
                continue
            self.metrics.querylog_records += written
            if failed:
                why = parts[3] if len(parts) > 3 else "write failed"
                self._lost(0, failed, why)
            self._ack(groups)

    def _lost(self, groups: int, answers: int, why: str) -> None:
        self.metrics.querylog_dropped += answers
        self.failures += 1
        if self.failures == 1 or self.failures % 100 == 0:
            log.warning("query log: %d answer(s) lost (%d times): %s", answers, self.failures, why)
        if groups:
            self._ack(groups)

    def _ack(self, count: int) -> None:
        with self._acked_cond:
            self._acked += count
            self.pending -= count
            self._acked_cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Ship the groups and wait until the writer stored them (tests, shutdown);
        True when everything shipped was acknowledged in time."""
        if self._proc is None:
            self._spawn()
        self.ship()
        target = self._shipped
        deadline = time.monotonic() + timeout
        with self._acked_cond:
            while self._acked < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._alive():
                    return False
                self._acked_cond.wait(min(left, 0.2))
        return True

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Ship the groups, then stop the writer process and the threads."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if (self.groups or self._proc is not None) and not self.flush():
            log.warning("query log: the writer did not store the last records in time")
        if self._proc is not None:
            self._outbox.put(None)
            for t in self._threads:
                t.join(timeout=10)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
            self._threads = []
