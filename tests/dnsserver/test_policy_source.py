"""The control plane's light parts: the SQLite version poll and the on-demand compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from clearwall.dnsserver.policy_source import Compiler, _sqlite_log_size
from clearwall.policy.snapshot import PolicySnapshot
from clearwall.store.db import open_store


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cw.db'}"
    open_store(url, migrate=True).engine.dispose()
    return url


def test_sqlite_version_poll_matches_the_store(store: str) -> None:
    assert _sqlite_log_size(store) == open_store(store).log_size()


def test_sqlite_version_poll_takes_relative_urls(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default store URL (sqlite:///var/clearwall.db) is relative
    assert _sqlite_log_size("sqlite:///cw.db") == 0


@pytest.mark.parametrize(
    "url", ["sqlite:///nowhere/x.db", "postgresql://h/db", "sqlite://", "sqlite:///x.db?mode=ro"]
)
def test_anything_else_is_left_to_the_store(url: str) -> None:
    assert _sqlite_log_size(url) is None  # the store opens it, or explains why it cannot


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
