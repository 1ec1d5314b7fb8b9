"""A real Unbound as a secondary, configured with what ``clearwall fleet config unbound``
prints: it loads the zones by transfer, enforces them, and enforces a changed order
after our NOTIFY, without a restart (the SOA refresh is an hour: only NOTIFY explains
the update)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.rcode
import pytest

from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store

from .conftest import COURT, OPERATOR, RunningPrimary, fleet_config, publish
from .secondaries import ALLOWED_ADDRESS, Authoritative, Unbound, free_port, query, require


@pytest.fixture(autouse=True)
def _installed() -> None:
    require("unbound", "nsd")


def verdict(port: int, name: str) -> str:
    """What the resolver does with ``name``: allowed, nxdomain, nodata or sinkhole."""
    response = query(port, name)
    if response.rcode() == dns.rcode.NXDOMAIN:
        return "nxdomain"
    addresses = [rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == 1]
    if not addresses:
        return "nodata"
    return "allowed" if addresses == [ALLOWED_ADDRESS] else f"sinkhole {addresses}"


def wait_for(what: Callable[[], bool], timeout: float, message: str) -> float:
    """Poll ``what`` every 20 ms; the seconds it took. Fails after ``timeout``."""
    started = time.monotonic()
    while not what():
        assert time.monotonic() - started < timeout, message
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Authoritative]:
    nsd = Authoritative(tmp_path / "nsd")
    nsd.start(probe="x.example.")
    yield nsd
    nsd.stop()


def test_unbound_follows_the_primary_by_notify(
    service: PolicyService,
    store: Store,
    tmp_path: Path,
    upstream: Authoritative,
    primary_factory: Callable[..., RunningPrimary],
) -> None:
    publish(service, COURT, "court-1", ["subtree bad.example", "exact www.court.example"])
    publish(service, OPERATOR, "sec-1", ["exact malware.example", "allow-exact ok.bad.example"])
    primary_port = free_port()
    fragment = fleet_config(
        tmp_path, "unbound", "--jurisdiction", "xa", "--primary", f"127.0.0.1:{primary_port}"
    )
    assert 'name: "xa.censored.rpz.clearwall."' in fragment
    assert fragment.index("xa.censored") < fragment.index("xa.blocked")
    unbound = Unbound(tmp_path / "unbound", upstream.port, fragment)
    running = primary_factory(
        listen=[f"127.0.0.1:{primary_port}"],
        secondaries=[f"127.0.0.1:{unbound.port}"],
        refresh=3600,
    )
    unbound.start()
    try:
        wait_for(lambda: verdict(unbound.port, "bad.example") == "nxdomain", 30, unbound.output())
        assert verdict(unbound.port, "deep.sub.bad.example") == "nxdomain"
        assert verdict(unbound.port, "ok.bad.example") == "allowed"  # the exception
        assert verdict(unbound.port, "x.ok.bad.example") == "nxdomain"  # only the name itself
        assert verdict(unbound.port, "malware.example") == "nxdomain"
        assert verdict(unbound.port, "new.example") == "allowed"

        acked = running.primary.metrics.notify_acked.labels(f"127.0.0.1:{unbound.port}")
        before = acked._value.get()
        service.amend_order(1, add=[RuleSpec(RuleKind.EXACT, "new.example")], reason="one more")
        took = wait_for(
            lambda: verdict(unbound.port, "new.example") == "nxdomain", 20, unbound.output()
        )
        assert acked._value.get() > before  # Unbound answered our NOTIFY
        assert took < 20

        service.revoke_order(1, "lifted")
        wait_for(lambda: verdict(unbound.port, "bad.example") == "allowed", 20, unbound.output())
        assert verdict(unbound.port, "new.example") == "allowed"
        assert verdict(unbound.port, "malware.example") == "nxdomain"
        log = unbound.output()
        assert "error" not in log.lower(), log
    finally:
        unbound.stop()
