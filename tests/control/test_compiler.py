"""The on-demand compiler process."""

from __future__ import annotations

from pathlib import Path

from clearwall.control.compiler import Compiler
from clearwall.policy.snapshot import PolicySnapshot


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
