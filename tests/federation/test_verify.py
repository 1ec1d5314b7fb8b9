"""``clearwall ledger verify`` holds every adoption against the registry's own log."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from clearwall.federation import records
from clearwall.federation.sync import sync
from clearwall.federation.verify import check_citation, citations
from clearwall.ledger import entries
from clearwall.ledger.merkle import leaf_hash
from federation.registries import Registry, mirror_store


def verify(db: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    return subprocess.run(
        [sys.executable, "-m", "clearwall", "ledger", "verify", "--db", db],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_verify_checks_adoptions_and_says_when_the_registry_is_unreachable(
    tmp_path: Path,
) -> None:
    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    service, store = mirror_store(tmp_path / "isp")
    try:
        order = registry.order(["blocked.example"])
        m = records.add(store, registry.url, registry.vkey, {"tt": "tt"})
        sync(service, m)
        registry.service.revoke_order(order.id, "lifted")
        sync(service, records.list_all(store)[0])
        db = str(store.engine.url)
        done = verify(db, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "2 adoption entr(ies) borne out by 1 registry log(s)" in done.stdout
    finally:
        registry.close()
    done = verify(db, tmp_path)  # the registry is gone: said, not hidden, and no failure
    assert done.returncode == 0, done.stderr
    assert "UNCHECKED: 2 adoption entr(ies) citing registry.tt.example/log not checked" in (
        done.stderr
    )
    store.dispose()


Forge = Callable[[entries.Event, list[bytes]], tuple[entries.Event, list[bytes]]]


def _other_index(cited: entries.Event, log: list[bytes]) -> tuple[entries.Event, list[bytes]]:
    assert isinstance(cited, entries.OrderAdopted)
    source = dataclasses.replace(cited.source, index=0, leaf_hash=leaf_hash(log[0]).hex())
    return dataclasses.replace(cited, source=source), log


def _other_rules(cited: entries.Event, log: list[bytes]) -> tuple[entries.Event, list[bytes]]:
    assert isinstance(cited, entries.OrderAdopted)
    return dataclasses.replace(cited, rules=entries.RuleSet(1, "0" * 64)), log


def _other_title(cited: entries.Event, log: list[bytes]) -> tuple[entries.Event, list[bytes]]:
    assert isinstance(cited, entries.OrderAdopted)
    return dataclasses.replace(cited, order=dataclasses.replace(cited.order, title="Other")), log


def _wrong_hash(cited: entries.Event, log: list[bytes]) -> tuple[entries.Event, list[bytes]]:
    assert isinstance(cited, entries.OrderAdopted)
    return dataclasses.replace(
        cited, source=dataclasses.replace(cited.source, leaf_hash="1" * 64)
    ), log


def _beyond(cited: entries.Event, log: list[bytes]) -> tuple[entries.Event, list[bytes]]:
    return cited, log[:2]


FORGERIES: dict[str, tuple[Forge, str]] = {
    "another entry": (_other_index, "publishes no version"),
    "another rule set": (_other_rules, "is not the adopted one"),
    "other metadata": (_other_title, "metadata differs"),
    "wrong leaf hash": (_wrong_hash, "hashes otherwise"),
    "beyond the log": (_beyond, "beyond the registry's log"),
}


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_a_citation_the_registry_log_contradicts_is_reported(case: str, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    (tmp_path / "isp").mkdir()
    service, store = mirror_store(tmp_path / "isp")
    try:
        registry.order(["blocked.example"])
        sync(service, records.add(store, registry.url, registry.vkey, {"tt": "tt"}))
        log = [e.data for e in registry.store.log_entries()]
        [(index, cited)] = citations(store)
        assert check_citation(index, cited, log) is None
        forge, why = FORGERIES[case]
        forged, served = forge(cited, log)
        assert isinstance(forged, entries.OrderAdopted)
        assert why in (check_citation(index, forged, served) or "")
    finally:
        registry.close()
        store.dispose()
