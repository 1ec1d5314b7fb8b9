"""A killed gateway (SIGKILL, real subprocesses) leaves no child running, and the next
start removes every snapshot it left but the one whole snapshot it reuses (issue 22,
items 2 and 3; issue 17's restart reuse)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import pytest

from clearwall.control.snapshotdir import _owner
from dnsserver.gateways import (
    Gateway,
    alive,
    descendants,
    gateway,
    launch,
    make_store,
    wait_for,
)

Launch = Callable[..., Gateway]
__all__ = ["launch"]  # the fixture

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
    big_store: str, small_store: str, tmp_path: Path, workers: int, moment: str, launch: Launch
) -> None:
    store = big_store if moment == "start-up compile" else small_store
    gw = launch(store, tmp_path, "--workers", str(workers), "--snapshot-dir",
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


def _reused(gw: Gateway) -> str | None:
    """The saved snapshot a gateway's start reused, from its log."""
    found = re.search(r"reusing the saved snapshot ((?:policy|overlay)-\d+-\d+)", gw.output)
    return found.group(1) if found else None


def test_snapshots_killed_gateways_left_are_removed_or_reused_whole(
    small_store: str, tmp_path: Path, launch: Launch
) -> None:
    """Every start removes what killed gateways left, but the one whole snapshot it
    reuses (complete with its provenance, confirmed by the log, locked by it before the
    sweep): never both, and never one that a running gateway uses. A clean stop keeps
    its last whole snapshot and nothing else."""
    snapshots = Path(small_store.removeprefix("sqlite:///")).parent / "snapshots"
    mid = make_store(tmp_path / "mid.db", [f"n{i}.example" for i in range(100_000)])

    def names() -> set[str]:
        return (
            {n for p in snapshots.iterdir() if (n := _owner(p.name))}
            if snapshots.exists()
            else set()
        )

    left: set[str] = set()
    rounds = [(1, "serving"), (2, "serving"), (1, "compiling"), (1, "serving"), (1, "serving")]
    for i, (workers, moment) in enumerate(rounds):
        store = mid if moment == "compiling" else small_store
        if i == 1:
            # What a gateway killed in the middle of a compile leaves (no provenance, no
            # lock held), beside the whole snapshot the last kill left.
            (snapshots / "policy-9-1").mkdir()
            (snapshots / "policy-9-1" / "meta.json").write_text("{")
            left.add("policy-9-1")
        gw = launch(store, tmp_path, "--workers", str(workers), "--snapshot-dir",
                           str(snapshots))  # fmt: skip
        if moment == "compiling":
            wait_for(lambda gw=gw: 2 in descendants(gw.proc.pid).values(), 60, "the compile")
        else:
            gw.wait_serving()
            reused = _reused(gw)
            # This start removed what the last kill left, but for what it reuses.
            assert names() & left == ({reused} if reused else set())
            if i in (1, 4):  # after a kill while serving on the same store: reused
                assert reused is not None and reused in left
                assert (snapshots / reused / "provenance.json").is_file()
                assert gw.rcode("blocked.example") == dns.rcode.NXDOMAIN
            if i == 1:
                assert "left by stopped gateways" in gw.output and "policy-9-1" in gw.output
            if i == 3:  # the last kill left only another store's half-written compile
                assert reused is None and "compiled in" in gw.output
        gw.kill()
        time.sleep(0.5)  # its children die with it (see the test above)
        left = names()
        if moment == "serving":
            assert left  # something to remove or reuse at the next start
    with gateway(small_store, tmp_path, "--snapshot-dir", str(snapshots), name="b") as b:
        b.wait_serving()
        mine = names()
        assert mine and mine & left == {_reused(b)} and all(n.startswith("policy-") for n in mine)
        with gateway(small_store, tmp_path, "--snapshot-dir", str(snapshots), name="c") as c:
            c.wait_serving()
            both = names()
            assert mine < both  # c swept nothing b uses (nor reused it), and added its own
            assert _reused(c) is None
            assert b.rcode("blocked.example") == c.rcode("blocked.example") == dns.rcode.NXDOMAIN
    # Clean stops keep each gateway's last whole snapshot, with its provenance, unlocked.
    kept = names()
    assert kept == both and all((snapshots / n / "provenance.json").is_file() for n in kept)
    assert {p.name for p in snapshots.iterdir()} == kept | {f"{n}.lock" for n in kept}


