"""``clearwall export rpz``: the zones the primary serves, as files written atomically, and
the path for Knot Resolver, which cannot transfer zones: a real kresd configured with
``clearwall fleet config knot-resolver`` follows ``export rpz --watch`` as orders change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rcode
import pytest

from clearwall.formats import parse_file
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store

from .conftest import COURT, OPERATOR, fleet_config, publish
from .secondaries import ALLOWED_ADDRESS, Authoritative, Kresd, Unbound, query, require


def clearwall(cwd: Path, db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    env["CLEARWALL_DB"] = db
    proc = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def blocked(port: int, name: str) -> bool:
    response = query(port, name)
    if response.rcode() == dns.rcode.NXDOMAIN:
        return True
    addresses = [rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == 1]
    return addresses != [ALLOWED_ADDRESS]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Authoritative]:
    require("nsd")
    nsd = Authoritative(tmp_path / "nsd")
    nsd.start(probe="x.example.")
    yield nsd
    nsd.stop()


def test_export_files_are_the_zones_the_primary_serves(
    service: PolicyService, store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    publish(service, COURT, "court-1", ["subtree bad.example"])
    publish(service, OPERATOR, "sec-1", ["exact malware.example", "allow-exact ok.bad.example"])
    out = tmp_path / "zones"
    clearwall(
        tmp_path, sqlite_url, "export", "rpz", "--jurisdiction", "xa", "--directory", str(out)
    )
    censored = (out / "xa.censored.rpz.clearwall.rpz").read_text()
    blocked_zone = (out / "xa.blocked.rpz.clearwall.rpz").read_text()
    assert censored.splitlines()[:4] == [
        f"; clearwall policy for jurisdiction xa (censored, EDE 16) at log size {store.log_size()}",
        "$ORIGIN xa.censored.rpz.clearwall.",
        "$TTL 60",
        f"@ SOA localhost. hostmaster.localhost. {store.log_size()} 60 10 604800 60",
    ]
    assert "ok.bad.example CNAME rpz-passthru." in censored
    assert "malware.example CNAME ." in blocked_zone
    assert not list(out.glob(".*"))  # no temporary file left behind
    one = clearwall(tmp_path, sqlite_url, "export", "rpz", "--jurisdiction", "xa").stdout
    assert "$ORIGIN rpz.xa.clearwall." in one and "malware.example CNAME ." in one
    only = clearwall(
        tmp_path, sqlite_url, "export", "rpz", "--jurisdiction", "xa", "--basis", "censored"
    ).stdout
    assert only == censored


def test_exported_rpz_blocks_below_a_listed_name_in_unbound(
    service: PolicyService, sqlite_url: str, tmp_path: Path, upstream: Authoritative
) -> None:
    require("unbound")
    # A subtree and an exact name below it, from one order. Unbound stops at the closest
    # owner, so the exact name's owner alone would hide the subtree's wildcard from the
    # names below it: they were allowed. The export now states their verdict too.
    publish(service, OPERATOR, "sec-1", ["subtree ads.example", "exact x.ads.example"])
    zone = tmp_path / "xa.rpz"
    clearwall(tmp_path, sqlite_url, "export", "rpz", "--jurisdiction", "xa", "-o", str(zone))
    assert not parse_file(zone, format="rpz").issues
    fragment = (
        'server:\n    module-config: "respip iterator"\n'
        f'rpz:\n    name: "rpz.xa.clearwall."\n    zonefile: "{zone}"\n'
    )
    unbound = Unbound(tmp_path / "unbound", upstream.port, fragment)
    unbound.start()
    try:
        for name in ("ads.example", "x.ads.example", "a.x.ads.example", "b.ads.example"):
            assert blocked(unbound.port, name), name
        assert not blocked(unbound.port, "other.example")
    finally:
        unbound.stop()


def test_knot_resolver_follows_export_watch(
    service: PolicyService, sqlite_url: str, tmp_path: Path, upstream: Authoritative
) -> None:
    require("kresd")
    publish(service, COURT, "court-1", ["subtree bad.example"])
    publish(service, OPERATOR, "sec-1", ["exact malware.example"])
    zones = tmp_path / "zones"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    env["CLEARWALL_DB"] = sqlite_url
    watcher = subprocess.Popen(
        [
            *(sys.executable, "-m", "clearwall", "export", "rpz", "--jurisdiction", "xa"),
            *("--directory", str(zones), "--watch", "--interval", "0.1"),
        ],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    kresd = None
    try:
        deadline = time.monotonic() + 60
        while not (zones / "xa.blocked.rpz.clearwall.rpz").exists():
            assert time.monotonic() < deadline and watcher.poll() is None, "no zone files"
            time.sleep(0.05)
        lua = fleet_config(
            tmp_path, "knot-resolver", "--jurisdiction", "xa", "--directory", str(zones)
        )
        assert "kres.extended_error.CENSORED" in lua
        kresd = Kresd(tmp_path / "kresd", upstream.port, lua)
        kresd.start(probe="x.example.")
        response = query(kresd.port, "www.bad.example")
        assert response.rcode() == dns.rcode.NXDOMAIN
        assert [o.code for o in response.options] == [16]  # EDE 16 Censored
        assert blocked(kresd.port, "malware.example")
        assert not blocked(kresd.port, "new.example")

        service.amend_order(1, add=[RuleSpec(RuleKind.EXACT, "new.example")], reason="more")
        deadline = time.monotonic() + 30
        while not blocked(kresd.port, "new.example"):
            assert time.monotonic() < deadline, kresd.output()
            time.sleep(0.05)
    finally:
        if kresd is not None:
            kresd.stop()
        watcher.send_signal(signal.SIGTERM)
        watcher.wait(20)
    assert watcher.returncode == 0, watcher.stderr.read() if watcher.stderr else ""
