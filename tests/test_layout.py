"""A store's files are found from the store and the config, never from the working directory."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from clearwall.config import LedgerConfig, Secondary, XfrConfig, load_config
from clearwall.errors import ConfigError
from clearwall.layout import resolve, resolve_ledger, resolve_xfr, snapshot_dir, sqlite_file


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////srv/cw/store.db", "/srv/cw/store.db"),
        ("sqlite:////srv/cw/store.db?mode=ro", "/srv/cw/store.db"),
        ("sqlite+pysqlite:////srv/cw/store.db", "/srv/cw/store.db"),
        ("sqlite:///rel/store.db", "CWD/rel/store.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql://cw@db/cw", None),
        ("postgresql+psycopg://cw@/cw?host=/run/postgresql", None),
    ],
)
def test_sqlite_file(url: str, expected: str | None) -> None:
    want = None if expected is None else Path(expected.replace("CWD", os.getcwd()))
    assert sqlite_file(url) == want


def test_a_sqlite_store_keeps_its_ledger_beside_its_file(tmp_path: Path) -> None:
    ledger = resolve_ledger(LedgerConfig(), f"sqlite:///{tmp_path}/a/cw.db")
    assert ledger.key_file == tmp_path / "a" / "cw.ledger.key"
    assert ledger.tiles_dir == tmp_path / "a" / "cw-log"
    assert snapshot_dir(f"sqlite:///{tmp_path}/a/cw.db", LedgerConfig()) == tmp_path / "a" / (
        "snapshots"
    )
    # Two stores in one directory: two ledgers.
    other = resolve_ledger(LedgerConfig(), f"sqlite:///{tmp_path}/a/other.db")
    assert {other.key_file, other.tiles_dir}.isdisjoint({ledger.key_file, ledger.tiles_dir})


@pytest.mark.parametrize(
    ("key", "tiles", "missing"),
    [
        (None, None, "[ledger] key_file and tiles_dir must be set"),
        ("/srv/k", None, "[ledger] tiles_dir must be set"),
        (None, "/srv/log", "[ledger] key_file must be set"),
    ],
)
def test_a_postgresql_store_needs_its_ledger_paths(
    key: str | None, tiles: str | None, missing: str
) -> None:
    config = LedgerConfig(
        key_file=None if key is None else Path(key),
        tiles_dir=None if tiles is None else Path(tiles),
    )
    with pytest.raises(ConfigError) as info:
        resolve_ledger(config, "postgresql://cw:secret@db.example/cw")
    assert missing in str(info.value)
    assert "secret" not in str(info.value)


def test_configured_paths_win(tmp_path: Path) -> None:
    config = LedgerConfig(key_file=tmp_path / "k", tiles_dir=tmp_path / "t")
    for url in ("postgresql://cw@db/cw", f"sqlite:///{tmp_path}/cw.db"):
        ledger = resolve_ledger(config, url)
        assert (ledger.key_file, ledger.tiles_dir) == (tmp_path / "k", tmp_path / "t")
    assert snapshot_dir("postgresql://cw@db/cw", config) == tmp_path / "snapshots"


def test_relative_paths_in_a_config_file_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "clearwall.toml").write_text(
        '[ledger]\nkey_file = "keys/ledger.key"\ntiles_dir = "/srv/log"\n'
    )
    monkeypatch.chdir(tmp_path)  # neither the cwd nor a relative --config path matters
    config = load_config(Path("etc/clearwall.toml"))
    assert config.ledger.key_file == Path("etc/keys/ledger.key")
    assert config.ledger.tiles_dir == Path("/srv/log")
    resolved = resolve_ledger(config.ledger, "postgresql://cw@db/cw")
    assert resolved.key_file == etc / "keys" / "ledger.key"
    # Flags (overrides) are command-line paths, taken as given.
    flagged = load_config(Path("etc/clearwall.toml"), {"ledger": {"key_file": "k"}})
    assert flagged.ledger.key_file == Path("k")


def test_an_empty_path_means_the_default(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[ledger]\nkey_file = ""\n')
    assert load_config(path).ledger.key_file is None
    path.write_text("[ledger]\nkey_file = 3\n")
    with pytest.raises(ConfigError, match=r"\[ledger\] key_file: expected a path"):
        load_config(path)


def test_a_sqlite_store_keeps_its_tsig_keys_beside_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default never depends on where a command runs
    xfr = resolve_xfr(XfrConfig(), f"sqlite:///{tmp_path}/a/cw.db")
    assert xfr.keys_path() == tmp_path / "a" / "cw.xfr.keys"
    other = resolve_xfr(XfrConfig(), f"sqlite:///{tmp_path}/a/other.db")
    assert other.keys_path() == tmp_path / "a" / "other.xfr.keys"
    # A relative store URL is a command-line path: from the working directory, then absolute.
    assert resolve_xfr(XfrConfig(), "sqlite:///var/cw.db").keys_path() == (
        tmp_path / "var" / "cw.xfr.keys"
    )
    config = resolve(load_config(), f"sqlite:///{tmp_path}/a/cw.db")
    assert (config.ledger.key_file, config.xfr.keys_file) == (
        tmp_path / "a" / "cw.ledger.key",
        tmp_path / "a" / "cw.xfr.keys",
    )


def test_a_postgresql_store_has_tsig_keys_only_where_the_config_says(tmp_path: Path) -> None:
    url = "postgresql://cw:secret@db.example/cw"
    unset = resolve_xfr(XfrConfig(), url)
    assert unset.keys_file is None  # no keys: the primary admits secondaries by address
    with pytest.raises(ConfigError, match=r"\[xfr\] keys_file must be set"):
        unset.keys_path()  # what `fleet key` and `fleet config --tsig` run into
    signed = XfrConfig(secondaries=(Secondary.parse("192.0.2.7 key sec1"),))
    with pytest.raises(ConfigError, match=r"\[xfr\] keys_file must be set"):
        resolve_xfr(signed, url)
    named = dataclasses.replace(signed, keys_file=tmp_path / "xfr.keys")
    assert resolve_xfr(named, url).keys_path() == tmp_path / "xfr.keys"
    assert resolve_xfr(named, f"sqlite:///{tmp_path}/s/cw.db").keys_path() == tmp_path / "xfr.keys"


def test_a_relative_keys_file_counts_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "clearwall.toml").write_text('[xfr]\nkeys_file = "keys/xfr.keys"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("etc/clearwall.toml"))
    resolved = resolve_xfr(config.xfr, f"sqlite:///{tmp_path}/store/cw.db")
    assert resolved.keys_path() == etc / "keys" / "xfr.keys"
    (etc / "clearwall.toml").write_text('[xfr]\nkeys_file = ""\n')
    assert load_config(etc / "clearwall.toml").xfr.keys_file is None