CRASHPOINT = Path(__file__).parents[1] / "ledger" / "crashpoint.py"


def _killed_writer(db: Path, name: str, *, killed: bool = True) -> None:
    """``orders add`` blocking ``name``, SIGKILLed after its commit, before it published
    (or not killed: a writer without the ledger key does not publish anyway)."""
    rules = db.parent / f"{name}.txt"
    rules.write_text(name + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    done = subprocess.run(
        [sys.executable, str(CRASHPOINT), "after-commit", "orders", "add", "--db",
         f"sqlite:///{db}", "--authority", "1", "--title", "Late", "--legal-basis", "Act 2",
         "--reference", name, "--category", "court-order", "--action", "nxdomain",
         "--rules", str(rules), "--effective-from", "2020-01-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == (-signal.SIGKILL if killed else 0), done.stderr


def _published(db: Path) -> int:
    """The size of the checkpoint the store's public log shows."""
    return int((db.parent / f"{db.stem}-log" / "checkpoint").read_text().split("\n")[1])


def test_a_running_gateway_publishes_a_change_before_enforcing_it(tmp_path: Path) -> None:
    db = tmp_path / "cw.db"
    url = make_store(db, ["blocked.example"])
    with gateway(url, tmp_path, "--config", str(_quick_config(tmp_path))) as gw:
        gw.wait_serving()
        assert gw.rcode("blocked.example") == dns.rcode.NXDOMAIN
        before = _published(db)  # at start the whole log is published
        _killed_writer(db, "late.example")  # committed (one more entry), never published
        wait_for(lambda: gw.rcode("late.example") == dns.rcode.NXDOMAIN, 30, "enforcement")
        assert _published(db) == before + 1  # enforced only once the public log shows it


def test_a_gateway_that_cannot_publish_enforces_nothing_new(tmp_path: Path) -> None:
    db = tmp_path / "cw.db"
    url = make_store(db, ["blocked.example"])
    key, away = tmp_path / "cw.ledger.key", tmp_path / "key.away"
    with gateway(url, tmp_path, "--config", str(_quick_config(tmp_path))) as gw:
        gw.wait_serving()
        before = _published(db)
        key.rename(away)  # the log cannot be signed any more
        _killed_writer(db, "late.example", killed=False)
        gw.wait_log("the log cannot be published")
        assert gw.rcode("late.example") != dns.rcode.NXDOMAIN  # not on the public log
        assert gw.rcode("blocked.example") == dns.rcode.NXDOMAIN  # the last good policy
        assert _published(db) == before
        away.rename(key)
        wait_for(lambda: gw.rcode("late.example") == dns.rcode.NXDOMAIN, 60, "the retry")
        assert _published(db) == before + 1


def test_a_gateway_does_not_start_on_a_log_it_cannot_publish(
    tmp_path: Path, launch: Launch
) -> None:
    db = tmp_path / "cw.db"
    url = make_store(db, ["blocked.example"], publish=False)  # committed, never published
    (tmp_path / "cw.ledger.key").unlink()
    gw = launch(url, tmp_path)
    assert gw.proc.wait(60) == 1
    assert "clearwall: error: " in gw.output and "the log cannot be published" in gw.output
    assert "cw.ledger.key not found" in gw.output


def _quick_config(directory: Path) -> Path:
    """A config polling the store often (the default 0.25 s would do; this is faster)."""
    path = directory / "quick.toml"
    path.write_text("[dns]\nreload_interval = 0.1\n")
    return path
