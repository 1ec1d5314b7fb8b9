"""The control plane's light parts: the SQLite version poll and the on-demand compiler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.dnsserver.policy_source import Compiler, _sqlite_log_size
from clearwall.layout import resolve_ledger
from clearwall.ledger.signing import create_key_file
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.store.db import open_store


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A store with its ledger key beside it, as ``clearwall init`` makes it (a gateway
    publishes the log before it enforces a policy)."""
    url = f"sqlite:///{tmp_path / 'cw.db'}"
    open_store(url, migrate=True).engine.dispose()
    key = resolve_ledger(LedgerConfig(), url).key_path()
    create_key_file(key, LedgerConfig().origin)
    return url


def test_sqlite_version_poll_matches_the_store(store: str) -> None:
    assert _sqlite_log_size(store) == open_store(store).log_size()


def test_sqlite_version_poll_takes_relative_urls(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default store URL (sqlite:///var/clearwall.db) is relative
    assert _sqlite_log_size("sqlite:///cw.db") == 0


@pytest.mark.parametrize(
    "url", ["sqlite:///nowhere/x.db", "postgresql://h/db", "sqlite://", "sqlite:///x.db?mode=ro"]
)
def test_anything_else_is_left_to_the_store(url: str) -> None:
    assert _sqlite_log_size(url) is None  # the store opens it, or explains why it cannot


def test_compiler_starts_on_demand_and_stops_when_idle(store: str, tmp_path: Path) -> None:
    compiler = Compiler(linger=0.0)
    out = compiler.compile(store, "", tmp_path / "snap")
    assert PolicySnapshot.load(out).tree_size == 0
    proc = compiler._proc
    assert proc is not None and proc.poll() is None  # kept for the next change of a burst
    compiler.expire()
    assert compiler._proc is None and proc.poll() is not None
    # A later change starts a new one.
    assert compiler.compile(store, "", tmp_path / "snap2") == tmp_path / "snap2"
    compiler.close()


class Published:
    """What a PolicySource published, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[Path, bool]] = []

    def __call__(self, path: Path, equivalent: bool) -> None:
        self.items.append((path, equivalent))


def _service(url: str):  # type: ignore[no-untyped-def]
    from clearwall.store import PolicyService

    service = PolicyService(open_store(url))
    service.add_jurisdiction("xa", "A", ["127.0.0.0/8"])
    authority = service.add_authority("Court A", "court", "xa")
    return service, authority.id


def _add(service, authority: int, reference: str, *names: str):  # type: ignore[no-untyped-def]
    from clearwall.model import RuleKind
    from clearwall.policy.model import RuleSpec

    return service.add_order(
        authority,
        "Order",
        "Act s.1",
        reference,
        "court-order",
        "nxdomain",
        [RuleSpec(RuleKind.SUBTREE, n) for n in names],
    )


def test_a_change_is_an_overlay_then_a_consolidated_base(store: str, tmp_path: Path) -> None:
    from clearwall.dnsserver.policy_source import PolicySource, load_snapshot
    from clearwall.policy.layered import LayeredPolicy, is_overlay

    service, court = _service(store)
    first = _add(service, court, "R1", "one.example")
    published = Published()
    source = PolicySource(store, "", tmp_path / "snaps", 0.05, published, consolidate_after=0.0)
    try:
        base = source.compile_now()
        assert not is_overlay(base) and source.version == 2  # xa's entry, R1's
        second = _add(service, court, "R2", "two.example")
        service.revoke_order(first.id, "withdrawn")
        source.poll()
        [(overlay, equivalent)] = published.items
        assert is_overlay(overlay) and not equivalent
        layered = load_snapshot(overlay)
        assert isinstance(layered, LayeredPolicy) and layered.tree_size == 4
        assert layered.match("a.two.example", "xa").blocked
        assert not layered.match("a.one.example", "xa").blocked
        assert [o.id for o in layered.orders()] == [second.id]

        source.poll()  # quiet: the whole policy is compiled in the background
        assert source.wait_consolidated(60)
        source.poll()
        whole, equivalent = published.items[-1]
        assert equivalent and not is_overlay(whole)
        merged = load_snapshot(whole)
        for name in ("a.two.example", "a.one.example", "x.example"):
            assert merged.match(name, "xa") == layered.match(name, "xa")
        assert base.exists() and overlay.exists()  # kept while recently published

        _add(service, court, "R3", "three.example")
        source.poll()
        newer, _ = published.items[-1]
        assert load_snapshot(newer).match("three.example", "xa").blocked
        assert (newer.parent / whole.name).exists()  # the base the new overlay names
    finally:
        source.stop()
        service.store.dispose()
    assert not any((tmp_path / "snaps").iterdir())  # a clean stop leaves nothing behind


def test_a_consolidation_the_store_outran_is_a_base_not_published(
    store: str, tmp_path: Path
) -> None:
    from clearwall.dnsserver.policy_source import PolicySource, load_snapshot
    from clearwall.policy.layered import LAYER_FILE, is_overlay

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    published = Published()
    source = PolicySource(store, "", tmp_path / "snaps", 0.05, published, consolidate_after=0.0)
    try:
        source.compile_now()
        _add(service, court, "R2", "two.example")
        source.poll()  # version 3 (xa's entry, R1, R2), an overlay
        _add(service, court, "R3", "three.example")
        source._start_consolidation()  # as if the quiet spell ended just before R3 landed
        assert source.wait_consolidated(60)
        source.poll()  # consolidated version 4 becomes the base, and 4 is compiled over it
        path, equivalent = published.items[-1]
        assert is_overlay(path) and not equivalent
        assert json.loads((path / LAYER_FILE).read_text())["base"].startswith("policy-4-")
        policy = load_snapshot(path)
        assert policy.tree_size == 4 and policy.match("three.example", "xa").blocked
        source.poll()
        assert source.wait_consolidated(60)
        source.poll()
        path, equivalent = published.items[-1]
        assert equivalent and not is_overlay(path) and load_snapshot(path).tree_size == 4
    finally:
        source.stop()
        service.store.dispose()


def test_an_overlay_that_cannot_be_compiled_falls_back_to_the_whole_policy(
    store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    from clearwall.dnsserver.policy_source import PolicySource, load_snapshot
    from clearwall.policy.layered import is_overlay

    service, court = _service(store)
    published = Published()
    source = PolicySource(store, "", tmp_path / "snaps", 0.05, published)
    try:
        shutil.rmtree(source.compile_now())  # the base is gone (say, an operator's cleanup)
        _add(service, court, "R1", "one.example")
        source.poll()
        path, _ = published.items[-1]
        assert not is_overlay(path) and load_snapshot(path).match("one.example", "xa").blocked
        assert "overlay compile failed" in caplog.text
    finally:
        source.stop()
        service.store.dispose()


def test_jurisdiction_changes_are_picked_up_like_order_changes(store: str, tmp_path: Path) -> None:
    """A jurisdiction created or given a network while the gateway runs: its log entry
    changes the policy version, and the overlay maps its clients (read over the base's
    jurisdictions: only the new entries)."""
    from clearwall.dnsserver.policy_source import PolicySource, load_snapshot
    from clearwall.policy.layered import is_overlay

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    published = Published()
    source = PolicySource(store, "", tmp_path / "snaps", 0.05, published, consolidate_after=60)
    try:
        base = load_snapshot(source.compile_now())
        assert base.jurisdiction_of("10.77.1.5") is None
        service.add_jurisdiction("xb", "B", ["10.77.1.0/24"])
        source.poll()
        path, _ = published.items[-1]
        policy = load_snapshot(path)
        assert is_overlay(path) and policy.jurisdiction_of("10.77.1.5") == "xb"
        assert policy.jurisdiction_of("127.0.0.1") == "xa"
        service.update_jurisdiction("xa", remove_networks=["127.0.0.0/8"])
        service.update_jurisdiction("xb", add_networks=["10.88.0.0/16"])
        source.poll()
        policy = load_snapshot(published.items[-1][0])
        assert policy.jurisdiction_of("127.0.0.1") is None
        assert policy.jurisdiction_of("10.88.4.4") == "xb"
        assert policy.match("www.one.example", "xa").blocked  # the orders are untouched
    finally:
        source.stop()
        service.store.dispose()
