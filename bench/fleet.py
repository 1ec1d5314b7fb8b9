#!/usr/bin/env python3
"""Fleet benchmark: one clearwall RPZ primary feeding a fleet of real resolvers.

Measured (``docs/xfr.md`` says what each resolver does with NOTIFY and refresh):

1. **Commit to enforcement.** A store with a base policy (``--base-rules`` names in an
   operator order, a court order beside it) is served by ``clearwall serve --xfr``
   (the real command, its config naming the Unbound members as NOTIFY targets, SOA
   refresh 1 s). ``--resolvers`` members, half Unbound and half PowerDNS Recursor, each
   on its own loopback port, are configured with what ``clearwall fleet config`` prints
   and forward ``example.`` to one nsd. Each of ``--changes`` changes amends the court
   order with one new name (never asked before, so no cache holds it) through the
   store's write path; t0 is the moment the amendment has committed. Every member is
   then polled every 10 ms until it answers NXDOMAIN for the name: its enforcement time
   is from t0 to that answer. Reported per member kind: median and max over all
   changes and members. Also the IXFR (octets, messages) each one-name change costs.
2. **Registry -> mirror -> gateway and Unbound** (``chain_phase``): ``--chain-changes``
   amendments of a registry's order, each timed from its commit at the registry to
   NXDOMAIN at the mirroring ISP's gateway and at an Unbound fed by the ISP's ``serve
   --xfr``; the ISP syncs every ``--mirror-interval`` seconds.
3. **A million rules.** A fresh store with ``--big-rules`` names in one order; the
   primary's time to its first serial (reading and computing the zones), the AXFR of
   the zone (octets, seconds, read by a plain TCP client), the same zone as a file
   (``clearwall export rpz --basis blocked``: octets, seconds), and each resolver's time
   from start to enforcing the zone: Unbound, PowerDNS Recursor and BIND by transfer,
   Knot Resolver from the file.
4. **Gateways on one PostgreSQL** (``pg_phase``): ``--pg-gateways`` ``clearwall serve``
   nodes on one PostgreSQL store (only the first holds the ledger key); each of
   ``--pg-changes`` one-name changes is committed through each node in turn, and every
   node is polled until it answers NXDOMAIN (LISTEN/NOTIFY wakes them; polling every
   ``--pg-reload-interval`` seconds stays the fallback).

The resolvers are started by ``tests/xfr/secondaries.py`` (the test suite's launchers,
loaded by path). As ``bench/dns.py`` the run re-executes itself in fresh network and
PID namespaces (loopback only; every process dies with the run) and every wait has a
timeout. CPU is shared on this machine: figures move between runs.
Results: ``bench/results/fleet-latest.json`` and a table (``--markdown`` for Markdown).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "fleet-latest.json"
# This folder holds bench/dns.py, which would shadow dnspython's ``dns`` package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "src"))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bd = _load("bench_dns", HERE / "dns.py")
sec = _load("xfr_secondaries", ROOT / "tests" / "xfr" / "secondaries.py")
log = bd.log

POLL_S = 0.01
ENFORCE_TIMEOUT_S = 60.0


def clearwall(*args: str, cwd: Path, env: dict[str, str], timeout: float = 1800) -> str:
    """Run the clearwall CLI of this checkout; its stdout."""
    proc = subprocess.run(
        [*bd.clearwall_cmd(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"clearwall {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def make_store(path: Path, names: int) -> tuple[Any, float]:
    """A store with jurisdiction xa, a court order and an operator order of ``names``
    generated names; the seconds the big order took to publish.

    As ``clearwall init`` makes it (the ledger key beside it: the primary publishes before
    it serves and refuses to start without one), written as the CLI writes (each commit
    published at once)."""
    from clearwall.config import LedgerConfig
    from clearwall.layout import resolve_ledger
    from clearwall.ledger.log import TransparencyLog
    from clearwall.ledger.signing import create_key_file
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec
    from clearwall.store import PolicyService, open_store

    url = f"sqlite:///{path}"
    ledger = resolve_ledger(LedgerConfig(), url)
    create_key_file(ledger.key_path(), ledger.origin)
    store = open_store(url, migrate=True)
    service = PolicyService(store, after_commit=TransparencyLog(store, ledger).sync)
    service.add_jurisdiction("xa", "Fleet Republic", ["127.0.0.0/8"])
    service.add_authority("Court", "court", "xa", ["mailto:court@xa.example"])
    service.add_authority("Security", "operator", "xa", ["mailto:sec@xa.example"])
    service.add_order(
        1, "court", "law", "court-1", "court-order", "nxdomain",
        [RuleSpec(RuleKind.SUBTREE, "court.example")],
    )  # fmt: skip
    started = time.monotonic()
    rules = (
        RuleSpec(RuleKind.EXACT if i % 3 else RuleKind.SUBTREE, f"cwb{i:07d}-blocked.com")
        for i in range(names)
    )
    service.add_order(2, "security", "aup", "sec-1", "malware", "nxdomain", list(rules))
    return service, time.monotonic() - started


def soa_serial(port: int, zone: str) -> int | None:
    """The zone's serial at the primary, or None when it does not answer yet."""
    try:
        response = sec.query(port, zone, "SOA", timeout=0.5)
    except Exception:
        return None
    return int(response.answer[0][0].serial) if response.answer else None


