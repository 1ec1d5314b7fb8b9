"""Snapshot directory leases: a sweep removes what dead processes left, never what a live
one holds (the holder is a real second process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clearwall.control.snapshotdir import claim, sweep

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from clearwall.control.snapshotdir import claim
    lease = claim(Path(sys.argv[1]))
    Path(sys.argv[1]).mkdir()
    print("held", flush=True)
    time.sleep(600)
    """
)


def _hold(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _snapshot(directory: Path, name: str, *, locked: bool = False) -> None:
    (directory / name).mkdir()
    (directory / name / "meta.json").write_text("{}")
    if locked:
        (directory / f"{name}.lock").touch()


@pytest.mark.parametrize(
    ("entries", "kept"),
    [
        # a dead gateway's snapshot, with or without its lock file: removed
        ({"policy-3-1": "dir+lock", "overlay-4-2": "dir"}, set()),
        # what a killed compiler left half-written beside a name: removed with it
        ({".policy-5-3.abc.x1y2": "dir", "policy-5-3.lock": "file"}, set()),
        ({".overlay-6-4.link.99": "file", ".policy-7-5.old.q": "dir"}, set()),
        # names that are not ours stay, whatever they are
        ({"mine": "dir", "policy.txt": "file", ".hidden": "file", "policy-x-1": "dir"},
         {"mine", "policy.txt", ".hidden", "policy-x-1"}),
    ],
)  # fmt: skip
def test_sweep_removes_what_no_process_holds(
    tmp_path: Path, entries: dict[str, str], kept: set[str]
) -> None:
    for name, kind in entries.items():
        if kind.startswith("dir"):
            _snapshot(tmp_path, name, locked=kind == "dir+lock")
        else:
            (tmp_path / name).write_text("")
    sweep(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == kept


def test_a_held_snapshot_survives_until_its_holder_dies(tmp_path: Path) -> None:
    held = tmp_path / "policy-9-1"
    holder = _hold(held)
    try:
        _snapshot(tmp_path, "policy-8-1", locked=True)  # a dead process's
        assert sweep(tmp_path) == ["policy-8-1"]
        assert held.is_dir() and (tmp_path / "policy-9-1.lock").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert sweep(tmp_path) == ["policy-9-1"]  # its lock died with it
    assert list(tmp_path.iterdir()) == []


def test_a_lease_removes_its_directory_and_lock(tmp_path: Path) -> None:
    path = tmp_path / "overlay-2-7"
    lease = claim(path)
    path.mkdir()
    (tmp_path / ".overlay-2-7.2.tmpdir").mkdir()  # a save interrupted mid-way
    assert sweep(tmp_path) == []  # held by this very process
    lease.release()
    lease.release()  # twice is harmless
    assert list(tmp_path.iterdir()) == []


def test_a_kept_snapshot_is_reused_whole_or_swept_never_both(tmp_path: Path) -> None:
    """A clean stop keeps its base unlocked (``Lease.keep``); the next start locks it
    (``try_claim``) before its sweep, which then leaves it whole; one it does not claim
    is swept like any leftover. A snapshot a live process holds cannot be claimed."""
    from clearwall.control.snapshotdir import try_claim

    kept = tmp_path / "policy-5-1"
    lease = claim(kept)
    kept.mkdir()
    (kept / "meta.json").write_text("{}")
    lease.keep()
    assert kept.is_dir() and (tmp_path / "policy-5-1.lock").exists()
    again = try_claim(kept)  # the next start takes it over
    assert again is not None
    _snapshot(tmp_path, "policy-4-1")  # an older one it does not reuse
    assert sweep(tmp_path) == ["policy-4-1"]
    assert (kept / "meta.json").read_text() == "{}"  # untouched, whole
    assert try_claim(kept) is None  # held (by this process, through ``again``)
    again.keep()  # a stop once more
    assert sweep(tmp_path) == ["policy-5-1"]  # unclaimed at a start: swept whole
    assert list(tmp_path.iterdir()) == []


def test_a_held_snapshot_cannot_be_claimed_by_another_process(tmp_path: Path) -> None:
    from clearwall.control.snapshotdir import try_claim

    held = tmp_path / "policy-9-1"
    holder = _hold(held)
    try:
        assert try_claim(held) is None  # another gateway's, in use
        assert held.is_dir()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lease = try_claim(held)  # its lock died with it: free to reuse
    assert lease is not None
    lease.release()
    assert list(tmp_path.iterdir()) == []
