"""Fixtures for CLI tests: run ``python -m clearwall`` as a real subprocess on a real store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(cwd: Path, db_url: str) -> dict[str, str]:
    """The environment of a CLI run against ``db_url``: no stray CLEARWALL_* settings, and
    for a PostgreSQL store a config in ``cwd`` naming its ledger directory (such a store
    has no file to keep its ledger beside)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    env["CLEARWALL_DB"] = db_url
    env["COLUMNS"] = "200"
    if "CLEARWALL_DATA" in os.environ:
        env["CLEARWALL_DATA"] = os.environ["CLEARWALL_DATA"]
    if not db_url.startswith("sqlite"):
        config = cwd / "clearwall.toml"
        config.write_text('[ledger]\nkey_file = "ledger.key"\ntiles_dir = "log"\n')
        env["CLEARWALL_CONFIG"] = str(config)
    return env


def make_runner(cwd: Path, db_url: str, env: dict[str, str | None] | None = None) -> Run:
    """A function running the CLI in ``cwd`` against ``db_url``; returns the finished process.
    ``env`` sets (or with None removes) variables of ``cli_env``'s environment."""
    base = cli_env(cwd, db_url)
    for name, value in (env or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    env_of_runs = base

    def run(
        *args: str, ok: bool | None = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "clearwall", *args],
            cwd=cwd,
            env=env_of_runs,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=180,
        )
        if ok is True:
            assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stderr}"
        elif ok is False:
            assert proc.returncode != 0, f"{args} unexpectedly succeeded:\n{proc.stdout}"
        return proc

    return run


@pytest.fixture
def cli(tmp_path: Path, store_url: str) -> Run:
    """The CLI against a fresh store (SQLite and PostgreSQL), initialized in ``tmp_path``."""
    run = make_runner(tmp_path, store_url)
    run("init")
    return run


@pytest.fixture
def sqlite_cli(tmp_path: Path, sqlite_url: str) -> Run:
    """The CLI against a fresh, initialized SQLite store only."""
    run = make_runner(tmp_path, sqlite_url)
    run("init")
    return run
