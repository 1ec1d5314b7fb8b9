"""Issue 20's "done means" for requests, with real processes on loopback: two
jurisdictions with their own authorities and three witnesses; X's CERT asks Y, Y's
regulator accepts; a real ``clearwall serve`` answers Y's clients with EDE 16 citing Y's
order (X's clients are not blocked), the order's page links the request, the checkpoint
that covers the acceptance carries at least two cosignatures, and ``ledger verify-proof
--quorum 2`` accepts the proof bundle (refused with a quorum no witness set can meet).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.rcode
from fastapi.testclient import TestClient

from clearwall.config import load_config
from clearwall.ledger import entries, witnessing
from clearwall.ledger.prover import NameProver
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.web.app import create_app
from dnsserver.gateways import Gateway, start_gateway
from witness.processes import WitnessProcess

from .test_witnessing import ORIGIN, open_log, trio, verify_proof

__all__ = ["trio"]  # the fixture shared with test_witnessing

NAME = "login.phish-bank-a.example"


def ask(gw: Gateway, source: str) -> dns.message.Message:
    """An A query for NAME from ``source`` (a loopback address of a jurisdiction)."""
    query = dns.message.make_query(NAME, "A", use_edns=0)
    deadline = time.monotonic() + 60
    while True:
        try:
            return dns.query.udp(query, "127.0.0.1", port=gw.port, source=source, timeout=1)
        except dns.exception.Timeout:
            assert gw.proc.poll() is None, gw.output
            assert time.monotonic() < deadline, gw.output


def ede(reply: dns.message.Message) -> list[tuple[int, str]]:
    """The reply's Extended DNS Errors (code, text)."""
    return [(int(o.code), o.text or "") for o in reply.options if isinstance(o, dns.edns.EDEOption)]


def test_x_requests_y_accepts_y_blocks_on_a_witnessed_log(
    tmp_path: Path, trio: list[WitnessProcess]
) -> None:
    log = open_log(tmp_path / "log", tmp_path / "ledger.key", trio, 2, create=True)
    vkey = log.tlog.verifier.vkey
    for w in trio:
        w.add_log(ORIGIN, vkey)
        w.start()
    svc = log.service
    svc.add_jurisdiction("xa", "Demo Republic A", ["127.0.0.0/8"])
    svc.add_jurisdiction("xb", "Demo Republic B", ["127.77.0.0/16"])
    cert = svc.add_authority("National CERT of A", "cert", "xa", ["mailto:cert@a.example"])
    regulator = svc.add_authority("Consumer Regulator of B", "regulator", "xb")
    request = svc.file_request(
        cert.id,
        "xb",
        "block",
        "phishing",
        "Computer Fraud Act of A s. 12",
        "CERT-A-2026-17",
        [RuleSpec(RuleKind.SUBTREE, "phish-bank-a.example")],
    )
    _, order = svc.accept_request(
        request.id, regulator.id, "Consumer Protection Code of B art. 8", "REG-B-311"
    )

    # The checkpoint that covers the acceptance carries at least two cosignatures.
    st = witnessing.status(log.tlog)
    assert st.checkpoint is not None and st.checkpoint.size == log.store.log_size()
    assert st.cosignatures >= 2 and st.witnessed
    last = entries.parse(log.store.log_entries()[-1].data)
    assert isinstance(last, entries.RequestDecided) and last.order == order.id

    # verify-proof with quorum 2 accepts the bundle for Y's clients.
    bundle = NameProver(log.tlog).prove(NAME, "xb")
    keys = [a for w in trio for a in ("--witness", w.vkey)]
    ok = verify_proof(tmp_path, bundle, "--key", vkey, *keys, "--quorum", "2")
    assert ok.returncode == 0, ok.stderr
    assert "blocked for xb" in ok.stdout
    too_many = verify_proof(tmp_path, bundle, "--key", vkey, *keys, "--quorum", "4")
    assert too_many.returncode == 1

    # A real gateway: Y's clients get EDE 16 citing Y's order; X's clients are not blocked.
    gw = start_gateway(log.store.url, tmp_path, "--config", str(log.config_file))
    try:
        y = ask(gw, "127.77.0.1")
        assert y.rcode() == dns.rcode.NXDOMAIN
        (code, text), *_ = ede(y)
        assert code == 16  # Censored: a regulator's order
        sde = json.loads(text)
        assert f"/orders/{order.id}" in sde["j"] and "REG-B-311" in sde["j"]
        x = ask(gw, "127.0.0.1")
        assert x.rcode() != dns.rcode.NXDOMAIN and all(c != 16 for c, _ in ede(x))
    finally:
        gw.proc.terminate()
        gw.proc.wait(30)

    # The order's page links the request, whose page links the order back.
    app = create_app(load_config(log.config_file), log.store.url)
    with TestClient(app) as web:
        page = web.get(f"/orders/{order.id}").text
        assert f'href="/requests/{request.id}"' in page
        assert f'href="/orders/{order.id}"' in web.get(f"/requests/{request.id}").text
    log.store.dispose()
