"""The on-demand compiler process."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.control.compiler import Compiler, CompileRequest
from clearwall.policy.snapshot import PolicySnapshot


def test_compiler_starts_on_demand_and_stops_when_idle(store: str, tmp_path: Path) -> None:
    compiler = Compiler(linger=0.0)
    out = compiler.compile(CompileRequest(store, "", tmp_path / "snap"))
    assert PolicySnapshot.load(out).tree_size == 0
    proc = compiler._proc
    assert proc is not None and proc.poll() is None  # kept for the next change of a burst
    compiler.expire()
    assert compiler._proc is None and proc.poll() is not None
    # A later change starts a new one.
    assert compiler.compile(CompileRequest(store, "", tmp_path / "snap2")) == tmp_path / "snap2"
    compiler.close()


def test_a_compile_without_witnesses_never_imports_httpx(store: str, tmp_path: Path) -> None:
    """The compiler publishes the log before each compile; with no witnesses configured
    that publish asks nobody, so the compiler process does not pay httpx's import (about
    45 ms of every gateway's first start)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import clearwall.control.compiler as c\n"
        "c._compiler_loop  # the imports the compiler process makes before its first compile\n"
        "import clearwall.policy.snapshot, clearwall.store.loader\n"
        f"c.compile_to(c.CompileRequest({store!r}, '', Path({str(tmp_path / 'snap')!r})))\n"
        "print('httpx' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert PolicySnapshot.load(tmp_path / "snap").tree_size >= 0


def test_the_compile_child_runs_without_the_cyclic_collector(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each compile runs in a forked child that exits afterwards, so the collector's
    passes over the rows it reads (about 0.1 s of a 1M-rule start) are switched off
    there; the compiler process itself keeps it."""
    import gc

    from clearwall.control import compiler

    def compile_to(*_args: object) -> None:
        raise RuntimeError(f"gc enabled: {gc.isenabled()}")

    monkeypatch.setattr(compiler, "compile_to", compile_to)
    request = compiler.CompileRequest(store, "", tmp_path / "snap")
    status, message = compiler._compile_in_fork(request)
    assert (status, message) == ("error", "RuntimeError: gc enabled: False")
    assert gc.isenabled()
