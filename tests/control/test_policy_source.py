"""The policy source: overlays, consolidation, restart reuse of saved snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clearwall.config import LedgerConfig
from clearwall.control.headcheck import HeadCheck
from clearwall.layout import resolve_ledger
from clearwall.store.db import open_store


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
    from clearwall.control.policy_source import PolicySource, load_snapshot
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
    # A clean stop leaves the last whole base, with its provenance, for the next start
    # (and its lock file, unlocked).
    left = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert left == [whole.name, f"{whole.name}.lock"]
    assert (whole / "provenance.json").is_file()


def test_a_consolidation_the_store_outran_is_a_base_not_published(
    store: str, tmp_path: Path
) -> None:
    from clearwall.control.policy_source import PolicySource, load_snapshot
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

    from clearwall.control.policy_source import PolicySource, load_snapshot
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
    from clearwall.control.policy_source import PolicySource, load_snapshot
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


def _verdicts(path: Path) -> list[bool]:
    from clearwall.control.policy_source import load_snapshot

    policy = load_snapshot(path)
    names = ("a.one.example", "two.example", "x.three.example", "free.example")
    return [policy.match(n, "xa").blocked for n in names]


def _restart(
    store: str,
    snaps: Path,
    base_url: str = "",
    check: HeadCheck | None = None,
    ledger: LedgerConfig | None = None,
) -> tuple[Path, bool]:
    """A new source's start (with ``check``, the published checkpoint's checker, when
    given): the policy it starts with, and whether it compiled."""
    from clearwall.control.policy_source import PolicySource

    source = PolicySource(store, base_url, snaps, 0.05, Published(), ledger=ledger)
    try:
        path = source.start_policy(check)
        return path, source._compiler is not None
    finally:
        # Keep what it started with for the test to look at, unlocked as a stop keeps
        # its last base.
        for lease in source._leases.values():
            lease.keep()
        source._leases.clear()
        source._made.clear()
        source.stop()


def test_a_restart_reuses_the_saved_base_without_compiling(store: str, tmp_path: Path) -> None:
    from clearwall.control.policy_source import PolicySource

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    _add(service, court, "R2", "two.example")
    snaps = tmp_path / "snaps"
    source = PolicySource(store, "", snaps, 0.05, Published())
    first = source.start_policy()
    assert source._compiler is not None  # nothing saved yet: compiled
    source.stop()
    try:
        path, compiled = _restart(store, snaps)
        assert path == first and not compiled
        assert _verdicts(path) == [True, True, False, False]
        # Changes since: the saved base with an overlay of just those entries.
        _add(service, court, "R3", "three.example")
        path, compiled = _restart(store, snaps)
        from clearwall.policy.layered import is_overlay

        assert is_overlay(path) and compiled  # only the overlay was compiled
        assert json.loads((path / "layer.json").read_text())["base"] == first.name
        assert _verdicts(path) == [True, True, True, False]
    finally:
        service.store.dispose()


def _tamper(how: str, store: str, saved: Path) -> None:
    """Change one thing the provenance vouches for."""
    import sqlite3

    db = store.removeprefix("sqlite:///")
    provenance = saved / "provenance.json"
    if how == "a log entry":
        with sqlite3.connect(db) as conn:
            (data,) = conn.execute("SELECT data FROM log_entries WHERE idx = 1").fetchone()
            changed = bytes(data).replace(b'"R1"', b'"R9"')
            assert changed != bytes(data)
            conn.execute("UPDATE log_entries SET data = ? WHERE idx = 1", (changed,))
    elif how == "a snapshot file":
        with open(saved / "groups.bin", "ab") as out:
            out.write(b"\0")
    elif how in ("an order left out", "an order's digest"):
        raw = json.loads(provenance.read_text())
        oid = sorted(raw["orders"])[0]
        if how == "an order left out":
            del raw["orders"][oid]
        else:
            raw["orders"][oid][1] = "00" * 32
        provenance.write_text(json.dumps(raw))
    elif how == "no provenance":
        provenance.unlink()
    elif how == "a garbled provenance":
        provenance.write_text("{")


@pytest.mark.parametrize(
    "how",
    [
        "a log entry",
        "a snapshot file",
        "an order left out",
        "an order's digest",
        "no provenance",
        "a garbled provenance",
        "another public URL",
    ],
)
def test_a_saved_snapshot_the_log_does_not_confirm_is_compiled_again(
    how: str, store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Never trusted blindly: whatever the provenance vouches for that no longer holds
    means a whole compile, and the reason in the log."""
    import logging

    from clearwall.control.policy_source import PolicySource

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    _add(service, court, "R2", "two.example")
    snaps = tmp_path / "snaps"
    source = PolicySource(store, "", snaps, 0.05, Published())
    saved = source.start_policy()
    source.stop()
    service.store.dispose()
    _tamper(how, store, saved)
    with caplog.at_level(logging.INFO, logger="clearwall.control"):
        path, compiled = _restart(store, snaps, "http://elsewhere" if "URL" in how else "")
    assert compiled and path != saved
    if how != "no provenance":
        assert f"saved snapshot {saved.name} not reused" in caplog.text
    # An entry changed behind the log's back still compiles: the store's checks (not
    # the reuse) decide then what is enforced.
    assert _verdicts(path)[2:] == [False, False]


