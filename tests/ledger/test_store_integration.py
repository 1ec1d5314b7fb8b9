"""The ledger over a real SQLite store: sync after commit, proofs, audit and tampering."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from sqlalchemy import text

from clearwall.errors import VerificationError
from clearwall.ledger import proofs
from clearwall.ledger.audit import audit
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.merkle import MemoryTree, merkle_root
from clearwall.ledger.nameproof import verify_bundle
from clearwall.ledger.prover import NameProver
from clearwall.ledger.signing import generate_signer, parse_vkey
from clearwall.store.logmatch import checker

from .conftest import World, rules

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def test_every_commit_is_published(world: World) -> None:
    size = world.store.log_size()
    cp = open_checkpoint(world.tlog.checkpoint_note(), parse_vkey(world.vkey))
    assert cp.size == size == 5  # one entry per jurisdiction, then one per order
    tree = MemoryTree.from_entries(e.data for e in world.store.log_entries())
    assert cp.root == tree.root()
    assert [c.tree_size for c in world.store.checkpoints()][-1] == size
    files = sorted(p.name for p in (world.config.tiles_dir / "rules").iterdir())
    assert len(files) == 3
    for f in files:
        lines = (world.config.tiles_dir / "rules" / f).read_bytes().splitlines()
        assert merkle_root(lines).hex() == f.split("-")[1][:-4]


def prove(world: World, name: str, jur: str) -> dict:
    return NameProver(world.tlog).prove(name, jur, NOW)


@pytest.mark.parametrize(
    ("name", "jur", "decision", "orders"),
    [
        ("www.casino.example", "xa", "block", [1]),
        ("casino.example", "xb", "block", [2]),
        ("ok.casino.example", "xa", "allow", [1]),  # the exception
        ("ok.casino.example", "xb", "block", [2]),  # exceptions are per jurisdiction
        ("bet.example", "xa", "block", [1]),
        ("www.bet.example", "xa", "allow", []),  # exact only
        ("films.example", "xb", "allow", []),  # wildcard: strictly below
        ("a.films.example", "xb", "block", [2]),
        ("phish123.example", "xa", "block", [3]),
        ("phish999.example", "xa", "allow", []),
        ("unrelated.test", "xa", "allow", []),
        ("www.casino.example", "zz", "allow", []),  # no order binds zz
    ],
)
def test_name_proofs(world: World, name: str, jur: str, decision: str, orders: list[int]) -> None:
    bundle = prove(world, name, jur)
    got = verify_bundle(json.loads(json.dumps(bundle)), parse_vkey(world.vkey))
    assert got["decision"] == decision
    assert (got["blocked_by"] or got["allowed_by"]) == orders


def test_amended_order_proves_with_new_digest(world: World) -> None:
    world.service.amend_order(1, add=rules("exact new.example"), reason="more")
    bundle = prove(world, "new.example", "xa")
    assert verify_bundle(bundle, parse_vkey(world.vkey))["blocked_by"] == [1]
    world.service.revoke_order(1, reason="appeal upheld")
    bundle = prove(world, "new.example", "xa")
    assert verify_bundle(bundle, parse_vkey(world.vkey))["decision"] == "allow"
    assert [o["order"] for o in bundle["orders"]] == [3]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b["conclusion"].update(decision="allow", blocked_by=[]),
        lambda b: [c.update(present=False) for c in b["orders"][0]["candidates"] if c["present"]],
        lambda b: b["orders"][0]["entry"].update(index=b["orders"][0]["entry"]["index"] + 1),
        lambda b: b["orders"][0]["entry"].update(data=b["orders"][0]["entry"]["data"] + " "),
        lambda b: b["orders"][0]["candidates"].pop(),
        lambda b: b.update(checkpoint=b["checkpoint"].replace("\n5\n", "\n4\n")),
        lambda b: b.update(name="other.example"),
        lambda b: b.update(jurisdiction="xb"),
        lambda b: b.update(format="v0"),
    ],
)
def test_forged_bundles_fail(world: World, mutate) -> None:  # type: ignore[no-untyped-def]
    bundle = prove(world, "www.casino.example", "xa")
    forged = copy.deepcopy(bundle)
    mutate(forged)
    with pytest.raises(VerificationError):
        verify_bundle(forged, parse_vkey(world.vkey))


def test_hidden_order_is_caught_with_the_log(world: World) -> None:
    """Offline, a bundle cannot show that no order was left out; with the log it can."""
    bundle = prove(world, "www.casino.example", "xa")
    forged = copy.deepcopy(bundle)
    forged["orders"].pop(0)
    forged["conclusion"] = {"decision": "allow", "blocked_by": [], "allowed_by": []}
    verify_bundle(forged, parse_vkey(world.vkey))  # each proof in it is still true
    entries = [(e.index, bytes(e.data)) for e in world.store.log_entries()]
    verify_bundle(bundle, parse_vkey(world.vkey), entries)
    with pytest.raises(VerificationError, match="order 1 binds xa but is missing"):
        verify_bundle(forged, parse_vkey(world.vkey), entries)
    with pytest.raises(VerificationError, match="do not hash to the checkpoint"):
        verify_bundle(bundle, parse_vkey(world.vkey), [*entries[:-1], (entries[-1][0], b"{}")])


def test_non_membership_neighbours_must_be_adjacent(world: World) -> None:
    bundle = prove(world, "phish150x.example", "xa")
    order = next(o for o in bundle["orders"] if o["order"] == 3)
    cand = next(c for c in order["candidates"] if c["selector"] == "exact phish150x.example")
    assert cand["present"] is False
    forged = copy.deepcopy(bundle)
    fo = next(o for o in forged["orders"] if o["order"] == 3)
    fc = next(c for c in fo["candidates"] if c["selector"] == "exact phish150x.example")
    # Claim a wider gap, hiding lines in between: leaves must be adjacent.
    lines = (world.config.tiles_dir / "rules").glob("3-*.txt")
    all_lines = next(lines).read_bytes().splitlines()
    left = fc["left"]["index"]
    tree = MemoryTree.from_entries(all_lines)
    import base64

    fc["left"] = {
        "index": left - 5,
        "line": all_lines[left - 5].decode(),
        "inclusion": [
            base64.b64encode(h).decode()
            for h in proofs.inclusion_proof(tree, left - 5, len(all_lines))
        ],
    }
    with pytest.raises(VerificationError, match="adjacent"):
        verify_bundle(forged, parse_vkey(world.vkey))
    with pytest.raises(VerificationError):
        verify_bundle(bundle, generate_signer("clearwall.example/log", b"\1" * 32).verifier)


def test_audit_clean(world: World) -> None:
    report = audit(world.store, world.tlog, parse_vkey(world.vkey), checker(world.store))
    assert report.ok, report.problems
    assert report.size == 5 and report.checkpoints >= 5 and report.orders == 3
    assert report.jurisdictions == 2


def _sql(world: World, stmt: str) -> None:
    with world.store.engine.begin() as conn:
        conn.execute(text(stmt))


@pytest.mark.parametrize(
    ("stmt", "expect"),
    [
        (
            "INSERT INTO rules (order_id, kind, value) VALUES (1, 'exact', 'secret.example')",
            "order 1: its 4 stored rules do not match the digest of log entry",
        ),
        (
            "UPDATE rules SET value = 'casino2.example'"
            " WHERE value = 'casino.example' AND order_id = 2",
            "order 2: its 2 stored rules do not match",
        ),
        (
            "UPDATE log_entries SET data = CAST(REPLACE(CAST(data AS TEXT), 'Gambling',"
            " 'Gamblinx') AS BLOB) WHERE idx = 2",
            "entry 2: data does not match its leaf hash",
        ),
        ("DELETE FROM log_entries WHERE idx = 1", "entries 1..1 are missing"),
        (
            "UPDATE checkpoints SET note = REPLACE(note, 'clearwall', 'clearwalI')",
            "forged checkpoint",
        ),
        ("UPDATE orders SET title = 'Nothing to see' WHERE id = 3", "order 3: stored metadata"),
        ("UPDATE orders SET log_index = NULL, status = 'active' WHERE id = 3", None),
        (  # a client network moved into xa behind the log's back
            "INSERT INTO jurisdiction_networks (jurisdiction, cidr) VALUES ('xa', '192.0.2.0/24')",
            "jurisdiction xa: stored name or networks differ from log entry 0",
        ),
        (
            "UPDATE jurisdictions SET name = 'Elsewhere' WHERE code = 'xb'",
            "jurisdiction xb: stored name or networks differ from log entry 1",
        ),
        (
            "INSERT INTO jurisdictions (code, name) VALUES ('xc', 'Unlogged')",
            "jurisdiction xc: not on the log",
        ),
    ],
)
def test_audit_reports_tampering(world: World, stmt: str, expect: str | None) -> None:
    _sql(world, stmt)
    report = audit(world.store, world.tlog, parse_vkey(world.vkey), checker(world.store))
    if expect is None:
        return
    assert not report.ok
    assert any(expect in p for p in report.problems), report.problems


def test_audit_locates_consistent_rewrite(world: World) -> None:
    """Data and leaf hash rewritten together: the signed roots and public tiles expose it."""
    from clearwall.ledger.merkle import leaf_hash

    row = world.store.log_entries(2, 3)[0]  # order 1's entry
    forged = bytes(row.data).replace(b"Gambling", b"Gamblinx")
    with world.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE log_entries SET data = :d, leaf_hash = :h WHERE idx = 2"),
            {"d": forged, "h": leaf_hash(forged)},
        )
    report = audit(world.store, world.tlog, parse_vkey(world.vkey), checker(world.store))
    assert any("first differing entry: 2" in p for p in report.problems), report.problems
