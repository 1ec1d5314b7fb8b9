"""Ledger fixtures: a real SQLite store, its PolicyService syncing a real tiles directory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.signing import create_key_file, parse_vkey
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store, open_store

ORIGIN = "clearwall.example/log"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass
class World:
    """A store with policy, its log, and the paths a CLI run needs."""

    store: Store
    service: PolicyService
    tlog: TransparencyLog
    config: LedgerConfig
    vkey: str
    db_url: str
    config_file: Path


def rules(*specs: str) -> list[RuleSpec]:
    """``"subtree example.com"`` → RuleSpec(SUBTREE, "example.com")."""
    out = []
    for spec in specs:
        kind, value = spec.split(" ", 1)
        out.append(RuleSpec(RuleKind(kind), value))
    return out


@pytest.fixture
def world(tmp_path: Path, sqlite_url: str) -> Iterator[World]:
    """Two jurisdictions, three orders (one with an exception), the log synced after each."""
    cfg = LedgerConfig(key_file=tmp_path / "ledger.key", tiles_dir=tmp_path / "log", origin=ORIGIN)
    vkey = create_key_file(cfg.key_file, ORIGIN)
    store = open_store(sqlite_url, migrate=True)
    tlog = TransparencyLog(store, cfg)
    svc = PolicyService(store, after_commit=tlog.sync)
    svc.add_jurisdiction("xa", "Demo Republic A", ["10.0.0.0/8"])
    svc.add_jurisdiction("xb", "Demo Republic B", ["10.77.0.0/16"])
    court = svc.add_authority("Court A", "court", "xa", ["mailto:court@a.example"])
    reg = svc.add_authority("Regulator B", "regulator", "xb", ["https://reg.b.example"])
    svc.add_order(
        court.id,
        "Gambling",
        "Law 1 s.2",
        "C-1",
        "court-order",
        "nxdomain",
        rules("subtree casino.example", "exact bet.example", "allow-exact ok.casino.example"),
        effective_from=T0,
    )
    svc.add_order(
        reg.id,
        "Piracy",
        "Act 9",
        "R-9",
        "regulatory",
        "refused",
        rules("subtree casino.example", "wildcard films.example"),
        effective_from=T0,
    )
    svc.add_order(
        court.id,
        "Phishing",
        "Law 2",
        "C-2",
        "court-order",
        "sinkhole",
        rules(*[f"exact phish{i:03d}.example" for i in range(300)]),
        effective_from=T0,
    )
    config_file = tmp_path / "clearwall.toml"
    config_file.write_text(
        f'[store]\nurl = "{sqlite_url}"\n[ledger]\nkey_file = "{cfg.key_file}"\n'
        f'tiles_dir = "{cfg.tiles_dir}"\norigin = "{ORIGIN}"\n'
    )
    assert parse_vkey(vkey).name == ORIGIN
    try:
        yield World(store, svc, tlog, cfg, vkey, sqlite_url, config_file)
    finally:
        store.dispose()
