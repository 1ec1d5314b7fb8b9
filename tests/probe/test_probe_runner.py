"""The runner, helper and reports on loopback: real sockets, no namespaces needed."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import time
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from netbox_servers import page_for, serve_dns, serve_http
from rich.console import Console
from tests.ports import free_port

from clearwall.probe.dnsmeasure import DNSServer, measure_dns
from clearwall.probe.helper import HelperClient, HelperServer, HelperSettings
from clearwall.probe.inputs import parse_target
from clearwall.probe.reconcile import NameProof, PublishedOrder
from clearwall.probe.report import html_report, print_summary, to_record, write_jsonl
from clearwall.probe.runner import ProbeSettings, run_probe

pytestmark = pytest.mark.timeout(60)


class Twin:
    """In-memory proof source: the names in ``orders`` have one order in force."""

    def __init__(self, orders: dict[str, int]) -> None:
        self.orders = orders

    async def prove(self, name: str) -> NameProof:
        start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        found = (PublishedOrder(self.orders[name], "XA", start),) if name in self.orders else ()
        return NameProof(name, "XA", True, found, "twin/1/00")


@pytest.fixture
async def loopback() -> Any:
    """DNS (names -> 127.0.0.1, one with EDE 16) and HTTP on loopback ports, plus a hung port."""
    dns_port, web_port, hung_port = free_port(), free_port(), free_port()

    async def answer(wire: bytes) -> bytes | None:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        name = query.question[0].name.to_text().rstrip(".")
        if name == "blocked.test":
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.use_edns(0, options=[dns.edns.EDEOption(16, '{"j":"order 5"}')])
        elif name.endswith(".test") and name != "missing.test":
            response.answer.append(
                dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "127.0.0.1")
            )
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.flags |= dns.flags.AA
        return response.to_wire()

    await serve_dns("127.0.0.1", dns_port, answer)
    await serve_http("127.0.0.1", web_port, lambda host: (200, {}, page_for(host)))
    hung = await asyncio.start_server(lambda r, w: asyncio.sleep(3600), "127.0.0.1", hung_port)
    yield {"dns": DNSServer("127.0.0.1", dns_port), "web": web_port, "hung": hung_port}
    hung.close()


async def test_dns_measurement_records_ede_and_sde(loopback: dict[str, Any]) -> None:
    result = await measure_dns("blocked.test", loopback["dns"], timeout=2)
    assert result.rcode == "NXDOMAIN" and result.block_ede is not None
    assert result.block_ede.code == 16 and result.sde == {"j": "order 5"}


async def test_dns_timeout_is_recorded_not_raised() -> None:
    port = free_port()  # nothing listens: UDP gets refused or times out
    result = await measure_dns("x.test", DNSServer("127.0.0.1", port), timeout=0.3)
    assert result.failure in ("generic_timeout_error", "connection_refused")


async def test_run_with_helper_log_twin_and_a_hung_target(loopback: dict[str, Any]) -> None:
    helper = HelperServer(HelperSettings(loopback["dns"], timeout=0.5, allow_private=True))
    host, port = await helper.start("127.0.0.1", 0)
    web, hung = loopback["web"], loopback["hung"]
    targets = [
        parse_target(f"http://ok.test:{web}/"),
        parse_target(f"http://published.test:{web}/"),
        parse_target(f"http://blocked.test:{web}/"),
        parse_target(f"http://hung.test:{hung}/"),
        parse_target(f"http://missing.test:{web}/"),
        parse_target(f"http://127.0.0.1:{web}/"),
    ]
    settings = ProbeSettings(
        resolver=loopback["dns"],
        control=loopback["dns"],
        helper_url=f"http://{host}:{port}",
        jurisdiction="XA",
        timeout=0.5,
        concurrency=4,
    )
    started = time.monotonic()
    results = await run_probe(targets, settings, proofs=Twin({"published.test": 3}))
    assert time.monotonic() - started < settings.target_deadline + 2
    await helper.close()
    got = {
        r.measurement.target.name: (r.classification.kind.value, r.reconciliation.verdict.value)
        for r in results
    }
    assert got["ok.test"] == ("accessible", "consistent-allow")
    assert got["published.test"] == ("accessible", "published-but-not-enforced")
    assert got["blocked.test"] == ("dns-transparent-block", "enforced-but-unpublished")
    assert got["hung.test"][0] == "down"  # the helper hangs on it too
    assert got["missing.test"] == ("down", "consistent-allow")
    # An IP-literal URL has no DNS step and no name the log could prove anything about.
    assert got["127.0.0.1"] == ("accessible", "unverified")
    literal = next(r for r in results if r.measurement.target.is_ip)
    assert literal.measurement.dns.resolver.startswith("none")

    out = io.StringIO()
    assert write_jsonl(results, out, jurisdiction="XA", log_url="twin") == 6
    first = json.loads(out.getvalue().splitlines()[0])
    for key in ("measurement_start_time", "input", "test_keys", "annotations", "test_runtime"):
        assert key in first
    assert {"blocking", "accessible", "queries", "tcp_connect", "requests"} <= set(
        first["test_keys"]
    )
    assert first["clearwall"]["reconciliation"]["verdict"] == "consistent-allow"
    page = html_report(results, context={"resolver": "loopback"})
    assert page.count("<svg") == 3 and "enforced-but-unpublished" in page
    console = Console(file=io.StringIO(), width=160)
    print_summary(results, [], console)
    assert "published-but-not-enforced" in console.file.getvalue()  # type: ignore[attr-defined]


async def test_unreachable_helper_marks_results_instead_of_crashing(
    loopback: dict[str, Any],
) -> None:
    port = free_port()
    client = HelperClient(f"http://127.0.0.1:{port}", timeout=0.5)
    control = await client.measure("http://ok.test/", [])
    await client.aclose()
    assert control.failure is not None and control.failure.startswith("helper_failure")
    settings = ProbeSettings(
        resolver=loopback["dns"], helper_url=f"http://127.0.0.1:{port}", timeout=0.5
    )
    [result] = await run_probe([parse_target(f"http://ok.test:{loopback['web']}/")], settings)
    record = to_record(result)
    assert record["test_keys"]["control_failure"].startswith("helper_failure")
    assert result.classification.kind.value == "accessible"


async def test_public_helper_refuses_private_addresses(loopback: dict[str, Any]) -> None:
    from clearwall.probe.helper import control_measurement

    settings = HelperSettings(loopback["dns"], timeout=0.5)
    refused = await control_measurement(f"http://127.0.0.1:{loopback['web']}/", [], settings, None)
    assert refused.failure is not None and refused.failure.startswith("helper_refused")
    named = await control_measurement(
        f"http://ok.test:{loopback['web']}/", ["10.0.0.1"], settings, None
    )
    # Resolved, never connected, and it says so: an empty step could pass for a failed one.
    assert named.tcp_connect == () and named.dns is not None
    assert named.failure is not None and named.failure.startswith("helper_refused")
    assert "10.0.0.1" in named.failure


async def test_a_refusing_helper_gives_undetermined_not_down(loopback: dict[str, Any]) -> None:
    """A name on a closed port, with a public helper that may not connect to it: the
    helper's refusal is the evidence, and nothing is said about what the helper saw."""
    helper = HelperServer(HelperSettings(loopback["dns"], timeout=0.5))
    host, port = await helper.start("127.0.0.1", 0)
    closed = free_port()
    settings = ProbeSettings(
        resolver=loopback["dns"], helper_url=f"http://{host}:{port}", timeout=0.5
    )
    try:
        [result] = await run_probe([parse_target(f"http://ok.test:{closed}/")], settings)
    finally:
        await helper.close()
    assert result.classification.kind.value == "undetermined", result.classification.evidence
    assert any("helper_refused" in f for f in result.classification.evidence)
    assert not any("also from the helper" in f for f in result.classification.evidence)
    assert to_record(result)["test_keys"]["control_failure"].startswith("helper_refused")