def test_a_snapshot_compiled_while_the_store_disagreed_is_not_reused(
    store: str, tmp_path: Path
) -> None:
    """An order whose stored rules no longer match its logged digest is left out of the
    compile; such a snapshot is never reused (the store may be mended since)."""
    import sqlite3

    from clearwall.control.policy_source import PolicySource

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    _add(service, court, "R2", "two.example")
    service.store.dispose()
    db = store.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE rules SET value = 'other.example' WHERE value = 'one.example'")
    snaps = tmp_path / "snaps"
    source = PolicySource(store, "", snaps, 0.05, Published())
    saved = source.start_policy()
    source.stop()
    raw = json.loads((saved / "provenance.json").read_text())
    assert raw["withheld"] and len(raw["orders"]) == 1
    path, compiled = _restart(store, snaps)
    assert compiled and path != saved


def test_one_off_commands_use_the_saved_snapshot(store: str, tmp_path: Path) -> None:
    """``clearwall check`` and ``export`` (current_policy): the snapshot a gateway saved
    beside the store once the log confirms it, the entries since compiled over it in
    memory; ``export`` (whole) compiles when the log moved on; same verdicts each way."""
    from clearwall.control.policy_source import PolicySource
    from clearwall.control.reuse import current_policy
    from clearwall.layout import snapshot_dir
    from clearwall.ledger.log import TransparencyLog
    from clearwall.policy.layered import LayeredPolicy
    from clearwall.policy.snapshotfile import saved_meta
    from clearwall.store.loader import build_snapshot

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    snaps = snapshot_dir(store, LedgerConfig())
    source = PolicySource(store, "", snaps, 0.05, Published())
    saved = source.start_policy()
    source.stop()
    version = saved_meta(saved)["version"]
    names = ("a.one.example", "two.example", "free.example")
    tlog = TransparencyLog(service.store, resolve_ledger(LedgerConfig(), store))

    def verdicts(policy: object) -> list[bool]:
        return [policy.match(n, "xa").blocked for n in names]  # type: ignore[attr-defined]

    def current(base_url: str = "", whole: bool = False) -> object:
        # As the commands call it: the log published first, read no further.
        return current_policy(service.store, store, base_url, tlog.publish(), snaps, whole)

    try:
        policy = current()
        assert policy.version == version and verdicts(policy) == [True, False, False]
        _add(service, court, "R2", "two.example")
        layered = current()
        assert isinstance(layered, LayeredPolicy) and layered.base.version == version
        assert verdicts(layered) == verdicts(build_snapshot(service.store)) == [True, True, False]
        whole = current(whole=True)
        assert whole.version != version and verdicts(whole) == [True, True, False]
        other = current("http://elsewhere")  # another URL
        assert not isinstance(other, LayeredPolicy) and other.version != version
    finally:
        service.store.dispose()


def _published(store: str) -> int:
    """The size of the store's published signed checkpoint."""
    from clearwall.control.headcheck import read_head

    head = read_head(store, None)
    assert head is not None
    return head.size


