"""The query log in the running gateway: what it records, on both paths, and at what cost.

Real UDP/TCP queries from several loopback source addresses go to a gateway forwarding
to a real nsd; the records are read back from the segment files, whose bytes are then
searched for the full client addresses (there must be none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode

from clearwall.config import LoggingConfig
from clearwall.dnsserver.gateway import Gateway, build_gateway
from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.model import Action
from clearwall.querylog import Filters, QueryLogReader
from dnsserver.conftest import dns_config, order
from dnsserver.upstreams import NSD

CLIENTS = ("127.0.0.77", "127.1.2.3", "127.1.2.201")


def _policy() -> StaticPolicy:
    return StaticPolicy(
        names={
            "blocked.example.test": [order(7, action=Action.NXDOMAIN), order(9)],
            "sink.example.test": [order(8, action=Action.SINKHOLE)],
        }
    )


async def _gateway(nsd: NSD, logging: LoggingConfig | None) -> Gateway:
    gw = build_gateway(dns_config(nsd.port), _policy(), logging_config=logging)
    await gw.start()
    return gw


async def _ask(gw: Gateway, name: str, source: str, tcp: bool = False) -> dns.message.Message:
    host, port = gw.server.addresses[0]
    q = dns.message.make_query(name, "A", use_edns=0)
    if tcp:
        return await dns.asyncquery.tcp(q, host, port=port, source=source, timeout=3)
    return await dns.asyncquery.udp(q, host, port=port, source=source, timeout=3)


def _config(tmp_path: Path, **changes: object) -> LoggingConfig:
    return dataclasses.replace(
        LoggingConfig(query_log=True, query_log_dir=tmp_path / "ql"), **changes
    )


async def test_off_means_not_built(nsd: NSD) -> None:
    gw = await _gateway(nsd, LoggingConfig())
    try:
        assert "querylog" not in gw.handlers
        assert gw.querylog is None
        # the fast path is the fused C path itself, not a wrapper around it
        assert type(gw.server.dispatcher.fast).__name__ == "FusedPath"
    finally:
        await gw.stop()


async def test_records_every_answer_with_truncated_clients(nsd: NSD, tmp_path: Path) -> None:
    config = _config(tmp_path)
    gw = await _gateway(nsd, config)
    try:
        assert gw.handlers[0] == "querylog"
        fast = gw.server.dispatcher.fast
        assert fast is not None and type(fast).__name__ != "FusedPath"
        sent = 0
        for client in CLIENTS:
            for _ in range(3):  # the repeats are answered by the fused fast path
                assert (await _ask(gw, "www.example.test", client)).rcode() == dns.rcode.NOERROR
                blocked = await _ask(gw, "a.blocked.example.test", client)
                assert blocked.rcode() == dns.rcode.NXDOMAIN
                sent += 2
        assert (await _ask(gw, "sink.example.test", CLIENTS[0], tcp=True)).answer
        sent += 1
        assert gw.metrics.cache_hits >= 8, "the fast path did not answer the repeats"
    finally:
        await gw.stop()
    assert gw.metrics.querylog_records == sent  # answers stored
    assert gw.metrics.querylog_dropped == 0

    reader = QueryLogReader(config.query_log_dir)
    entries = reader.search(Filters(), limit=1000)
    assert sum(e.count for e in entries) == sent == reader.count(Filters())
    assert {e.client for e in entries} == {"127.0.0.0/24", "127.1.2.0/24"}
    blocks = [e for e in entries if e.decision == "block"]
    assert {(e.qname, e.orders, e.rcode) for e in blocks} == {
        ("a.blocked.example.test", (7, 9), dns.rcode.NXDOMAIN),
        ("sink.example.test", (8,), dns.rcode.NOERROR),
    }
    assert sum(e.count for e in blocks) == 10
    assert {e.transport for e in entries if e.qname == "sink.example.test"} == {"tcp"}
    allowed = [e for e in entries if e.decision == "allow"]
    assert {(e.qname, e.qtype, e.rcode, e.orders) for e in allowed} == {
        ("www.example.test", 1, 0, ())
    }
    assert all(0 <= e.latency_ms <= e.latency_max_ms < 3000 for e in entries)
    assert all(e.time == int(e.time) for e in entries)  # to the second
    assert reader.count(Filters(order=9)) == 9
    assert reader.top_blocked(Filters())[0] == (7, [("a.blocked.example.test", 9)])

    # No full client address ever reached the disk, in any file the store wrote.
    files = list(config.query_log_dir.iterdir())
    assert files
    for path in files:
        data = path.read_bytes()
        for client in CLIENTS:
            assert client.encode() not in data, f"{client} found in {path.name}"
        assert os.stat(path).st_mode & 0o077 == 0, f"{path.name} is readable by others"


async def test_drops_are_counted_never_waited_for(nsd: NSD, tmp_path: Path) -> None:
    config = _config(tmp_path, query_log_queue=2)  # two groups at most
    gw = build_gateway(dns_config(nsd.port), _policy(), logging_config=config)
    await gw.server.start()  # listeners only: the writer never runs, so the queue fills
    try:
        for name in ("a", "b", "c", "d", "e"):  # five different groups
            assert (await _ask(gw, f"{name}.example.test", "127.0.0.9")).rcode() == 3
        assert gw.metrics.querylog_dropped == 3
    finally:
        await gw.stop()
    assert gw.metrics.querylog_records == 2


async def test_a_failing_store_costs_records_not_replies(nsd: NSD, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = _config(tmp_path, query_log_dir=blocker / "ql")
    gw = await _gateway(nsd, config)
    try:
        for _ in range(4):
            reply = await _ask(gw, "x.blocked.example.test", "127.0.0.9")
            assert reply.rcode() == dns.rcode.NXDOMAIN
        await asyncio.sleep(1.5)  # the writer tries (and fails) in the background
    finally:
        await gw.stop()
    assert gw.metrics.querylog_dropped == 4
    assert gw.querylog is not None and gw.querylog.failures >= 1


async def test_answers_differing_only_in_edns_options_are_one_group(
    nsd: NSD, tmp_path: Path
) -> None:
    import time

    import dns.edns

    config = _config(tmp_path)
    gw = await _gateway(nsd, config)
    try:
        for _attempt in range(5):  # both inside one second (groups are per second)
            before = int(time.perf_counter())
            for cookie in (b"\x01" * 8, b"\x02" * 8):  # dig sends a fresh cookie per query
                q = dns.message.make_query(
                    "blocked.example.test", "A", use_edns=0,
                    options=[dns.edns.GenericOption(dns.edns.COOKIE, cookie)],
                )  # fmt: skip
                await gw.resolve(q.to_wire(), client="127.0.0.9", tcp=True)
            if int(time.perf_counter()) == before:
                break
            gw.querylog.groups.clear()  # type: ignore[union-attr]
    finally:
        await gw.stop()
    [entry] = QueryLogReader(config.query_log_dir).search(Filters())
    assert (entry.qname, entry.count, entry.transport) == ("blocked.example.test", 2, "tcp")


def test_serve_with_workers_logs_from_each_and_stops_cleanly(nsd: NSD, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    import dns.exception
    import dns.query
    from tests.ports import free_port

    port = free_port()
    qlog = tmp_path / "ql"
    config = tmp_path / "clearwall.toml"
    config.write_text(
        f'[dns]\nlisten = ["127.0.0.1:{port}"]\nworkers = 2\n'
        f'[dns.upstream]\nservers = ["127.0.0.1:{nsd.port}"]\n'
        f'[logging]\nquery_log = true\nquery_log_dir = "{qlog}"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "clearwall", "init", "--db", f"sqlite:///{tmp_path / 'cw.db'}"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearwall", "serve", "--config", str(config), "--web", "off",
         "--db", f"sqlite:///{tmp_path / 'cw.db'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sent = 0
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                q = dns.message.make_query("www.example.test", "A")
                dns.query.udp(q, "127.0.0.1", port=port, timeout=1)
                sent += 1
                break
            except (dns.exception.Timeout, OSError):
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "not serving"
        for _ in range(40):
            q = dns.message.make_query("www.example.test", "A")
            assert dns.query.udp(q, "127.0.0.1", port=port, timeout=2).rcode() == 0
            sent += 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert QueryLogReader(qlog).count(Filters()) == sent, out
    writers = {p.name.split("-")[2].split(".")[0] for p in qlog.glob("q-*.sqlite")}
    assert writers <= {"w0", "w1"} and writers, writers
