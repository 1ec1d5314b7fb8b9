"""The annotated example config loads, and ``clearwall config`` validates and shows configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from clearwall.config import Config, load_config
from clearwall.layout import sqlite_file

from .conftest import make_runner

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "clearwall.toml"


def test_example_config_loads_and_states_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_config(EXAMPLE)
    # Its store is the checkout's var/clearwall.db from wherever it is used: the default
    # store (relative to the working directory) as seen from the checkout's root.
    monkeypatch.chdir(ROOT)
    assert sqlite_file(example.store.url) == sqlite_file(Config().store.url)
    assert dataclasses.replace(example, store=Config().store) == Config()


@pytest.mark.parametrize(
    ("text", "ok", "message"),
    [
        ('[store]\nurl = "sqlite:///x.db"\n', True, "ok"),
        ("[dns]\nworkers = 'two'\n", False, "[dns] workers"),
        ("[dns.cache]\nmax_entrys = 1\n", False, "unknown option(s): max_entrys"),
        ("[web]\nlisten = 'nowhere:80'\n", False, "[web] listen"),
        ("not toml at all [", False, "invalid TOML"),
    ],
)
def test_config_validate(tmp_path: Path, text: str, ok: bool, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    run = make_runner(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    proc = run("config", "validate", str(path), ok=ok)
    out = proc.stdout if ok else proc.stderr
    assert message in out
    if not ok:
        assert out.startswith("clearwall: error: ") and out.count("\n") == 1


def test_config_show_uses_the_db_precedence(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[store]\nurl = "sqlite:///from-config.db"\n')
    run = make_runner(tmp_path, "sqlite:///from-env.db")
    shown = json.loads(run("config", "show", "--config", str(config)).stdout)
    assert shown["store"]["url"] == f"sqlite:///{tmp_path}/from-config.db"  # beside the file
    assert shown["store"]["effective_url"] == "sqlite:///from-env.db"
    assert run("config", "validate", str(EXAMPLE)).stdout.strip().endswith(": ok")