def _skip_name(data: bytes, at: int) -> int:
    """The offset after the (possibly compressed) name at ``at``."""
    while True:
        length = data[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:
            return at + 2
        at += length + 1


def _scan(data: bytes) -> list[tuple[int, int]]:
    """The answer records of a message as (type, serial if SOA else 0), read without
    building objects (dnspython would be the slowest part of a big transfer here)."""
    qd, an = struct.unpack_from("!HH", data, 4)
    at = 12
    for _ in range(qd):
        at = _skip_name(data, at) + 4
    out = []
    for _ in range(an):
        at = _skip_name(data, at)
        rdtype, _cls, _ttl, rdlength = struct.unpack_from("!HHIH", data, at)
        at += 10
        serial = 0
        if rdtype == 6:
            inner = _skip_name(data, _skip_name(data, at))
            (serial,) = struct.unpack_from("!I", data, inner)
        out.append((rdtype, serial))
        at += rdlength
    return out


def read_transfer(port: int, zone: str, serial: int | None = None) -> tuple[int, int, float]:
    """AXFR (or IXFR from ``serial``) with a plain TCP client: octets, messages, seconds.

    The stream ends with the SOA it began with: its second appearance ends an AXFR (or a
    full zone sent for an IXFR), its third an incremental one; a lone SOA says "current".
    """
    import dns.message
    import dns.rrset

    query = dns.message.make_query(zone, "AXFR" if serial is None else "IXFR")
    if serial is not None:
        query.authority.append(
            dns.rrset.from_text(zone, 0, "IN", "SOA", f"localhost. h.localhost. {serial} 1 1 1 1")
        )
    wire = query.to_wire()
    started = time.monotonic()
    octets = messages = 0
    records: list[tuple[int, int]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        reader = s.makefile("rb")
        while True:
            length = struct.unpack("!H", reader.read(2))[0]
            data = reader.read(length)
            octets += length + 2
            messages += 1
            records.extend(_scan(data))
            first = records[0]
            diff = len(records) > 1 and records[1][0] == 6
            if (serial is not None and len(records) == 1) or (
                len(records) > 1
                and records[-1] == first
                and records.count(first) == (3 if diff else 2)
            ):
                return octets, messages, time.monotonic() - started


def wait_enforced(port: int, name: str, timeout: float) -> float | None:
    """Seconds until ``name`` answers NXDOMAIN at 127.0.0.1:port, None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if sec.query(port, name, timeout=0.5).rcode() == 3:
                return time.monotonic() - started
        time.sleep(POLL_S)
    return None


def poll(results: dict[int, float | None], index: int, port: int, name: str, t0: float) -> None:
    """Record in ``results[index]`` the seconds from ``t0`` until ``name`` is enforced."""
    found = wait_enforced(port, name, ENFORCE_TIMEOUT_S)
    results[index] = None if found is None else time.monotonic() - t0


def summary(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3) if values else float("nan"),
        "max_s": round(max(values), 3) if values else float("nan"),
    }


def start_primary(
    work: Path,
    store_path: Path,
    port: int,
    dns_port: int,
    notify: Sequence[int],
    env: dict[str, str],
) -> subprocess.Popen[bytes]:
    """``clearwall serve --xfr`` with a config that NOTIFYs ``notify`` ports."""
    config = work / "clearwall.toml"
    secondaries = ", ".join(f'"127.0.0.1:{p}"' for p in notify)
    config.write_text(f"""[store]
url = "sqlite:///{store_path}"
[dns]
listen = ["127.0.0.1:{dns_port}"]
[web]
listen = ""
[xfr]
listen = ["127.0.0.1:{port}"]
secondaries = [{secondaries}]
refresh = 1
reload_interval = 0.05
keys_file = "{work}/xfr.keys"
""")
    log_file = open(work / "serve.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [*bd.clearwall_cmd(), "serve", "--config", str(config)],
        cwd=work,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_serial(port: int, zone: str, timeout: float) -> float:
    started = time.monotonic()
    while soa_serial(port, zone) is None:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the primary did not serve {zone} within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def fleet_phase(
    args: argparse.Namespace, work: Path, nsd: Any, env: dict[str, str]
) -> dict[str, Any]:
    """Commit-to-enforcement over ``args.changes`` one-name changes."""
    store_path = work / "fleet.db"
    service, published = make_store(store_path, args.base_rules)
    log(f"fleet: base policy of {args.base_rules} names published in {published:.1f} s")
    primary_port, dns_port = sec.free_port(), sec.free_port()
    members: list[tuple[str, Any]] = []
    unbound_n = args.resolvers // 2
    unbound_fragment = clearwall(
        "fleet", "config", "unbound", "--jurisdiction", "xa", "--primary",
        f"127.0.0.1:{primary_port}", cwd=work, env=env,
    )  # fmt: skip
    pdns_lua = clearwall(
        "fleet", "config", "pdns-recursor", "--jurisdiction", "xa", "--primary",
        f"127.0.0.1:{primary_port}", cwd=work, env=env,
    )  # fmt: skip
    for i in range(args.resolvers):
        if i < unbound_n:
            members.append(
                ("unbound", sec.Unbound(work / f"unbound{i}", nsd.port, unbound_fragment))
            )
        else:
            members.append(
                ("pdns-recursor", sec.PdnsRecursor(work / f"pdns{i}", nsd.port, pdns_lua))
            )
    notify = [m.port for kind, m in members if kind == "unbound"]
    primary = start_primary(work, store_path, primary_port, dns_port, notify, env)
    result: dict[str, Any] = {"base_rules": args.base_rules, "resolvers": {}}
    try:
        result["primary_ready_s"] = round(
            wait_serial(primary_port, "xa.blocked.rpz.clearwall.", 600), 2
        )
        for _kind, member in members:
            member.start(probe="probe.example.")
        for kind, member in members:
            took = wait_enforced(member.port, "www.court.example", 300)
            if took is None:
                raise RuntimeError(f"{kind} on {member.port} never loaded the zones")
        log(f"fleet: {len(members)} resolvers loaded the zones")
        times: dict[str, list[float]] = {"unbound": [], "pdns-recursor": []}
        per_change: list[float] = []
        ixfr: list[dict[str, Any]] = []
        timeouts = 0
        from clearwall.model import RuleKind
        from clearwall.policy.model import RuleSpec

        rng = random.Random(args.seed)
        for change in range(args.changes):
            before = soa_serial(primary_port, "xa.censored.rpz.clearwall.")
            name = f"change{change}-{os.getpid()}.fleet.example"
            service.amend_order(1, add=[RuleSpec(RuleKind.EXACT, name)], reason=f"change {change}")
            t0 = time.monotonic()
            results: dict[int, float | None] = {}
            threads = [
                threading.Thread(target=poll, args=(results, i, m.port, name, t0))
                for i, (_k, m) in enumerate(members)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i, (kind, _m) in enumerate(members):
                took = results.get(i)
                if took is None:
                    timeouts += 1
                else:
                    times[kind].append(took)
            done = [v for v in results.values() if v is not None]
            per_change.append(max(done) if done else float("nan"))
            if before is not None:
                octets, messages, _ = read_transfer(
                    primary_port, "xa.censored.rpz.clearwall.", before
                )
                ixfr.append({"octets": octets, "messages": messages})
            log(f"fleet: change {change + 1}/{args.changes}: all members in {per_change[-1]:.3f} s")
            # A random pause: changes must not fall into step with a member's polling
            # (PowerDNS Recursor refreshes every second), which would flatter or hurt it.
            time.sleep(args.pause * (0.5 + rng.random()))
        everyone = [v for vs in times.values() for v in vs]
        result["enforcement"] = {
            "all": summary(everyone),
            "slowest_member_per_change": summary(per_change),
            **{kind: summary(vs) for kind, vs in times.items()},
            "timeouts": timeouts,
        }
        result["ixfr_one_name"] = {
            "octets_median": statistics.median(i["octets"] for i in ixfr) if ixfr else None,
            "messages_max": max(i["messages"] for i in ixfr) if ixfr else None,
        }
        result["resolvers"] = {kind: sum(1 for k, _ in members if k == kind) for kind in times}
    finally:
        for _kind, member in members:
            member.stop()
        stop(primary)
    return result


def start_serve(work: Path, name: str, toml: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``clearwall serve --config work/name.toml`` logging to ``work/name.log``."""
    config = work / f"{name}.toml"
    config.write_text(toml)
    log_file = open(work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [*bd.clearwall_cmd(), "serve", "--config", str(config)],
        cwd=work,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )


def chain_phase(
    args: argparse.Namespace, work: Path, nsd: Any, env: dict[str, str]
) -> dict[str, Any]:
    """Registry -> mirror -> gateway, and -> an Unbound secondary of the mirror.

    A registry (``clearwall serve`` with its web app serving ``/log/``) and an ISP
    installation (its own store, ``clearwall mirror add`` of the registry, ``serve``
    with ``[federation] interval = --mirror-interval`` and ``--xfr`` NOTIFYing one
    Unbound configured by ``fleet config``). Each change amends the registry's court
    order with one new name through the registry's write path; t0 is its commit. The
    ISP's gateway and its Unbound are polled every 10 ms until they answer NXDOMAIN.
    """
    from clearwall.config import LedgerConfig
    from clearwall.layout import resolve_ledger
    from clearwall.ledger.log import TransparencyLog
    from clearwall.ledger.signing import create_key_file, load_signer
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec
    from clearwall.store import PolicyService, open_store

    origin = "registry.bench.example/log"
    reg_db = work / "registry.db"
    reg_url = f"sqlite:///{reg_db}"
    ledger = resolve_ledger(LedgerConfig(origin=origin), reg_url)
    create_key_file(ledger.key_path(), origin)
    vkey = load_signer(ledger.key_path()).verifier.vkey
    store = open_store(reg_url, migrate=True)
    registry = PolicyService(store, after_commit=TransparencyLog(store, ledger).sync)
    registry.add_jurisdiction("xa", "Fleet Republic", ["10.0.0.0/8"])
    registry.add_authority("Court", "court", "xa", ["mailto:court@xa.example"])
    court = registry.add_order(
        1, "court", "law", "court-1", "court-order", "nxdomain",
        [RuleSpec(RuleKind.SUBTREE, "court.example")],
    )  # fmt: skip
    isp_db = work / "isp.db"
    isp_url = f"sqlite:///{isp_db}"
    clearwall("init", "--db", isp_url, cwd=work, env=env)
    clearwall("jurisdictions", "add", "xa", "--name", "Fleet Republic", "--network", "127.0.0.0/8",
              "--db", isp_url, cwd=work, env=env)  # fmt: skip
    web, reg_dns, isp_dns, xfr = (sec.free_port() for _ in range(4))
    clearwall("mirror", "add", f"http://127.0.0.1:{web}", "--key", vkey, "--jurisdiction", "xa",
              "--db", isp_url, cwd=work, env=env)  # fmt: skip
    fragment = clearwall(
        "fleet", "config", "unbound", "--jurisdiction", "xa", "--primary",
        f"127.0.0.1:{xfr}", "--db", isp_url, cwd=work, env=env,
    )  # fmt: skip
    unbound = sec.Unbound(work / "chain-unbound", nsd.port, fragment)
    for n in range(args.chain_orders):  # the registry's other orders, adopted at first sync
        registry.add_order(
            1, f"court {n}", "law", f"court-x{n}", "court-order", "nxdomain",
            [RuleSpec(RuleKind.EXACT, f"x{n}.other.example")],
        )  # fmt: skip
    procs = [
        start_serve(work, "registry", f"""[store]
url = "{reg_url}"
[ledger]
origin = "{origin}"
[dns]
listen = ["127.0.0.1:{reg_dns}"]
[dns.upstream]
servers = ["127.0.0.1:{nsd.port}"]
[web]
listen = "127.0.0.1:{web}"
""", env)
    ]  # fmt: skip
    result: dict[str, Any] = {"mirror_interval_s": args.mirror_interval}
    try:
        started = time.monotonic()
        while True:  # the registry's web app serving its log
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", web), 1):
                break
            if time.monotonic() - started > 120:
                raise RuntimeError("the registry's web app did not start")
            time.sleep(0.1)
        entries_n = store.log_size()
        t_sync = time.monotonic()
        clearwall("mirror", "sync", "--db", isp_url, cwd=work, env=env)
        result["first_sync"] = {
            "registry_entries": entries_n,
            "orders_adopted": args.chain_orders + 1,
            "seconds": round(time.monotonic() - t_sync, 2),
        }
        t_sync = time.monotonic()
        clearwall("mirror", "sync", "--db", isp_url, cwd=work, env=env)
        result["noop_sync_cli_s"] = round(time.monotonic() - t_sync, 2)
        log(f"chain: first sync {result['first_sync']}, no-op sync {result['noop_sync_cli_s']} s")
        procs.append(
            start_serve(work, "isp", f"""[store]
url = "{isp_url}"
[dns]
listen = ["127.0.0.1:{isp_dns}"]
[dns.upstream]
servers = ["127.0.0.1:{nsd.port}"]
[web]
listen = ""
[xfr]
listen = ["127.0.0.1:{xfr}"]
secondaries = ["127.0.0.1:{unbound.port}"]
refresh = 1
reload_interval = 0.05
keys_file = "{work}/isp.xfr.keys"
[federation]
interval = {args.mirror_interval}
""", env)
        )  # fmt: skip
        unbound.start(probe="probe.example.")
        for what, port in (("gateway", isp_dns), ("unbound", unbound.port)):
            if wait_enforced(port, "www.court.example", 300) is None:
                raise RuntimeError(f"the ISP's {what} never enforced the adopted order")
        log("chain: the ISP's gateway and Unbound enforce the registry's order")
        times: dict[str, list[float]] = {"gateway": [], "unbound": []}
        timeouts = 0
        rng = random.Random(args.seed)
        for change in range(args.chain_changes):
            name = f"chain{change}-{os.getpid()}.fleet.example"
            registry.amend_order(court.id, add=[RuleSpec(RuleKind.EXACT, name)])
            t0 = time.monotonic()
            results: dict[int, float | None] = {}
            ports = (isp_dns, unbound.port)
            threads = [
                threading.Thread(target=poll, args=(results, i, port, name, t0))
                for i, port in enumerate(ports)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for i, kind in enumerate(times):
                took = results.get(i)
                if took is None:
                    timeouts += 1
                else:
                    times[kind].append(took)
            log(f"chain: change {change + 1}/{args.chain_changes}: {results}")
            time.sleep(args.pause * (0.5 + rng.random()))
        result["propagation"] = {kind: summary(vs) for kind, vs in times.items()}
        result["timeouts"] = timeouts
    finally:
        unbound.stop()
        for proc in procs:
            stop(proc)
        store.dispose()
    return result


def big_phase(
    args: argparse.Namespace, work: Path, nsd: Any, env: dict[str, str]
) -> dict[str, Any]:
    """A million rules: the primary, AXFR, the file, each resolver's load time."""
    store_path = work / "big.db"
    service, published = make_store(store_path, args.big_rules)
    service.store.dispose()
    log(f"big: {args.big_rules} names published in {published:.1f} s")
    env = {**env, "CLEARWALL_DB": f"sqlite:///{store_path}"}
    out: dict[str, Any] = {"rules": args.big_rules, "publish_s": round(published, 1)}
    zone = "xa.blocked.rpz.clearwall."
    started = time.monotonic()
    clearwall("export", "rpz", "--jurisdiction", "xa", "--directory", str(work / "zones"),
              cwd=work, env=env)  # fmt: skip
    out["file_export_s"] = round(time.monotonic() - started, 2)
    rpz_file = work / "zones" / f"{zone}rpz"
    out["file_octets"] = rpz_file.stat().st_size
    primary_port, dns_port = sec.free_port(), sec.free_port()
    primary = start_primary(work, store_path, primary_port, dns_port, [], env)
    try:
        out["primary_first_serial_s"] = round(wait_serial(primary_port, zone, 1800), 2)
        octets, messages, seconds = read_transfer(primary_port, zone)
        out["axfr"] = {"octets": octets, "messages": messages, "seconds": round(seconds, 2)}
        log(f"big: AXFR {octets} octets in {seconds:.2f} s; file {out['file_octets']} octets")
        loads: dict[str, Any] = {}
        fragment = clearwall("fleet", "config", "unbound", "--jurisdiction", "xa", "--primary",
                             f"127.0.0.1:{primary_port}", cwd=work, env=env)  # fmt: skip
        lua = clearwall("fleet", "config", "pdns-recursor", "--jurisdiction", "xa", "--primary",
                        f"127.0.0.1:{primary_port}", cwd=work, env=env)  # fmt: skip
        bind_args = ("fleet", "config", "bind", "--jurisdiction", "xa", "--primary",
                     f"127.0.0.1:{primary_port}")  # fmt: skip
        zones_conf = clearwall(*bind_args, cwd=work, env=env)
        options_conf = clearwall(*bind_args, "--options", cwd=work, env=env)
        kresd_lua = clearwall("fleet", "config", "knot-resolver", "--jurisdiction", "xa",
                              "--directory", str(work / "zones"), cwd=work, env=env)  # fmt: skip
        launchers: list[tuple[str, Callable[[], Any]]] = [
            ("unbound", lambda: sec.Unbound(work / "big-unbound", nsd.port, fragment)),
            ("pdns-recursor", lambda: sec.PdnsRecursor(work / "big-pdns", nsd.port, lua)),
            ("bind", lambda: sec.Bind(work / "big-bind", nsd.port, options_conf, zones_conf)),
            ("knot-resolver", lambda: sec.Kresd(work / "big-kresd", nsd.port, kresd_lua)),
        ]
        probe = f"cwb{args.big_rules - 1:07d}-blocked.com"
        for kind, make in launchers:
            if sec.binary({"bind": "named", "knot-resolver": "kresd",
                           "pdns-recursor": "pdns_recursor"}.get(kind, kind)) is None:  # fmt: skip
                loads[kind] = "not installed"
                continue
            member = make()
            started = time.monotonic()
            try:
                member.start(probe="probe.example.", timeout=300)
                took = wait_enforced(member.port, probe, 300)
                loads[kind] = None if took is None else round(time.monotonic() - started, 2)
                rss = bd.tree_memory(member.proc.pid) if member.proc else None
                if rss is not None:
                    loads[f"{kind}_rss_mib"] = round(rss.rss)
            except Exception as exc:
                loads[kind] = f"failed: {exc}"[:300]
            finally:
                member.stop()
            log(f"big: {kind} enforcing after {loads[kind]} s")
        out["resolver_load_s"] = loads
        primary_rss = bd.tree_memory(primary.pid)
        out["primary_tree_rss_mib"] = round(primary_rss.rss)
    finally:
        stop(primary)
    return out


def pg_config(url: str, home: Path, dns_port: int, vkey: str, reload_interval: float) -> str:
    """A gateway's config on the shared PostgreSQL store (``vkey``: it holds no key)."""
    lines = [
        "[store]",
        f'url = "{url}"',
        "[ledger]",
        f'key_file = "{home / "ledger.key"}"',
        f'tiles_dir = "{home / "log"}"',
        *([f'vkey = "{vkey}"'] if vkey else []),
        "[dns]",
        f'listen = ["127.0.0.1:{dns_port}"]',
        f"reload_interval = {reload_interval}",  # the fallback poll
        "[dns.upstream]",
        'servers = ["127.0.0.1:9"]',  # only blocked names are asked
        "[web]",
        'listen = ""',
    ]
    return "\n".join(lines) + "\n"


def pg_phase(args: argparse.Namespace, work: Path, nsd: Any, env: dict[str, str]) -> dict[str, Any]:
    """Commit-to-enforcement on ``args.pg_gateways`` gateways sharing one PostgreSQL
    (docs/cluster.md): the first holds the ledger key, the others follow its checkpoints.
    Each change is an order of one new name committed through the write path of one of
    them in turn (with its ledger sync, as its CLI writes); t0 is the commit (the first
    thing the after-commit hook does); each gateway is polled every 10 ms until it
    answers NXDOMAIN."""
    from clearwall.config import LedgerConfig
    from clearwall.ledger.log import TransparencyLog
    from clearwall.ledger.signing import create_key_file
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec
    from clearwall.store import PolicyService, open_store

    pgserver = _load("pgserver", ROOT / "tests" / "pgserver.py")
    rng = random.Random(args.seed)
    n = args.pg_gateways
    homes = [work / f"pg-node{i}" for i in range(n)]
    ports = []
    for _ in range(n):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    with pgserver.postgres_cluster() as pg:
        pg.admin("CREATE DATABASE fleet")
        url = pg.url("fleet")
        for home in homes:
            home.mkdir()
        vkey = create_key_file(homes[0] / "ledger.key", LedgerConfig().origin)
        ledgers = []
        for i, home in enumerate(homes):
            config = pg_config(url, home, ports[i], "" if i == 0 else vkey, args.pg_reload_interval)
            (home / "cw.toml").write_text(config)
            ledgers.append(
                LedgerConfig(home / "ledger.key", home / "log", vkey="" if i == 0 else vkey)
            )
        store = open_store(url, migrate=True)
        TransparencyLog(store, ledgers[0]).sync()  # as `clearwall init` does
        setup = PolicyService(store, after_commit=TransparencyLog(store, ledgers[0]).sync)
        setup.add_jurisdiction("xa", "Fleet Republic", ["127.0.0.0/8"])
        setup.add_authority("Court", "court", "xa", ["mailto:court@xa.example"])
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for home in homes:
                log_file = open(home / "serve.log", "wb")  # noqa: SIM115 - closed with the process
                procs.append(
                    subprocess.Popen(
                        [*bd.clearwall_cmd(), "serve", "--config", str(home / "cw.toml")],
                        cwd=home,
                        env=env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                    )
                )
            for port in ports:
                if wait_enforced_any(port, 60) is None:
                    raise RuntimeError(f"a gateway on port {port} did not start")
            per_node: dict[str, list[float]] = {"signer": [], "follower": []}
            slowest: list[float] = []
            timeouts = 0
            for change in range(args.pg_changes):
                writer = change % n
                name = f"pg{change}-{rng.randrange(1 << 30)}.example"
                t0 = [0.0]

                def committed(w: int = writer, t0: list[float] = t0) -> None:
                    t0[0] = time.monotonic()
                    if ledgers[w].signs():
                        TransparencyLog(store, ledgers[w]).sync()

                service = PolicyService(store, after_commit=committed)
                service.add_order(
                    1, "court", "law", f"pg-{change}", "court-order", "nxdomain",
                    [RuleSpec(RuleKind.EXACT, name)],
                )  # fmt: skip
                results: dict[int, float | None] = {}
                threads = [
                    threading.Thread(target=poll, args=(results, i, port, name, t0[0]))
                    for i, port in enumerate(ports)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                found = [v for v in results.values() if v is not None]
                timeouts += len(results) - len(found)
                for i, v in results.items():
                    if v is not None:
                        per_node["signer" if i == 0 else "follower"].append(v)
                if found:
                    slowest.append(max(found))
                log(f"pg change {change} (writer node{writer}): {results}")
                time.sleep(args.pause * rng.uniform(0.5, 1.5))
        finally:
            for proc in procs:
                stop(proc)  # type: ignore[arg-type]
            store.dispose()
    return {
        "gateways": n,
        "changes": args.pg_changes,
        "reload_interval_s": args.pg_reload_interval,
        "writers": "round robin over the gateways (the signer and the followers)",
        "enforcement": {
            "signer": summary(per_node["signer"]),
            "followers": summary(per_node["follower"]),
            "all": summary(per_node["signer"] + per_node["follower"]),
            "slowest_gateway_per_change": summary(slowest),
            "timeouts": timeouts,
        },
    }


def wait_enforced_any(port: int, timeout: float) -> float | None:
    """Seconds until 127.0.0.1:port answers at all (a gateway serving), None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            sec.query(port, "probe.example", timeout=0.5)
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def run(args: argparse.Namespace) -> int:
    """Start nsd, run both phases, write the report."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    report: dict[str, Any] = {
        "command": args.command_line,
        "isolated_netns": args.in_netns,
        "git_head": bd.git_head(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "note": "2 shared cores: other engineers' work runs beside the benchmark",
    }
    with tempfile.TemporaryDirectory(prefix="clearwall-fleet-") as tmp:
        work = Path(tmp)
        nsd = sec.Authoritative(work / "nsd")
        nsd.start(probe="probe.example.")
        try:
            if args.changes:
                report["fleet"] = fleet_phase(args, work, nsd, env)
            if args.chain_changes:
                report["chain"] = chain_phase(args, work, nsd, env)
            if args.big_rules:
                report["big"] = big_phase(args, work, nsd, env)
            if args.pg_gateways:
                report["postgresql"] = pg_phase(args, work, nsd, env)
        finally:
            nsd.stop()
    report["loadavg_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if args.markdown:
        print(markdown(report))
    log(f"wrote {args.output}")
    return 0


def markdown(report: dict[str, Any]) -> str:
    """The figures as Markdown tables."""
    lines: list[str] = []
    fleet = report.get("fleet")
    if fleet and "enforcement" in fleet:
        e = fleet["enforcement"]
        lines += [
            "| members | changes | median s | max s | slowest member per change, median / max s "
            "| timeouts |",
            "|---|---|---|---|---|---|",
        ]
        for kind in ("unbound", "pdns-recursor", "all"):
            s = e[kind]
            n = fleet["resolvers"].get(kind, sum(fleet["resolvers"].values()))
            slow = e["slowest_member_per_change"]
            lines.append(
                f"| {kind} ×{n} | {s['n']} | {s['median_s']} | {s['max_s']} | "
                f"{slow['median_s']} / {slow['max_s']} | {e['timeouts']} |"
            )
        lines.append(f"\nIXFR of a one-name change: {fleet['ixfr_one_name']} ")
    chain = report.get("chain")
    if chain and "propagation" in chain:
        lines += [
            "",
            f"registry -> mirror ([federation] interval {chain['mirror_interval_s']} s): "
            f"first sync {chain['first_sync']}, no-op `mirror sync` (CLI, process start "
            f"included) {chain['noop_sync_cli_s']} s",
            "",
            "| enforced at | changes | median s | max s |",
            "|---|---|---|---|",
        ]
        for kind, s in chain["propagation"].items():
            lines.append(f"| mirror's {kind} | {s['n']} | {s['median_s']} | {s['max_s']} |")
    pg = report.get("postgresql")
    if pg:
        e = pg["enforcement"]
        lines += [
            "",
            "| PostgreSQL gateways | changes | median s | max s | timeouts |",
            "|---|---|---|---|---|",
        ]
        for kind in ("signer", "followers", "all", "slowest_gateway_per_change"):
            lines.append(
                f"| {kind} | {e[kind]['n']} | {e[kind]['median_s']} | {e[kind]['max_s']} | "
                f"{e['timeouts']} |"
            )
    big = report.get("big")
    if big:
        lines += [
            "",
            f"{big['rules']:,} rules: primary first serial {big.get('primary_first_serial_s')} s, "
            f"AXFR {big.get('axfr')}, file {big.get('file_octets')} octets "
            f"({big.get('file_export_s')} s), resolver load s {big.get('resolver_load_s')}",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--resolvers", type=int, default=8, help="fleet members, half Unbound (8)")
    p.add_argument("--changes", type=int, default=20, help="one-name changes (20)")
    p.add_argument(
        "--base-rules", type=int, default=100_000, help="the fleet's policy size (100000)"
    )
    p.add_argument(
        "--big-rules", type=int, default=1_000_000, help="the big policy (1000000; 0 skips)"
    )
    p.add_argument(
        "--pause", type=float, default=0.5, help="mean seconds between changes, ±50%% (0.5)"
    )
    p.add_argument("--seed", type=int, default=1, help="of the random pauses (1)")
    p.add_argument(
        "--chain-changes", type=int, default=20,
        help="changes through registry -> mirror -> gateway/Unbound (20; 0 skips)",
    )  # fmt: skip
    p.add_argument(
        "--chain-orders", type=int, default=1000,
        help="other registry orders the mirror adopts at its first, timed, sync (1000)",
    )  # fmt: skip
    p.add_argument(
        "--mirror-interval", type=float, default=1.0,
        help="the mirror's [federation] interval in the chain phase (1.0 s)",
    )  # fmt: skip
    p.add_argument(
        "--pg-gateways", type=int, default=3, help="gateways on one PostgreSQL (3; 0 skips)"
    )
    p.add_argument("--pg-changes", type=int, default=20, help="their one-name changes (20)")
    p.add_argument(
        "--pg-reload-interval",
        type=float,
        default=0.25,
        help="their [dns] reload_interval, the poll behind NOTIFY (0.25, the default)",
    )
    p.add_argument("--quick", action="store_true", help="4 resolvers, 3 changes, 10k/100k rules")
    p.add_argument("--output", type=Path, default=RESULTS, help="JSON result file")
    bd.add_run_options(p)
    args = p.parse_args(argv)
    if args.quick:
        args.resolvers, args.changes, args.base_rules, args.big_rules = 4, 3, 10_000, 100_000
        args.chain_changes, args.chain_orders = min(args.chain_changes, 3), 50
    if args.resolvers < 2:
        p.error("--resolvers needs at least 2 (one of each kind)")
    args.command_line = args.command_line or " ".join(["bench/fleet.py", *argv])
    args.output = args.output.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: install deps, isolate, run (as bench/dns.py)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return int(bd.launch(argv, parse_args(argv), run, Path(__file__)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
