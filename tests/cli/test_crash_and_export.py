"""Crash safety of ``orders add`` (kill -9 mid-import) and export → re-import equivalence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clearwall.formats import parse_file
from clearwall.model import Decision
from clearwall.store import PolicyService, open_store, schema
from clearwall.store.loader import build_snapshot, load_policy

from .conftest import Run, cli_env, make_runner
from .test_policy_commands import add_order, setup_policy


def store_counts(url: str) -> tuple[int, int, int, list[int]]:
    """(orders, rules, log size, rule_count of each order) read straight from the store."""
    store = open_store(url)
    try:
        with store.read() as conn:
            orders = conn.execute(select(func.count()).select_from(schema.orders)).scalar_one()
            rules = conn.execute(select(func.count()).select_from(schema.rules)).scalar_one()
            counts = list(conn.execute(select(schema.orders.c.rule_count)).scalars())
        return int(orders), int(rules), store.log_size(), [int(c) for c in counts]
    finally:
        store.dispose()


def test_kill_during_import_leaves_no_half_order(tmp_path: Path, store_url: str) -> None:
    run = make_runner(tmp_path, store_url)
    run("init")
    setup_policy(run)
    big = tmp_path / "big.txt"
    big.write_text("".join(f"host{i}.victim{i % 97}.example\n" for i in range(250_000)))
    env = cli_env(tmp_path, store_url)
    killed_mid_way = 0
    for delay in (1.0, 2.5, 4.0, 6.0):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clearwall",
                "orders",
                "add",
                "--authority",
                "1",
                "--title",
                "Big",
                "--legal-basis",
                "Act",
                "--reference",
                f"BIG-{delay}",
                "--category",
                "court-order",
                "--action",
                "nxdomain",
                "--rules",
                str(big),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_way += 1
        proc.wait(timeout=60)
        orders, rules, size, per_order = store_counts(store_url)
        # Whatever the moment of the kill: every order is whole and on the log (after
        # the two jurisdictions' entries).
        assert orders + 2 == size
        assert rules == sum(per_order)
        assert all(c == 250_000 for c in per_order)
    assert killed_mid_way, "every import finished before it could be killed"
    # The store is still writable and the log continues without a gap.
    small = tmp_path / "small.txt"
    small.write_text("after.example\n")
    before = store_counts(store_url)[2]
    add_order(run, small, ref="AFTER")
    assert store_counts(store_url)[2] == before + 1


@pytest.mark.parametrize("kind", ["rpz", "domains"])
def test_export_reimport_gives_same_decisions(
    sqlite_cli: Run, sqlite_url: str, tmp_path: Path, kind: str
) -> None:
    setup_policy(sqlite_cli)
    court = tmp_path / "court.txt"
    court.write_text("||blocked.example^\n||also.example^\n@@||ok.blocked.example^\n")
    exact = tmp_path / "exact.txt"
    exact.write_text("exact.example\nanother.example\n")
    add_order(sqlite_cli, court)
    sqlite_cli(
        "orders",
        "add",
        "--authority",
        "3",
        "--title",
        "Security",
        "--legal-basis",
        "AUP",
        "--reference",
        "SEC-1",
        "--category",
        "malware",
        "--action",
        "nxdomain",
        "--all-jurisdictions",
        "--rules",
        str(exact),
    )
    out = tmp_path / f"xa.{kind}"
    sqlite_cli("export", kind, "--jurisdiction", "xa", "--output", str(out))
    # Re-import the export as one order of a fresh store and compare decisions.
    url2 = f"sqlite:///{tmp_path / 'second.db'}"
    second = open_store(url2, migrate=True)
    svc = PolicyService(second)
    svc.add_jurisdiction("xa", "A", ["127.0.0.0/8"])
    authority = svc.add_authority("Court", "court", "xa")
    parsed = parse_file(out, format="rpz" if kind == "rpz" else "auto")
    assert not parsed.issues
    svc.add_order(
        authority.id,
        "re-import",
        "lb",
        "ref",
        "court-order",
        "nxdomain",
        parsed.rules,
        effective_from="2020-01-01",
    )
    original = build_snapshot(open_store(sqlite_url))
    copy = build_snapshot(second)
    names = [
        "blocked.example",
        "www.blocked.example",
        "also.example",
        "exact.example",
        "sub.exact.example",
        "another.example",
        "unlisted.example",
    ]
    if kind == "rpz":
        names.append("ok.blocked.example")  # exceptions survive RPZ (rpz-passthru.)
    for name in names:
        assert (original.match(name, "xa").decision is Decision.BLOCK) == (
            copy.match(name, "xa").decision is Decision.BLOCK
        ), name
    assert len(load_policy(second)[0]) == 1
