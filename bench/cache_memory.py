"""Memory the DNS gateway keeps per cached name: forwarded answers and blocks.

Usage: ``.venv/bin/python bench/cache_memory.py [--names 20000]``

Builds the real handler chain in-process (no sockets: a stand-in upstream answers each
query with one A record, as the benchmark's nsd zone does), resolves N distinct names
through the general path, then asks each again (fast path, or the general path when the
fast path declines), and reports the bytes tracemalloc counts per name, with the lines
that allocate most. The same for N names blocked by one order. The gateway benchmark
(``bench/dns.py``) caches ~55k answers in its miss workload, so this figure times 55k is
most of the difference between its RSS after the blocked and after the miss workload.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Running as a script puts bench/ first on sys.path, where bench/dns.py would shadow
# dnspython's ``dns`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from clearwall.config import CacheConfig, DNSConfig  # noqa: E402
from clearwall.dnsserver.gateway import build_gateway  # noqa: E402
from clearwall.dnsserver.policyholder import StaticPolicy  # noqa: E402
from clearwall.model import Action, AuthorityKind, Category, OrderRef  # noqa: E402

_ANSWER_RR = b"\xc0\x0c\x00\x01\x00\x01\x00\x01\x51\x80\x00\x04\xc6\x12\x01\x02"


def _reply(query: bytes) -> bytes:
    """A NOERROR reply to ``query`` with one A record (TTL 86400), built on the wire."""
    end = 12
    while query[end]:
        end += 1 + query[end]
    qend = end + 5
    return query[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:qend] + _ANSWER_RR


class _Upstream:
    """Answers every query at once (the bytes the cache stores are what matter here)."""

    async def udp(self, server: object, query: bytes, timeout: float, check: object) -> bytes:
        return _reply(query)

    async def tcp(self, server: object, query: bytes, timeout: float) -> bytes:
        raise OSError("no TCP here")


def _query(qid: int, name: str) -> bytes:
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return (
        qid.to_bytes(2, "big")
        + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + wire
        + (b"\x00\x00\x01\x00\x01")
    )


async def measure(names: int, blocked: bool) -> tuple[float, list[str]]:
    """Bytes per cached name, and the top allocation sites."""
    order = OrderRef(
        id=1,
        jurisdiction="*",
        authority="Bench operator",
        authority_kind=AuthorityKind.OPERATOR,
        category=Category.MALWARE,
        action=Action.NXDOMAIN,
        title="Bench order",
        legal_basis="bench",
        reference="B-1",
    )
    config = DNSConfig(cache=CacheConfig(max_entries=max(250_000, names)))
    gw = build_gateway(
        config, StaticPolicy(names={"blocked.bench": [order]}), transport=_Upstream()
    )
    fast = gw.server.dispatcher.fast
    assert fast is not None
    zone = "blocked.bench" if blocked else "miss.cwbench"
    queries = [_query(i % 65536, f"m{i:07d}.{zone}") for i in range(names)]
    await gw.resolve(_query(1, f"warm.{zone}"))
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.get_traced_memory()[0]
    for data in queries:
        await gw.resolve(data)
    for data in queries:
        if fast(data, "127.0.0.1") is None:
            await gw.resolve(data)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    top = tracemalloc.take_snapshot().statistics("lineno")[:8]
    tracemalloc.stop()
    sites = [f"{s.size / names:6.0f} B  {s.traceback}" for s in top]
    return (after - before) / names, sites


def main() -> None:
    """Measure forwarded and blocked names and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=20_000)
    args = parser.parse_args()
    for blocked in (False, True):
        per_name, sites = asyncio.run(measure(args.names, blocked))
        kind = "blocked" if blocked else "forwarded"
        print(f"{kind}: {per_name:,.0f} bytes per cached name ({args.names:,} names)")
        for line in sites:
            print("   ", line)


if __name__ == "__main__":
    main()
