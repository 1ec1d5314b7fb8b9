#!/usr/bin/env python3
"""Query-log cost on the data plane, without sockets: CPU per fast-path answer, log off/on.

A gateway (in-memory upstream, one blocked name) answers the same UDP query through its
fast path (the fused C path, as the listener calls it) ``--queries`` times; the CPU time
per answer is the best of ``--repeat`` runs (``time.process_time``: this process only).
With the log on, the same is measured while the records are shipped to the writer
process, whose own CPU per stored record is measured too. Complements ``bench/dns.py``
(sockets, dnsperf), whose figures move with the machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Running as a script puts bench/ first on sys.path, where bench/dns.py would shadow
# dnspython's ``dns`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import dns.message  # noqa: E402

from clearwall.config import CacheConfig, DNSConfig, LoggingConfig  # noqa: E402
from clearwall.dnsserver.gateway import Gateway, build_gateway  # noqa: E402
from clearwall.dnsserver.memory import MemoryUpstream  # noqa: E402
from clearwall.dnsserver.policyholder import StaticPolicy  # noqa: E402
from clearwall.model import Action, AuthorityKind, Category, OrderRef  # noqa: E402

ORDER = OrderRef(
    1, "*", "Court", AuthorityKind.COURT, Category.COURT_ORDER, Action.NXDOMAIN, "O", "A", "R"
)


def _writer_cpu(gw: Gateway) -> float:
    """CPU seconds the query log's writer process has used so far (0 without one)."""
    proc = gw.querylog._proc if gw.querylog is not None else None
    if proc is None:
        return 0.0
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    logging: LoggingConfig | None, queries: int, repeat: int, names: int
) -> dict[str, float]:
    """CPU ns per UDP answer (best run) of this process, and of the writer process, for
    queries cycling over ``names`` blocked names, then ``names`` allowed ones."""
    upstream = MemoryUpstream(
        {f"n{i}.allowed.example": [("A", 300, "192.0.2.1")] for i in range(names)}
    )
    gw: Gateway = build_gateway(
        DNSConfig(cache=CacheConfig(max_entries=max(100_000, 4 * names))),
        StaticPolicy(names={"blocked.example": [ORDER]}),
        transport=upstream,
        logging_config=logging,
    )
    if gw.querylog is not None:
        gw.querylog.start()
    dispatcher = gw.server.dispatcher
    fast = dispatcher.fast
    assert fast is not None

    def later() -> Callable[[bytes | None], None]:
        return lambda _reply: None

    out: dict[str, float] = {}
    for kind in ("blocked", "allowed"):
        batch = [
            dns.message.make_query(f"n{i}.{kind}.example", "A").to_wire() for i in range(names)
        ]
        for query in batch:  # fills the cache and the reply table
            await gw.resolve(query, client="127.0.0.1")
            await gw.resolve(query, client="127.0.0.1")
        await gw.resolve(batch[0], client="127.0.0.1")  # entries stay fresh for a second
        assert fast(batch[0], "127.0.0.1") is not None, "the fast path did not answer"
        best = best_writer = float("inf")
        for _ in range(repeat):
            writer_before = _writer_cpu(gw)
            start = time.process_time()
            for n in range(queries):
                query = batch[n % names]
                # As the listener does: the fast path, else the general path (the fast
                # path's entries are fresh for a second, then the chain renews them).
                if fast(query, "127.0.0.1") is None:
                    dispatcher.udp(query, "127.0.0.1", 5353, later)
            if gw.querylog is not None:
                gw.querylog.ship()  # the shipment is the reply path's cost too
            best = min(best, time.process_time() - start)
            if gw.querylog is not None:
                gw.querylog.flush(60)
            best_writer = min(best_writer, _writer_cpu(gw) - writer_before)
        out[f"{kind}_ns"] = best / queries * 1e9
        out[f"{kind}_writer_ns"] = best_writer / queries * 1e9
    if gw.querylog is not None:
        gw.querylog.stop()
        out["records"] = gw.metrics.querylog_records
        out["dropped"] = gw.metrics.querylog_dropped
    return out


def main() -> None:
    """Print the figures for the log off and on."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--queries", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--names", default="1,10000", help="distinct names per run (1,10000)")
    args = p.parse_args()
    print(
        f"CPU ns per UDP answer on the fast path (best of {args.repeat} x {args.queries:,});"
        " 'writer' is the writer process's share"
    )
    print("| names | answer | log off | log on | writer | added |")
    print("| --- | --- | --- | --- | --- | --- |")
    for names in (int(n) for n in args.names.split(",")):
        with tempfile.TemporaryDirectory(prefix="clearwall-bench-querylog-") as tmp:
            on = LoggingConfig(
                query_log=True, query_log_dir=Path(tmp), query_log_queue=10 * args.queries
            )
            off = asyncio.run(measure(None, args.queries, args.repeat, names))
            logged = asyncio.run(measure(on, args.queries, args.repeat, names))
        for kind in ("allowed", "blocked"):
            base, mine = off[f"{kind}_ns"], logged[f"{kind}_ns"]
            writer = logged[f"{kind}_writer_ns"]
            print(
                f"| {names:,} | {'cache hit' if kind == 'allowed' else 'block'} | {base:.0f} "
                f"| {mine:.0f} | {writer:.0f} | {mine + writer - base:+.0f} |"
            )
        assert logged["dropped"] == 0, logged


if __name__ == "__main__":
    main()
