"""The probe measures an encrypted resolver (DoT ``tls://IP:PORT#name``, DoH
``https://…/dns-query``): a real gateway with both listeners, its certificate verified."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clearwall.config import DNSConfig, HostPort
from clearwall.dnsserver.gateway import Gateway, build_gateway
from clearwall.dnsserver.memory import MemoryUpstream
from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.dnsserver.tls import make_self_signed
from clearwall.model import Action, AuthorityKind, Category, OrderRef
from clearwall.probe.dnsmeasure import measure_dns, parse_server

COURT = OrderRef(
    id=7,
    jurisdiction="*",
    authority="Test Court",
    authority_kind=AuthorityKind.COURT,
    category=Category.COURT_ORDER,
    action=Action.NXDOMAIN,
    title="Order 7",
    legal_basis="Test Act",
    reference="T-7",
    contacts=("mailto:appeals@court.example",),
)


async def gateway(tmp: Path) -> tuple[Gateway, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    make_self_signed(cert, key)
    any_port = HostPort("127.0.0.1", 0)
    config = DNSConfig(
        listen=(any_port,), dot=(any_port,), doh=(any_port,), tls_cert=str(cert), tls_key=str(key)
    )
    upstream = MemoryUpstream({"www.example.test": [("A", 300, "192.0.2.1")]})
    gw = build_gateway(config, StaticPolicy(names={"court.test": [COURT]}), transport=upstream)
    await gw.start()
    return gw, cert


@pytest.mark.parametrize("kind", ["dot", "doh"])
async def test_measures_blocks_and_answers_over_encrypted_transports(
    tmp_path: Path, kind: str
) -> None:
    gw, cert = await gateway(tmp_path)
    try:
        port = gw.server.encrypted[kind][0][1]
        text = (
            f"tls://127.0.0.1:{port}#clearwall.localhost"
            if kind == "dot"
            else f"https://127.0.0.1:{port}/dns-query"
        )
        server = dataclasses.replace(parse_server(text), ca_file=str(cert))
        blocked = await measure_dns("court.test", server, timeout=5)
        assert blocked.failure == "dns_nxdomain_error"
        assert blocked.block_ede is not None and blocked.block_ede.code == 16
        assert blocked.sde is not None and "T-7" in blocked.sde["j"]
        allowed = await measure_dns("www.example.test", server, timeout=5)
        assert allowed.failure is None and allowed.addresses == ("192.0.2.1",)
        # Without the test CA the certificate does not verify: a finding, not an answer.
        untrusted = await measure_dns("www.example.test", parse_server(text), timeout=5)
        assert untrusted.failure is not None and not untrusted.addresses
    finally:
        await gw.stop()


async def test_cli_probe_with_a_doh_resolver(tmp_path: Path) -> None:
    gw, cert = await gateway(tmp_path)
    try:
        url = f"https://127.0.0.1:{gw.server.encrypted['doh'][0][1]}/dns-query"
        argv = [sys.executable, "-m", "clearwall", "probe", "--url", "http://court.test/"]
        out = tmp_path / "results.jsonl"
        argv += ["--resolver", url, "--ca-file", str(cert), "--timeout", "3", "--out", str(out)]
        argv += ["--no-progress"]
        done = await asyncio.get_running_loop().run_in_executor(
            None, lambda: subprocess.run(argv, capture_output=True, text=True, timeout=120)
        )
    finally:
        await gw.stop()
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert url in text and "dns_nxdomain_error" in text and '"info_code": 16' in text
    assert all(json.loads(line) for line in text.splitlines())
