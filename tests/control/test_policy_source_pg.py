"""The control plane on a shared PostgreSQL store: woken by NOTIFY, and a store that
goes away (the database refuses this store's connections) under a running source."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from tests.pgserver import PostgresCluster

from clearwall.config import LedgerConfig
from clearwall.control.policy_source import PolicySource, load_snapshot
from clearwall.ledger.signing import create_key_file
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService
from clearwall.store.db import open_store

# A poll far longer than any wait below: only a notification can wake the source in time.
SLOW_POLL = 600.0
WAIT = 60.0  # generous: the machine is shared; the bench measures the real figure


class Published:
    """What a PolicySource published, signalled to a waiting test."""

    def __init__(self) -> None:
        self.items: list[Path] = []
        self.changed = threading.Condition()

    def __call__(self, path: Path, _equivalent: bool) -> None:
        with self.changed:
            self.items.append(path)
            self.changed.notify_all()

    def wait_for(self, check: object, timeout: float = WAIT) -> bool:
        """Wait until ``check()`` holds."""
        with self.changed:
            return self.changed.wait_for(check, timeout)  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path) -> LedgerConfig:
    """The ledger paths a PostgreSQL store needs, with a key made."""
    cfg = LedgerConfig(key_file=tmp_path / "ledger.key", tiles_dir=tmp_path / "log")
    create_key_file(cfg.key_path(), cfg.origin)
    return cfg


@pytest.fixture
def service(pg_url: str) -> Iterator[PolicyService]:
    """The write path over a fresh PostgreSQL store, with a jurisdiction and a court."""
    svc = PolicyService(open_store(pg_url, migrate=True))
    svc.add_jurisdiction("xa", "A", ["127.0.0.0/8"])
    svc.add_authority("Court A", "court", "xa")
    try:
        yield svc
    finally:
        svc.store.dispose()


def _order(service: PolicyService, reference: str, name: str) -> None:
    service.add_order(
        1, "Order", "Act s.1", reference, "court-order", "nxdomain",
        [RuleSpec(RuleKind.SUBTREE, name)],
    )  # fmt: skip


def _blocked(published: Published, name: str) -> bool:
    return bool(published.items) and load_snapshot(published.items[-1]).match(name, "xa").blocked


def test_a_commit_wakes_every_source_at_once(
    service: PolicyService, pg_url: str, ledger: LedgerConfig, tmp_path: Path
) -> None:
    # Two nodes, each with its own snapshot directory, polling only every ten minutes.
    nodes = [(Published(), tmp_path / f"node{i}") for i in range(2)]
    sources = [
        PolicySource(pg_url, "", snaps, SLOW_POLL, published, ledger=ledger)
        for published, snaps in nodes
    ]
    try:
        for source in sources:
            source.start_policy()
            source.start()
        for i in range(3):
            name = f"n{i}.example"
            _order(service, f"R{i}", name)
            for published, _snaps in nodes:
                assert published.wait_for(lambda p=published, n=name: _blocked(p, n)), name
    finally:
        for source in sources:
            source.stop()


def _metrics(source: PolicySource) -> bytes:
    """The gateway's Prometheus exposition, with the source's store state."""
    from prometheus_client import CollectorRegistry, generate_latest

    from clearwall.dnsserver.metrics import DNSCollector, DNSMetrics

    registry = CollectorRegistry()
    registry.register(DNSCollector(lambda: [DNSMetrics()], lambda: source.store_reachable))
    return bytes(generate_latest(registry))


def _refuse(cluster: PostgresCluster, database: str, refuse: bool) -> None:
    """Make ``database`` refuse (or accept again) every connection, dropping live ones."""
    allow = "false" if refuse else "true"
    cluster.admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allow}')
    if refuse:
        cluster.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )


def test_a_source_that_loses_the_store_keeps_its_policy_and_says_so(
    service: PolicyService,
    pg_url: str,
    pg_cluster: PostgresCluster,
    ledger: LedgerConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = make_url(pg_url).database
    assert database is not None
    _order(service, "R0", "before.example")
    published = Published()
    source = PolicySource(pg_url, "", tmp_path / "snaps", 0.2, published, ledger=ledger)
    caplog.set_level(logging.WARNING, logger="clearwall.control.policy_source")
    try:
        start = source.start_policy()
        assert load_snapshot(start).match("before.example", "xa").blocked
        source.start()
        _refuse(pg_cluster, database, True)
        deadline = time.monotonic() + WAIT
        while source.store_reachable and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not source.store_reachable
        assert "the store is unreachable" in caplog.text
        assert b"clearwall_store_reachable 0.0" in _metrics(source)
        assert source.version == 2 and published.items == []  # the last policy stays

        _refuse(pg_cluster, database, False)
        service.store.dispose()  # the writer's pooled connections were dropped too
        _order(service, "R1", "after.example")
        assert published.wait_for(lambda: _blocked(published, "after.example"))
        assert source.store_reachable
        assert "the store is reachable again" in caplog.text
        assert b"clearwall_store_reachable 1.0" in _metrics(source)
    finally:
        _refuse(pg_cluster, database, False)
        source.stop()


def test_a_node_without_the_key_waits_for_the_signer_and_says_so(
    service: PolicyService,
    pg_url: str,
    ledger: LedgerConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clearwall.control import policy_source
    from clearwall.ledger.log import TransparencyLog
    from clearwall.ledger.signing import load_signer

    monkeypatch.setattr(policy_source, "SIGNER_PATIENCE", 0.5)
    signer = TransparencyLog(service.store, ledger)
    signer.sync()  # what the signer's gateway did at its start
    follower = LedgerConfig(
        key_file=tmp_path / "f" / "ledger.key",
        tiles_dir=tmp_path / "f" / "log",
        vkey=load_signer(ledger.key_path()).verifier.vkey,
    )
    published = Published()
    source = PolicySource(pg_url, "", tmp_path / "snaps", 0.1, published, ledger=follower)
    caplog.set_level(logging.INFO, logger="clearwall.control.policy_source")
    try:
        source.start_policy()
        source.start()
        _order(service, "R0", "unsigned.example")  # committed; the signer is not running
        deadline = time.monotonic() + WAIT
        while "is the node holding the ledger key running?" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.1)
        assert "2 entries committed, the signer has signed 1: waiting for the signer" in (
            caplog.text
        )
        assert published.items == [] and source.version == 1  # nothing past the signature
        assert not (tmp_path / "f" / "ledger.key").exists()  # and it never made a key

        signer.sync()  # the signer signs: the follower wakes (NOTIFY) and enforces it
        assert published.wait_for(lambda: _blocked(published, "unsigned.example"))
        assert source.version == 2
    finally:
        source.stop()


def test_a_sqlite_gateway_still_loads_no_sqlalchemy(tmp_path: Path) -> None:
    """The listener is for PostgreSQL only: starting the source of a SQLite store (as a
    gateway does) must not import SQLAlchemy, which delayed the start past a SIGTERM."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'cw.db'}"
    open_store(url, migrate=True).dispose()
    create_key_file(tmp_path / "cw.ledger.key", LedgerConfig().origin)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from clearwall.control.policy_source import PolicySource\n"
        f"snaps = Path({str(tmp_path / 'snaps')!r})\n"
        f"s = PolicySource({url!r}, '', snaps, 0.1, lambda p, e: None)\n"
        "s.start_policy(); s.start(); s.poll(); s.stop()\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
