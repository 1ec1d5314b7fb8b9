"""A killed gateway (SIGKILL, real subprocesses) leaves no child running and no snapshot
that the next start keeps (issue 22, items 2 and 3)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import dns.rcode
import pytest

from clearwall.dnsserver.snapshotdir import _owner
from dnsserver.gateways import (
    alive,
    descendants,
    gateway,
    make_store,
    start_gateway,
    wait_for,
)

BIG = 500_000  # rules: the start-up compile takes seconds, long enough to kill inside it


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("big")
    return make_store(directory / "cw.db", [f"host{i}.zone{i % 997}.example" for i in range(BIG)])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("small")
    return make_store(directory / "cw.db", ["blocked.example"])


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("workers", "moment"),
    [(1, "start-up compile"), (2, "start-up compile"), (2, "serving")],
)
def test_no_child_outlives_a_killed_gateway(
    big_store: str, small_store: str, tmp_path: Path, workers: int, moment: str
) -> None:
    store = big_store if moment == "start-up compile" else small_store
    gw = start_gateway(store, tmp_path, "--workers", str(workers), "--snapshot-dir",
                       str(tmp_path / "snapshots"))  # fmt: skip
    tree: dict[int, int] = {}
    try:
        if moment == "start-up compile":
            # The compiler process (depth 1) has forked the child that compiles (depth 2).
            wait_for(lambda: 2 in descendants(gw.proc.pid).values(), 120, "the compile")
        else:
            gw.wait_serving()
            wait_for(lambda: len(descendants(gw.proc.pid)) > workers, 30, "the workers")
        tree = descendants(gw.proc.pid)
        gw.kill()
        time.sleep(2)
        survivors = [pid for pid in tree if alive(pid)]
        assert not survivors, f"{len(survivors)} of {len(tree)} children survived: {tree}"
    finally:
        _reap([pid for pid in tree if alive(pid)])
        if gw.proc.poll() is None:
            gw.kill()


def test_snapshots_killed_gateways_left_are_removed_unless_in_use(
    small_store: str, tmp_path: Path
) -> None:
    snapshots = Path(small_store.removeprefix("sqlite:///")).parent / "snapshots"
    mid = make_store(tmp_path / "mid.db", [f"n{i}.example" for i in range(100_000)])

    def names() -> set[str]:
        return (
            {n for p in snapshots.iterdir() if (n := _owner(p.name))}
            if snapshots.exists()
            else set()
        )

    left: set[str] = set()
    for workers, moment in [(1, "serving"), (2, "serving"), (1, "compiling"), (1, "serving")]:
        store = mid if moment == "compiling" else small_store
        gw = start_gateway(store, tmp_path, "--workers", str(workers), "--snapshot-dir",
                           str(snapshots))  # fmt: skip
        if moment == "compiling":
            wait_for(lambda gw=gw: 2 in descendants(gw.proc.pid).values(), 60, "the compile")
        else:
            gw.wait_serving()
            assert not names() & left  # this start removed what the last kill left
        gw.kill()
        time.sleep(0.5)  # its children die with it (see the test above)
        left = names()
        if moment == "serving":
            assert left  # something to remove at the next start
    with gateway(small_store, tmp_path, "--snapshot-dir", str(snapshots), name="b") as b:
        b.wait_serving()
        mine = names()
        assert mine and not mine & left and all(n.startswith("policy-") for n in mine)
        assert "removed" in b.output and "left by stopped gateways" in b.output
        with gateway(small_store, tmp_path, "--snapshot-dir", str(snapshots), name="c") as c:
            c.wait_serving()
            both = names()
            assert mine < both  # c swept nothing b uses, and added its own
            assert b.rcode("blocked.example") == c.rcode("blocked.example") == dns.rcode.NXDOMAIN
    assert names() == set() and list(snapshots.iterdir()) == []  # clean stops remove all
