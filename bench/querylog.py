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
import resource
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

from clearwall.config import DNSConfig, LoggingConfig  # noqa: E402
from clearwall.dnsserver.gateway import Gateway, build_gateway  # noqa: E402
from clearwall.dnsserver.memory import MemoryUpstream  # noqa: E402
from clearwall.dnsserver.policy import StaticPolicy  # noqa: E402
from clearwall.model import Action, AuthorityKind, Category, OrderRef  # noqa: E402

ORDER = OrderRef(
    1, "*", "Court", AuthorityKind.COURT, Category.COURT_ORDER, Action.NXDOMAIN, "O", "A", "R"
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def measure(logging: LoggingConfig | None, queries: int, repeat: int) -> dict[str, float]:
    """ns of CPU per UDP answer (best run), and the writer's µs per record."""
    upstream = MemoryUpstream({})
    gw: Gateway = build_gateway(
        DNSConfig(),
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
    for name in ("www.blocked.example", "www.allowed.example"):
        query = dns.message.make_query(name, "A").to_wire()
        await gw.resolve(query, client="127.0.0.1")  # fills the cache and the reply table
        await gw.resolve(query, client="127.0.0.1")
        assert fast(query, "127.0.0.1") is not None, "the fast path did not answer"
        best = float("inf")
        for _ in range(repeat):
            start = time.process_time()
            for _ in range(queries):
                # As the listener does: the fast path, else the general path (the fast
                # path's entries are fresh for a second, then the chain renews them).
                if fast(query, "127.0.0.1") is None:
                    dispatcher.udp(query, "127.0.0.1", 5353, later)
            best = min(best, time.process_time() - start)
            if gw.querylog is not None:
                gw.querylog.ship()
                gw.querylog.flush(60)  # the writer keeps up between runs (not timed)
        out["blocked_ns" if "blocked" in name else "allowed_ns"] = best / queries * 1e9
    if gw.querylog is not None:
        before = _children_cpu()
        gw.querylog.stop()  # waits for the writer process: its CPU is then counted
        stored = gw.metrics.querylog_records
        out["writer_us_per_record"] = (_children_cpu() - before) / max(1, stored) * 1e6
        out["records"] = stored
        out["dropped"] = gw.metrics.querylog_dropped
    return out


def main() -> None:
    """Print the figures for the log off and on."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--queries", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="clearwall-bench-querylog-") as tmp:
        on = LoggingConfig(
            query_log=True, query_log_dir=Path(tmp), query_log_queue=10 * args.queries
        )
        off = asyncio.run(measure(None, args.queries, args.repeat))
        logged = asyncio.run(measure(on, args.queries, args.repeat))
    print(f"fast-path answer, CPU ns per query (best of {args.repeat} x {args.queries:,}):")
    print("| answer | log off | log on | added |")
    print("| --- | --- | --- | --- |")
    for key, label in (("allowed_ns", "cache hit"), ("blocked_ns", "block")):
        print(f"| {label} | {off[key]:.0f} | {logged[key]:.0f} | {logged[key] - off[key]:+.0f} |")
    print(
        f"writer process: {logged['writer_us_per_record']:.2f} µs CPU per answer stored "
        f"({logged['records']:,.0f} stored, {logged['dropped']:,.0f} dropped)"
    )


if __name__ == "__main__":
    main()
