"""A mirror follows a registry's log: adoptions, amendments and withdrawals on its own log
citing the registry's entries, and bad registries (garbage, bad signatures, rewritten
logs) change nothing but the mirror's status and evidence."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from clearwall.errors import MirrorError
from clearwall.federation import records
from clearwall.federation.metrics import register as register_metrics
from clearwall.federation.sync import sync
from clearwall.ledger import entries, tiles
from clearwall.ledger.merkle import leaf_hash
from clearwall.ledger.signing import generate_signer
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store
from clearwall.store.loader import load_policy
from federation.registries import Registry, mirror_store


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.close()


@pytest.fixture
def isp(tmp_path: Path) -> Iterator[tuple[PolicyService, Store]]:
    (tmp_path / "isp").mkdir()
    service, store = mirror_store(tmp_path / "isp")
    yield service, store
    store.dispose()


def last_event(store: Store) -> entries.Event:
    return entries.parse(store.log_entries()[-1].data)


def enforced(store: Store) -> dict[str, set[str]]:
    """What the store's gateway would enforce: order title -> rule values."""
    compiled, _, _ = load_policy(store)
    return {c.order.title: {r.value for r in c.rules} for c in compiled}


def metrics(store: Store) -> dict[str, float]:
    """What a Prometheus scrape of the web app's registry says of the mirrors."""
    registry = CollectorRegistry()
    register_metrics(registry, store)
    out: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("clearwall_mirror_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def resync(service: PolicyService, mirror_id: int) -> tuple[int, int]:
    with service.store.read() as conn:
        mirror = records.get(conn, mirror_id)
    report = sync(service, mirror)
    return report.adopted, report.withdrawn


def test_orders_are_adopted_amended_and_withdrawn_citing_the_registry(
    registry: Registry, isp: tuple[PolicyService, Store]
) -> None:
    service, store = isp
    ordered = registry.order(["blocked.example"])
    registry.order(["other.example"], "UU-1", registry.other.id)  # not adopted: uu
    m = records.add(store, registry.url, registry.vkey, {"tt": "tt"})

    assert resync(service, m.id) == (1, 0)
    adopted = last_event(store)
    assert isinstance(adopted, entries.OrderAdopted)
    source_entry = registry.store.log_entries()[ordered.log_index or 0]
    assert adopted.source == entries.Source(
        registry.origin, source_entry.index, leaf_hash(source_entry.data).hex(), ordered.id
    )
    assert adopted.order.reference == "TT-1"
    assert enforced(store) == {"Order TT-1": {"blocked.example"}}
    assert resync(service, m.id) == (0, 0)  # nothing new: nothing written
    scraped = metrics(store)
    assert scraped[f'clearwall_mirror_status{{registry="{registry.url}",status="ok"}}'] == 1
    assert scraped[f'clearwall_mirror_size{{registry="{registry.url}"}}'] == (
        registry.store.log_size()
    )

    registry.service.amend_order(ordered.id, add=[RuleSpec(RuleKind.EXACT, "more.example")])
    assert resync(service, m.id) == (1, 0)
    assert enforced(store) == {"Order TT-1": {"blocked.example", "more.example"}}

    registry.service.revoke_order(ordered.id, "appeal upheld")
    size = store.log_size()
    assert resync(service, m.id) == (0, 1)
    withdrawn = last_event(store)
    assert isinstance(withdrawn, entries.AdoptionWithdrawn)
    assert withdrawn.source.index == registry.store.log_size() - 1
    assert "appeal upheld" in withdrawn.reason
    assert store.log_size() == size + 1
    assert enforced(store) == {}


def test_a_registry_code_maps_onto_a_local_jurisdiction(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "corp").mkdir()
    service, store = mirror_store(tmp_path / "corp", {"corp": ["0.0.0.0/0"]})
    try:
        registry.order(["blocked.example"])
        m = records.add(store, registry.url, registry.vkey, records.parse_mapping(["tt=corp"]))
        assert resync(service, m.id) == (1, 0)
        event = last_event(store)
        assert isinstance(event, entries.OrderAdopted) and event.scope == "corp"
    finally:
        store.dispose()


def _garbage_checkpoint(reg: Registry, _: Path) -> None:
    reg.overrides["/log/checkpoint"] = b"\x00garbage\xff" * 50


def _bad_signature(reg: Registry, _: Path) -> None:
    note = (reg.ledger.tiles_path() / "checkpoint").read_text()
    body, sig = note.split("\n\n", 1)
    origin, size, _root, *rest = body.split("\n")
    forged = "\n".join([origin, size, "A" * 43 + "=", *rest])
    reg.overrides["/log/checkpoint"] = (forged + "\n\n" + sig).encode()


def _garbage_entries(reg: Registry, _: Path) -> None:
    size = reg.store.log_size()
    path = tiles.tile_for(size, tiles.ENTRIES, 0).path
    reg.overrides[f"/log/{path}"] = b"\x00\x03abc" * size


def _garbage_rules(reg: Registry, _: Path) -> None:
    for f in (reg.ledger.tiles_path() / "rules").iterdir():
        reg.overrides[f"/log/rules/{f.name}"] = b"subtree not-what-was-logged.example\n"


def _rewritten(reg: Registry, tmp: Path) -> None:
    # A second store signed with the registry's own key: a history of its own.
    other = tmp / "rewrite"
    other.mkdir()
    shutil.copy(reg.ledger.key_path(), other / "registry.ledger.key")
    forged = Registry(other)
    try:
        for n in range(6):
            forged.order([f"forged{n}.example"], f"TT-F{n}")
    finally:
        forged.close()
    reg.republish_from(forged)


BAD = {
    "garbage checkpoint": (_garbage_checkpoint, "invalid"),
    "bad signature": (_bad_signature, "invalid"),
    "garbage entries": (_garbage_entries, "invalid"),
    "rules not as logged": (_garbage_rules, "invalid"),
    "rewritten log": (_rewritten, "refused"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_registry_changes_nothing_and_says_why(
    case: str, registry: Registry, isp: tuple[PolicyService, Store], tmp_path: Path
) -> None:
    service, store = isp
    registry.order(["first.example"])
    m = records.add(store, registry.url, registry.vkey, {"tt": "tt"})
    assert resync(service, m.id) == (1, 0)
    [synced] = records.list_all(store)
    registry.order(["second.example"], "TT-2")
    before = (store.log_size(), enforced(store))
    corrupt, status = BAD[case]
    corrupt(registry, tmp_path)

    with pytest.raises(MirrorError) as raised:
        resync(service, m.id)

    assert raised.value.status == status
    assert (store.log_size(), enforced(store)) == before
    [after] = records.list_all(store)
    assert (after.status, after.size, after.failures) == (status, synced.size, 1)
    assert after.last_error == str(raised.value)
    kept = records.evidence(store, m.id)
    scraped = metrics(store)
    assert scraped[f'clearwall_mirror_status{{registry="{registry.url}",status="{status}"}}'] == 1
    assert scraped[f'clearwall_mirror_failures_total{{registry="{registry.url}"}}'] == 1
    assert scraped[f'clearwall_mirror_evidence{{registry="{registry.url}"}}'] == len(kept)
    if status == "refused":
        with pytest.raises(MirrorError):  # met again next interval: still refused, kept once
            resync(service, m.id)
        assert len(records.evidence(store, m.id)) == 1
        assert "rewritten" in after.last_error
        assert len(kept) == 1 and kept[0].held == synced.checkpoint and kept[0].offered
    else:
        assert kept == []


def test_a_registry_signed_with_another_key_is_refused(
    registry: Registry, isp: tuple[PolicyService, Store]
) -> None:
    service, store = isp
    registry.order(["first.example"])
    wrong = generate_signer(registry.origin).verifier.vkey
    m = records.add(store, registry.url, wrong, {"tt": "tt"})
    size = store.log_size()
    with pytest.raises(MirrorError, match="checkpoint rejected"):
        resync(service, m.id)
    assert store.log_size() == size and enforced(store) == {}


def test_two_passes_at_once_adopt_once(
    registry: Registry, isp: tuple[PolicyService, Store]
) -> None:
    # Two gateways' jobs on one store fetch the same registry state; the second to write
    # finds the mirror moved on and writes nothing (no second adoption entry).
    from clearwall.federation import sync as federation
    from clearwall.federation.registry import Held, RegistryClient

    service, store = isp
    registry.order(["blocked.example"])
    m = records.add(store, registry.url, registry.vkey, {"tt": "tt"})
    held = Held(m.origin, records.leaves(store, m.id))
    client = RegistryClient(m.url, m.verifier())
    fetched = client.update(held)
    with store.read() as conn:
        work = federation.plan(m, fetched, records.adopted(conn, m.id), client)
    client.close()
    assert resync(service, m.id) == (1, 0)  # the other pass
    size = store.log_size()
    late = federation._write(service, m, held, fetched, work, {})
    assert (late.adopted, late.withdrawn) == (0, 0)
    assert store.log_size() == size


def test_a_checkpoint_without_the_witness_quorum_changes_nothing(
    registry: Registry, isp: tuple[PolicyService, Store]
) -> None:
    from clearwall.ledger.cosignature import generate_cosigner

    service, store = isp
    registry.order(["first.example"])
    witness = generate_cosigner("witness.example/w", b"\x05" * 32).verifier.vkey
    m = records.add(store, registry.url, registry.vkey, {"tt": "tt"}, [witness], 1)
    size = store.log_size()
    with pytest.raises(MirrorError, match="checkpoint rejected") as raised:
        resync(service, m.id)
    assert raised.value.status == "invalid"
    assert store.log_size() == size and enforced(store) == {}


def test_a_pass_that_finds_nothing_new_reads_no_held_leaf(
    registry: Registry, isp: tuple[PolicyService, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pass every interval costs one checkpoint fetch, not a read of every leaf hash
    # held (a registry of millions of entries would make it seconds of CPU each time).
    service, store = isp
    registry.order(["first.example"])
    m = records.add(store, registry.url, registry.vkey, {"tt": "tt"})
    assert resync(service, m.id) == (1, 0)

    def no_leaves(*_: object) -> bytes:
        raise AssertionError("the held leaf hashes were read")

    monkeypatch.setattr(records, "leaves", no_leaves)
    assert resync(service, m.id) == (0, 0)
    [after] = records.list_all(store)
    assert after.status == "ok" and after.synced_at is not None
    registry.order(["second.example"], "TT-2")  # something new: the full check again
    with pytest.raises(AssertionError, match="leaf hashes were read"):
        resync(service, m.id)
