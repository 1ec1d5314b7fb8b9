"""PowerDNS Recursor and BIND 9 as secondaries, configured with what ``clearwall fleet
config`` prints, transferring with a TSIG key while the primary refuses unsigned
requests: a PowerDNS Recursor client gets EDE 16 for a court-ordered name (15 for an
operator's), and both follow an order change."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.rcode
import pytest

from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService
from clearwall.xfr.keys import add_key

from .conftest import COURT, OPERATOR, RunningPrimary, fleet_config, publish
from .secondaries import (
    ALLOWED_ADDRESS,
    Authoritative,
    Bind,
    PdnsRecursor,
    free_port,
    query,
    require,
)


def answer(port: int, name: str) -> str:
    response = query(port, name)
    if response.rcode() == dns.rcode.NXDOMAIN:
        return "nxdomain"
    addresses = [rr.address for rrset in response.answer for rr in rrset if rrset.rdtype == 1]
    return "allowed" if addresses == [ALLOWED_ADDRESS] else f"other {addresses}"


def wait_for(what: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, message()
        time.sleep(0.05)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Authoritative]:
    require("nsd")
    nsd = Authoritative(tmp_path / "nsd")
    nsd.start(probe="x.example.")
    yield nsd
    nsd.stop()


Keyed = tuple[Callable[..., RunningPrimary], Path, int]


@pytest.fixture
def keyed(
    service: PolicyService, tmp_path: Path, primary_factory: Callable[..., RunningPrimary]
) -> Keyed:
    """A policy and a TSIG key ``sec1``; a function starting a primary that requires it
    (``start(secondaries)``), its config file and port."""
    publish(service, COURT, "court-1", ["subtree bad.example"])
    publish(service, OPERATOR, "sec-1", ["exact malware.example"])
    add_key(tmp_path / "xfr.keys", "sec1")
    config = tmp_path / "clearwall.toml"
    config.write_text(
        f'[xfr]\nkeys_file = "{tmp_path / "xfr.keys"}"\nrefresh = 1\n'
        '[dns.block]\npublic_url = "https://portal.example"\n'
    )
    port = free_port()

    def start(*secondaries: str) -> RunningPrimary:
        return primary_factory(
            listen=[f"127.0.0.1:{port}"], refresh=1, secondaries=list(secondaries)
        )

    return start, config, port


def test_pdns_recursor_signals_ede_16_for_a_court_order(
    keyed: Keyed,
    service: PolicyService,
    tmp_path: Path,
    upstream: Authoritative,
) -> None:
    require("pdns_recursor")
    start, config, port = keyed
    running = start()  # PowerDNS Recursor 4.8 polls at the SOA refresh: no NOTIFY
    lua = fleet_config(
        tmp_path, "pdns-recursor", "--jurisdiction", "xa", "--primary", f"127.0.0.1:{port}",
        "--tsig", "sec1", "--config", str(config),
    )  # fmt: skip
    assert 'tsigname="sec1"' in lua and "extendedErrorCode=16" in lua
    recursor = PdnsRecursor(tmp_path / "pdns", upstream.port, lua)
    recursor.start(probe="x.example.")
    try:
        wait_for(
            lambda: answer(recursor.port, "www.bad.example") == "nxdomain", 30, recursor.output
        )
        response = query(recursor.port, "www.bad.example")
        ede = [o for o in response.options if o.otype == dns.edns.EDE]
        assert [o.code for o in ede] == [16]
        assert (
            ede[0].text
            == "censored by a court or regulator order in xa; see https://portal.example/search"
        )
        response = query(recursor.port, "malware.example")
        assert [o.code for o in response.options if o.otype == dns.edns.EDE] == [15]
        assert answer(recursor.port, "fine.example") == "allowed"
        # Its transfers were signed: the primary refused none of them.
        refused = running.primary.metrics.refused
        assert refused.labels("unsigned")._value.get() == 0
        service.amend_order(1, add=[RuleSpec(RuleKind.EXACT, "fine.example")], reason="x")
        wait_for(lambda: answer(recursor.port, "fine.example") == "nxdomain", 30, recursor.output)
    finally:
        recursor.stop()


def test_bind_loads_the_zones_as_secondaries(
    keyed: Keyed,
    service: PolicyService,
    tmp_path: Path,
    upstream: Authoritative,
) -> None:
    require("named")
    start, config, port = keyed
    args = ("bind", "--jurisdiction", "xa", "--primary", f"127.0.0.1:{port}", "--tsig", "sec1")
    zones = fleet_config(tmp_path, *args, "--config", str(config))
    options = fleet_config(tmp_path, *args, "--config", str(config), "--options")
    assert 'response-policy { zone "xa.censored.rpz.clearwall."; zone "xa.blocked' in options
    named = Bind(tmp_path / "bind", upstream.port, options, zones)
    # BIND refreshes no more often than every 5 minutes: changes reach it by NOTIFY,
    # signed with its key.
    running = start(f"127.0.0.1:{named.port} key sec1")
    named.start(probe="x.example.")
    try:
        wait_for(lambda: answer(named.port, "www.bad.example") == "nxdomain", 30, named.output)
        assert answer(named.port, "malware.example") == "nxdomain"
        assert answer(named.port, "fine.example") == "allowed"
        service.amend_order(1, add=[RuleSpec(RuleKind.EXACT, "fine.example")], reason="x")
        wait_for(lambda: answer(named.port, "fine.example") == "nxdomain", 30, named.output)
        assert running.primary.metrics.refused.labels("unsigned")._value.get() == 0
    finally:
        named.stop()
