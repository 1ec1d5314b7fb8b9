"""Hot policy swap: in-process under load, and end to end from a store write to
``clearwall serve`` enforcing it within a second."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.query
import dns.rcode
from tests.ports import free_port

from clearwall.dnsserver.policyholder import StaticPolicy
from dnsserver.conftest import dns_config, order
from dnsserver.helpers import ede
from dnsserver.upstreams import NSD


async def test_swap_under_load_drops_nothing(nsd: NSD, gateway_factory) -> None:
    gw = await gateway_factory(dns_config(nsd.port), StaticPolicy(version=1))
    host, port = gw.server.addresses[0]
    results: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def client(i: int) -> None:
        names = ["www.example.test", "alias2.example.test", f"n{i}.example.test"]
        n = 0
        while not stop.is_set():
            q = dns.message.make_query(names[n % 3], "A")
            n += 1
            r = await dns.asyncquery.udp(q, host, port=port, timeout=2)
            results.append((time.monotonic(), r.rcode()))

    clients = [asyncio.ensure_future(client(i)) for i in range(8)]
    await asyncio.sleep(0.5)
    swapped_at = time.monotonic()
    gw.swap(StaticPolicy(names={"www.example.test": [order(1)]}, version=2))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)  # any lost reply would raise a timeout here
    after = [rc for t, rc in results if t > swapped_at + 0.05]
    assert len(results) > 100
    assert dns.rcode.NXDOMAIN in after  # the new block applies at once (cache included)
    r = await dns.asyncquery.udp(
        dns.message.make_query("www.example.test", "A", use_edns=0), host, port=port, timeout=2
    )
    assert r.rcode() == dns.rcode.NXDOMAIN and ede(r)[0] == 16  # type: ignore[index]
    assert gw.metrics.policy_swaps == 1


def _store_with_jurisdiction(db: str) -> tuple[object, int]:
    from clearwall.config import LedgerConfig
    from clearwall.layout import resolve_ledger
    from clearwall.ledger.signing import create_key_file
    from clearwall.model import AuthorityKind
    from clearwall.store.db import open_store
    from clearwall.store.service import PolicyService

    service = PolicyService(open_store(db, migrate=True))
    # Its ledger key, as `clearwall init` makes it: the gateway publishes before enforcing.
    create_key_file(resolve_ledger(LedgerConfig(), db).key_path(), LedgerConfig().origin)
    service.add_jurisdiction("tt", "Testland")
    authority = service.add_authority(
        "Testland court", AuthorityKind.COURT, "tt", ["mailto:court@testland.example"]
    )
    return service, authority.id  # type: ignore[attr-defined]


def _wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _rcode(port: int, name: str) -> int | None:
    try:
        r = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.5)
        return r.rcode()
    except Exception:
        return None


def test_store_write_is_enforced_within_a_second_by_clearwall_serve(
    nsd: NSD, tmp_path: Path
) -> None:
    from clearwall.model import Action, Category, RuleKind
    from clearwall.policy.model import RuleSpec

    db = f"sqlite:///{tmp_path / 'cw.db'}"
    service, authority_id = _store_with_jurisdiction(db)
    port = free_port()
    (tmp_path / "clearwall.toml").write_text(
        '[dns]\nreload_interval = 0.2\ndefault_jurisdiction = "tt"\n'
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clearwall",
            "serve",
            "--config",
            str(tmp_path / "clearwall.toml"),
            "--dns",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{nsd.port}",
            "--db",
            db,
            "--web",
            "off",
            "--snapshot-dir",
            str(tmp_path / "snapshots"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: _rcode(port, "www.example.test") == dns.rcode.NOERROR, 30)
        service.add_order(  # type: ignore[attr-defined]
            authority_id,
            "Block www",
            "Test Act s.2",
            "TT-1",
            Category.COURT_ORDER,
            Action.NXDOMAIN,
            [RuleSpec(RuleKind.SUBTREE, "www.example.test")],
        )
        took = _wait_for(lambda: _rcode(port, "www.example.test") == dns.rcode.NXDOMAIN, 5)
        assert took < 1.0, f"enforced after {took:.2f}s"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "DNS chain: responder → acl → ratelimit → jurisdiction → cache" in out
    assert "policy swapped to version" in out
    assert "clearwall DNS stopped" in out
    assert "www.example.test" not in out  # no per-query logging by default


def test_workers_share_the_port_and_reload_on_sighup(nsd: NSD, tmp_path: Path) -> None:
    """Two workers on one port; SIGHUP re-reads the config file and every worker serves
    with it: the upstream moves to an address where nothing answers, so names never
    asked before fail (SERVFAIL) where they were NXDOMAIN from nsd, on both workers."""
    from clearwall.policy.snapshot import PolicySnapshot

    snap = tmp_path / "empty.snap"
    PolicySnapshot.compile([], [], tree_size=0, base_url="").save(snap)
    port = free_port()
    config = tmp_path / "clearwall.toml"
    config.write_text(f'[dns.upstream]\nservers = ["127.0.0.1:{nsd.port}"]\n')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clearwall",
            "serve",
            "--config",
            str(config),
            "--dns",
            f"127.0.0.1:{port}",
            "--snapshot",
            str(snap),
            "--workers",
            "2",
            "--web",
            "off",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(lambda: _rcode(port, "www.example.test") == dns.rcode.NOERROR, 30)
        answered = sum(_rcode(port, f"n{i}.example.test") == dns.rcode.NXDOMAIN for i in range(50))
        assert answered == 50
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        if hasattr(os, "SCHED_BATCH") and children.exists():
            workers = [int(p) for p in children.read_text().split()]
            batch = [os.sched_getscheduler(w) == os.SCHED_BATCH for w in workers]
            assert batch.count(True) == 2  # the two workers; the compiler is not one
        config.write_text(
            '[dns.upstream]\nservers = ["127.0.0.1:9"]\ntimeout = 0.2\nattempts = 1\n'
        )
        os.kill(proc.pid, signal.SIGHUP)
        fresh = (f"after{i}.example.test" for i in range(10_000))
        _wait_for(lambda: _rcode(port, next(fresh)) == dns.rcode.SERVFAIL, 30)
        # Each query comes from a new socket, so the kernel spreads them over both
        # workers: none may still ask nsd.
        after = [_rcode(port, next(fresh)) for _ in range(20)]
        assert after == [dns.rcode.SERVFAIL] * 20
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert out.count("DNS listening on 127.0.0.1") == 2  # two workers on one port
    assert "SIGHUP: config sent to 2 workers" in out
