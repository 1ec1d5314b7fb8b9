"""A CERT's security feed for all jurisdictions, and one jurisdiction opting its clients
out of names of it by an exception order of its own, on the log: asked of a real
``clearwall serve`` (upstream: a real nsd) from each jurisdiction's addresses, and shown on
the portal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from fastapi.testclient import TestClient
from tests.ports import free_port

from clearwall.config import LedgerConfig, load_config
from clearwall.errors import ScopeError
from clearwall.layout import resolve_ledger
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.signing import create_key_file
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store
from clearwall.web.app import create_app
from dnsserver.upstreams import NSD


def rules(*specs: tuple[RuleKind, str]) -> list[RuleSpec]:
    """Rules from (kind, name) pairs."""
    return [RuleSpec(kind, name) for kind, name in specs]


def ask(port: int, name: str, source: str, proc: subprocess.Popen[bytes]) -> dns.message.Message:
    """An A query for ``name`` from ``source``, retried until the gateway answers."""
    query = dns.message.make_query(name, "A", use_edns=0)
    deadline = time.monotonic() + 60
    while True:
        try:
            return dns.query.udp(query, "127.0.0.1", port=port, source=source, timeout=1)
        except dns.exception.Timeout:
            assert proc.poll() is None and time.monotonic() < deadline, "gateway not answering"


def ede_codes(reply: dns.message.Message) -> list[int]:
    """The reply's EDE codes."""
    return [int(o.code) for o in reply.options if isinstance(o, dns.edns.EDEOption)]


def test_a_jurisdiction_opts_out_of_a_foreign_feed_by_its_own_order(
    tmp_path: Path, nsd: NSD
) -> None:
    url = f"sqlite:///{tmp_path / 'cw.db'}"
    ledger = resolve_ledger(LedgerConfig(), url)
    create_key_file(ledger.key_path(), ledger.origin)
    store = open_store(url, migrate=True)
    svc = PolicyService(store, after_commit=TransparencyLog(store, ledger).sync)
    svc.add_jurisdiction("xa", "Demo Republic A", ["127.0.0.0/8"])
    svc.add_jurisdiction("xb", "Demo Republic B", ["127.77.0.0/16"])
    cert = svc.add_authority("National CERT of A", "cert", "xa")
    court = svc.add_authority("Court of B", "court", "xb")
    regulator = svc.add_authority("Telecom Regulator of B", "regulator", "xb")
    # Courts and regulators never bind other jurisdictions; a CERT only with a feed.
    for who, category in ((court.id, "court-order"), (cert.id, "court-order")):
        with pytest.raises(ScopeError, match="CERTs for security categories"):
            svc.add_order(
                who, "t", "b", f"R-{who}", category, "nxdomain",
                rules((RuleKind.EXACT, "x.test")), all_jurisdictions=True,
            )  # fmt: skip
    feed = svc.add_order(
        cert.id,
        "Phishing feed of CERT-A",
        "Cybersecurity Act of A s. 4",
        "FEED-A-1",
        "phishing",
        "nxdomain",
        rules((RuleKind.SUBTREE, "www.example.test"), (RuleKind.EXACT, "blocked.example.test")),
        all_jurisdictions=True,
    )
    exception = svc.add_order(
        regulator.id,
        "Exception to CERT-A's feed: www.example.test is a lawful service in B",
        "Telecom Act of B art. 3",
        "REG-B-EXC-1",
        "operator-policy",
        "nxdomain",
        rules((RuleKind.ALLOW_SUBTREE, "www.example.test")),
    )
    store.dispose()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    with open(tmp_path / "gateway.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearwall", "serve", "--db", url, "--dns",
             f"127.0.0.1:{port}", "--web", "off", "--upstream", f"127.0.0.1:{nsd.port}"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        a_www = ask(port, "www.example.test", "127.0.0.1", proc)
        assert a_www.rcode() == dns.rcode.NXDOMAIN and ede_codes(a_www) == [15]  # Blocked
        b_www = ask(port, "www.example.test", "127.77.0.1", proc)
        assert b_www.rcode() == dns.rcode.NOERROR and not ede_codes(b_www)
        assert "192.0.2.1" in b_www.to_text()  # the real answer, from nsd
        b_other = ask(port, "blocked.example.test", "127.77.0.1", proc)
        assert b_other.rcode() == dns.rcode.NXDOMAIN and ede_codes(b_other) == [15]
    finally:
        proc.terminate()
        proc.wait(30)

    app = create_app(load_config(None), url)
    with TestClient(app) as web:
        page = web.get(f"/orders/{feed.id}").text
        assert "For all jurisdictions: this security feed of a CERT" in page
        assert f'<a href="/orders/{exception.id}">order #{exception.id}</a> of XB (1 name)' in page
        mine = web.get(f"/orders/{exception.id}").text
        assert "Exception order: it opts the clients of XB out of 1 name of" in mine
        assert f'<a href="/orders/{feed.id}">order #{feed.id}</a>' in mine
