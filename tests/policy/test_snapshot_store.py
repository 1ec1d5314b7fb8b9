"""Saving, loading and sharing snapshots, and the snapshot's inspection API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from array import array
from pathlib import Path

import pytest
from matcher_builders import DAY, JURISDICTIONS, NOW, T0, order, summary

from clearwall.errors import SnapshotError
from clearwall.model import Action, OrderStatus, RuleKind
from clearwall.policy.compiler import narrowest
from clearwall.policy.model import CompiledOrder, Jurisdiction, RuleSpec
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.policy.snapshotfile import GROUPS_FILE, INDEX_FILE, TRIE_FILE

POLICY = [
    order(1, "de", ["subtree x.com", "allow-exact ok.x.com", "response-ip 10.0.0.0/8"]),
    order(2, "fr", ["exact y.com nodata", "wildcard z.org"], start_day=20, end_day=30),
    order(3, "de", ["subtree all.net"], everywhere=True, end_day=15),
    order(4, "de", ["subtree gone.com"], status=OrderStatus.REVOKED),
]


def test_round_trip_keeps_every_decision_and_the_metadata(tmp_path: Path) -> None:
    compiled = PolicySnapshot.compile(
        POLICY, JURISDICTIONS, tree_size=42, base_url="https://cw.example"
    )
    compiled.save(tmp_path / "snap")
    loaded = PolicySnapshot.load(tmp_path / "snap")
    assert loaded.version == compiled.version and loaded.version.startswith("42-")
    assert loaded.tree_size == 42
    assert loaded.valid_until == compiled.valid_until
    assert loaded.orders() == compiled.orders()
    assert [o.id for o in loaded.orders()] == [1, 2, 3]  # revoked orders are not carried
    assert loaded.orders()[0].url == "https://cw.example/orders/1"
    assert loaded.jurisdictions() == compiled.jurisdictions() == ("de", "fr")
    names = ["x.com", "ok.x.com", "a.ok.x.com", "y.com", "a.z.org", "z.org", "all.net", "gone.com"]
    for name in names:
        for jurisdiction in ("de", "fr", "zz"):
            for day in (0, 25, 40):
                now = T0.timestamp() + day * DAY
                assert summary(loaded.match(name, jurisdiction, now)) == summary(
                    compiled.match(name, jurisdiction, now)
                )
    assert loaded.match_ip("10.1.1.1", "de", NOW).blocked


def test_version_depends_on_content_not_on_compile_time(tmp_path: Path) -> None:
    first = PolicySnapshot.compile(POLICY, JURISDICTIONS, tree_size=7)
    again = PolicySnapshot.compile(POLICY, JURISDICTIONS, tree_size=7)
    other = PolicySnapshot.compile(POLICY[:2], JURISDICTIONS, tree_size=7)
    assert first.version == again.version != other.version


def test_valid_until_is_the_next_boundary() -> None:
    # Compiled "now" (the real clock, after 2026-01-31) is past every boundary.
    snapshot = PolicySnapshot.compile(POLICY, JURISDICTIONS)
    assert snapshot.valid_until is None
    future = order(9, "de", ["exact f.com"], start_day=365 * 50)
    later = PolicySnapshot.compile([future], JURISDICTIONS)
    assert later.valid_until == pytest.approx(T0.timestamp() + 365 * 50 * DAY)


def test_save_replaces_atomically_and_old_mappings_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(path)
    old = PolicySnapshot.load(path)
    newer = [order(5, "de", ["subtree new.com"])]
    PolicySnapshot.compile(newer, JURISDICTIONS).save(path)
    assert old.match("x.com", "de", NOW).blocked  # still served from the unlinked files
    fresh = PolicySnapshot.load(path)
    assert not fresh.match("x.com", "de", NOW).blocked
    assert fresh.match("a.new.com", "de", NOW).blocked
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 2, leftovers  # the link and the one directory it names
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(path)
    assert len(list(tmp_path.iterdir())) == 2
    assert PolicySnapshot.load(path).match("x.com", "de", NOW).blocked


def test_save_to_a_new_path_makes_a_plain_directory(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "snap"
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(path)
    assert path.is_dir() and not path.is_symlink()
    assert [p.name for p in path.parent.iterdir()] == ["snap"]


def test_save_over_a_plain_directory(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    path.mkdir()
    (path / "stale").write_text("x")
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(path)
    assert PolicySnapshot.load(path).match("x.com", "de", NOW).blocked


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / "meta.json").unlink(), "cannot load"),
        (lambda p: (p / "meta.json").write_text("{"), "cannot load"),
        (lambda p: _edit_meta(p, format=99), "format"),
        (lambda p: _edit_meta(p, format=1), "format"),  # before the name index
        (lambda p: _edit_meta(p, format=2), "format"),  # u32 key groups, 64-bit index
        (lambda p: _edit_meta(p, group_width=3), "key-group width"),
        (lambda p: _edit_meta(p, group_width=2), "partial entry|disagree"),
        (lambda p: _edit_meta(p, index_key="00"), "cannot load"),
        (lambda p: _edit_meta(p, byteorder="middle-3"), "byte order"),
        (lambda p: _edit_meta(p, keys=1), "disagree"),
    ],
)
def test_damaged_snapshot_fails_to_load(tmp_path: Path, damage, message: str) -> None:
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(tmp_path / "snap")
    damage((tmp_path / "snap").resolve())
    with pytest.raises(SnapshotError, match=message):
        PolicySnapshot.load(tmp_path / "snap")


@pytest.mark.parametrize(
    ("groups", "typecode"), [(1, "B"), (256, "B"), (257, "H"), (65_536, "H"), (65_537, "I")]
)
def test_key_groups_take_the_narrowest_width(groups: int, typecode: str) -> None:
    wide = array("I", [0, groups - 1, groups // 2])
    narrow = narrowest(wide, groups)
    assert narrow.typecode == typecode and list(narrow) == list(wide)


def test_a_saved_policy_of_few_groups_keeps_one_byte_per_name(tmp_path: Path) -> None:
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(tmp_path / "snap")
    meta = json.loads((tmp_path / "snap" / "meta.json").read_text())
    assert meta["group_width"] == 1
    assert (tmp_path / "snap" / GROUPS_FILE).stat().st_size == meta["keys"]


def _edit_meta(path: Path, **changes: object) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def test_empty_policy(tmp_path: Path) -> None:
    empty = PolicySnapshot.compile([], [])
    empty.save(tmp_path / "snap")
    for snapshot in (empty, PolicySnapshot.load(tmp_path / "snap")):
        assert not snapshot.match("x.com", "de").blocked
        assert not snapshot.match_ip("10.0.0.1", "de").blocked
        assert snapshot.orders() == () and snapshot.jurisdictions() == ()


@pytest.mark.parametrize(
    "bad",
    [
        RuleSpec(RuleKind.EXACT, "x.com."),
        RuleSpec(RuleKind.EXACT, ""),
        RuleSpec(RuleKind.RESPONSE_IP, "10.0.0.300/8"),
    ],
)
def test_non_canonical_rules_are_refused(bad: RuleSpec) -> None:
    base = order(1)
    with pytest.raises(SnapshotError):
        PolicySnapshot.compile([CompiledOrder(base.order, base.authority, (bad,))], [])


def test_rules_stream_from_a_generator_with_progress() -> None:
    base = order(1, "de")
    rules = (RuleSpec(RuleKind.SUBTREE, f"n{i}.example") for i in range(70_000))
    seen: list[int] = []
    snapshot = PolicySnapshot.compile(
        [CompiledOrder(base.order, base.authority, rules)],  # type: ignore[arg-type]
        [],
        progress=seen.append,
    )
    assert seen == [65_536, 70_000]
    assert len(snapshot) == 70_000
    assert snapshot.match("a.n69999.example", "de", NOW).blocked


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("192.0.2.7", "de"),
        ("192.0.2.200", "fr"),  # the longer prefix wins
        ("::ffff:192.0.2.7", "de"),
        ("2001:db8:1::1", "fr"),
        ("2001:db8:2::1", "de"),
        ("198.51.100.1", None),
        ("not-an-ip", None),
    ],
)
def test_jurisdiction_of_client(client: str, expected: str | None, tmp_path: Path) -> None:
    import ipaddress as ip

    places = [
        Jurisdiction(
            "de", "Germany", (ip.ip_network("192.0.2.0/24"), ip.ip_network("2001:db8::/32"))
        ),
        Jurisdiction(
            "fr", "France", (ip.ip_network("192.0.2.128/25"), ip.ip_network("2001:db8:1::/48"))
        ),
    ]
    compiled = PolicySnapshot.compile([], places)
    compiled.save(tmp_path / "snap")
    assert compiled.jurisdiction_of(client) == expected
    assert PolicySnapshot.load(tmp_path / "snap").jurisdiction_of(client) == expected


def test_rules_for_exports_the_effective_policy_of_a_jurisdiction() -> None:
    snapshot = PolicySnapshot.compile(POLICY, JURISDICTIONS)

    def export(code: str, day: float) -> set[tuple[str, int]]:
        at = T0.timestamp() + day * DAY
        return {(rule.describe(), ref.id) for rule, ref in snapshot.rules_for(code, at)}

    assert export("de", 10) == {
        ("subtree x.com", 1),
        ("allow-exact ok.x.com", 1),
        ("response-ip 10.0.0.0/8", 1),
        ("subtree all.net", 3),
    }
    assert export("fr", 10) == {("subtree all.net", 3)}
    assert export("fr", 25) == {("exact y.com (nodata)", 2), ("wildcard z.org", 2)}
    assert export("zz", 40) == set()


def test_two_processes_map_the_same_snapshot_files(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    PolicySnapshot.compile(POLICY, JURISDICTIONS).save(path)
    child = textwrap.dedent(
        """
        import json, os, sys
        from clearwall.policy.snapshot import PolicySnapshot
        snapshot = PolicySnapshot.load(sys.argv[1])
        assert snapshot.match("x.com", "de").blocked
        mapped = {}
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith(os.path.realpath(sys.argv[1])):
                    mapped[os.path.basename(fields[5])] = int(fields[4])
        print(json.dumps(mapped))
        """
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=True
        )
        for _ in range(2)
    ]
    maps = [json.loads(run.stdout) for run in runs]
    real = path.resolve()
    expected = {name: os.stat(real / name).st_ino for name in (TRIE_FILE, GROUPS_FILE, INDEX_FILE)}
    assert maps[0] == maps[1] == expected


def test_all_jurisdiction_order_binds_unknown_clients() -> None:
    # An order's own action applies when a rule states none; "*" orders bind unknown codes.
    snapshot = PolicySnapshot.compile(
        [order(1, "de", ["subtree x.com"], action=Action.REFUSED, everywhere=True)], []
    )
    verdict = snapshot.match("x.com", "", NOW)
    assert verdict.blocked and verdict.action is Action.REFUSED
    assert snapshot.jurisdictions() == ()  # an all-jurisdiction order names no code
