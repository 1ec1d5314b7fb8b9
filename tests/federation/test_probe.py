"""The probe's reconciliation accepts an adopted order as published: the mirror's name
proof for a blocked name verifies and cites the adopted order."""

from __future__ import annotations

from pathlib import Path

from clearwall.config import LedgerConfig
from clearwall.federation import records
from clearwall.federation.sync import sync
from clearwall.layout import resolve_ledger
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.prover import NameProver
from clearwall.probe.reconcile import name_proof_from_bundle
from federation.registries import Registry, mirror_store


def test_a_name_proof_of_an_adopted_order_verifies(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    service, store = mirror_store(tmp_path / "isp")
    try:
        registry.order(["blocked.example"], "TT-3")
        sync(service, records.add(store, registry.url, registry.vkey, {"tt": "tt"}))
        tlog = TransparencyLog(store, resolve_ledger(LedgerConfig(), str(store.engine.url)))
        tlog.sync()
        bundle = NameProver(tlog).prove("www.blocked.example", "tt")
        proof = name_proof_from_bundle(bundle, tlog.verifier, "www.blocked.example", "tt")
        assert proof.verified, proof.failure
        assert [(o.id, o.title) for o in proof.orders] == [(1, "Order TT-3")]
    finally:
        registry.close()
        store.dispose()
