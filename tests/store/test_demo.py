"""The demo policy installs from the real lists and behaves as the hints it prints say."""

from __future__ import annotations

from pathlib import Path

from clearwall.demo import install_demo
from clearwall.model import Action, Decision
from clearwall.store import PolicyService, Store
from clearwall.store.loader import build_snapshot


def test_demo_policy(store: Store, data_dir: Path) -> None:
    service = PolicyService(store)
    summary = install_demo(service, data_dir)
    assert len(summary.orders) == 4 and summary.rules > 100_000
    snap = build_snapshot(service.store)
    assert snap.jurisdiction_of("127.0.0.1") == "xa"
    assert snap.jurisdiction_of("127.77.0.1") == "xb"
    assert snap.jurisdiction_of("::1") == "xa"
    names = dict(summary.try_names)
    for name, hint in names.items():
        xa, xb = snap.match(name, "xa"), snap.match(name, "xb")
        if hint.startswith("blocked everywhere"):
            assert xa.blocked and xb.blocked, name
        elif hint.startswith("blocked in xa"):
            assert xa.blocked and not xb.blocked, name
        elif hint.startswith("blocked in xb"):
            assert xb.blocked and not xa.blocked, name
        else:
            assert xa.decision is Decision.ALLOW and xb.decision is Decision.ALLOW, name
    sinkholed = [n for n, h in summary.try_names if "sinkhole" in h]
    assert snap.match(sinkholed[0], "xa").action is Action.SINKHOLE
    size = service.store.log_size()
    again = install_demo(service, data_dir)  # idempotent: nothing new is logged
    assert again.orders == summary.orders and service.store.log_size() == size