@pytest.mark.parametrize("how", ["rolled back", "gone"])
def test_a_restart_reuses_only_what_the_published_checkpoint_covers(
    how: str, store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Publish before enforce: a saved snapshot is reused only when the log's published
    signed checkpoint covers its tree size; otherwise the start compiles, and that
    compile publishes the log again first."""
    import logging
    import shutil

    from clearwall.control.policy_source import PolicySource

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    snaps = tmp_path / "snaps"
    tiles = resolve_ledger(LedgerConfig(), store).tiles_path()
    source = PolicySource(store, "", snaps, 0.05, Published())
    source.start_policy()  # publishes the log at 2 entries
    old_note = (tiles / "checkpoint").read_bytes()
    _add(service, court, "R2", "two.example")
    saved = source.compile_now()  # publishes at 3, the base kept at the stop
    source.stop()
    service.store.dispose()
    assert _published(store) == 3
    if how == "rolled back":
        (tiles / "checkpoint").write_bytes(old_note)  # a public log that shows less
        assert _published(store) == 2
    else:
        shutil.rmtree(tiles)
    with caplog.at_level(logging.INFO, logger="clearwall.control"):
        path, compiled = _restart(store, snaps)
    assert compiled and path != saved
    if how == "rolled back":
        assert "does not cover its 3" in caplog.text
    assert _published(store) == 3  # published again before it was enforced
    assert _verdicts(path) == [True, True, False, False]


def test_a_restart_publishes_what_was_committed_since_before_enforcing_it(
    store: str, tmp_path: Path
) -> None:
    """A change committed while the gateway was stopped, by a writer that never published
    it: the start reuses the saved snapshot (the published checkpoint covers it) and
    compiles the change as an overlay, whose compile publishes it first."""
    from clearwall.control.policy_source import PolicySource
    from clearwall.policy.layered import is_overlay

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    snaps = tmp_path / "snaps"
    source = PolicySource(store, "", snaps, 0.05, Published())
    saved = source.start_policy()
    source.stop()
    _add(service, court, "R3", "three.example")  # committed, not published
    service.store.dispose()
    assert _published(store) == 2
    path, compiled = _restart(store, snaps)
    assert is_overlay(path) and compiled
    assert json.loads((path / "layer.json").read_text())["base"] == saved.name
    assert _published(store) == 3 and _verdicts(path)[2] is True


def test_a_reused_snapshot_carries_its_jurisdictions_and_the_overlay_the_new_ones(
    store: str, tmp_path: Path
) -> None:
    """Jurisdictions are on the log: the reused snapshot holds those in force when it was
    compiled, and the overlay over it the jurisdiction entries committed since (a new
    jurisdiction, a network moved), without reading the whole log again."""
    from clearwall.control.policy_source import PolicySource, load_snapshot
    from clearwall.policy.layered import is_overlay
    from clearwall.policy.snapshot import PolicySnapshot

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    snaps = tmp_path / "snaps"
    source = PolicySource(store, "", snaps, 0.05, Published())
    saved = source.start_policy()
    source.stop()
    try:
        path, compiled = _restart(store, snaps)  # nothing since: reused as it is
        assert path == saved and not compiled
        assert load_snapshot(path).jurisdiction_of("127.0.0.1") == "xa"
        service.add_jurisdiction("xb", "B", ["10.77.1.0/24"])
        service.update_jurisdiction("xa", remove_networks=["127.0.0.0/8"])
        service.update_jurisdiction("xa", add_networks=["10.88.0.0/16"])
        path, compiled = _restart(store, snaps)
        assert is_overlay(path) and compiled
        assert json.loads((path / "layer.json").read_text())["base"] == saved.name
        base = PolicySnapshot.load(saved)
        assert base.jurisdiction_of("127.0.0.1") == "xa"  # as the reused base holds it
        policy = load_snapshot(path)
        assert policy.jurisdiction_of("10.77.1.5") == "xb"
        assert policy.jurisdiction_of("127.0.0.1") is None
        assert policy.jurisdiction_of("10.88.4.4") == "xa"
        assert policy.match("www.one.example", "xa").blocked
    finally:
        service.store.dispose()


def test_a_start_serves_a_key_table_then_swaps_in_the_trie(store: str, tmp_path: Path) -> None:
    """A whole compile the gateway waits for keeps its names in a key table (quick to
    build); the next quiet poll compiles the trie in the background, in a compiler of
    lower priority, and publishes it as equivalent; a clean stop keeps the trie's."""
    from clearwall.control.policy_source import CONSOLIDATION_NICE, PolicySource, load_snapshot
    from clearwall.policy.keytable import KIND
    from clearwall.policy.snapshotfile import saved_meta

    service, court = _service(store)
    _add(service, court, "R1", "one.example", "two.example")
    published = Published()
    source = PolicySource(store, "", tmp_path / "snaps", 0.05, published, consolidate_after=0.0)
    source.keytable_from = 1  # the default is for large policies: any size here
    try:
        first = source.compile_now()
        assert saved_meta(first)["names"] == KIND
        fast = load_snapshot(first)
        source.poll()  # no change: the trie is compiled in the background
        consolidator = source._consolidator
        assert consolidator is not None and consolidator.nice == CONSOLIDATION_NICE
        assert source.wait_consolidated(60)
        source.poll()
        [(compact, equivalent)] = published.items
        assert equivalent and saved_meta(compact)["names"] == "marisa"
        policy = load_snapshot(compact)
        for name in ("a.one.example", "two.example", "three.example"):
            assert policy.match(name, "xa") == fast.match(name, "xa")
        source.poll()
        source.poll()
        assert len(published.items) == 1  # compacted once, not again
    finally:
        source.stop()
        service.store.dispose()
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == [
        compact.name,
        f"{compact.name}.lock",
    ]


def test_a_small_policy_is_compiled_into_the_trie_at_once(store: str, tmp_path: Path) -> None:
    from clearwall.control.policy_source import PolicySource
    from clearwall.policy.snapshotfile import saved_meta

    service, court = _service(store)
    _add(service, court, "R1", "one.example")
    published = Published()
    source = PolicySource(store, "", tmp_path / "snaps", 0.05, published, consolidate_after=0.0)
    try:
        assert saved_meta(source.compile_now())["names"] == "marisa"
        source.poll()
        assert source._consolidation is None and published.items == []
    finally:
        source.stop()
        service.store.dispose()
