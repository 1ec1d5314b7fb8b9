"""``clearwall fleet key`` and ``fleet config`` find the store's TSIG keys from any
directory (beside a SQLite store, where the config says for PostgreSQL), and ``fleet
config`` takes the primary's address from the config's one ``[xfr] listen`` address."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import make_runner


def test_fleet_key_lives_with_the_store_not_the_working_directory(tmp_path: Path) -> None:
    store, cwd, etc = tmp_path / "store", tmp_path / "cwd", tmp_path / "etc"
    for d in (store, cwd, etc):
        d.mkdir()
    (etc / "clearwall.toml").write_text(f'[store]\nurl = "sqlite:///{store / "cw.db"}"\n')
    run = make_runner(cwd, "sqlite://unused", env={"CLEARWALL_DB": None})
    config = ("--config", "../etc/clearwall.toml")  # the store comes from the config
    run("init", *config)
    made = run("fleet", "key", "resolver1", *config)
    assert made.stdout == "resolver1\n"
    assert f"created: resolver1 (hmac-sha256) in {store / 'cw.xfr.keys'}" in made.stderr
    assert "exists: resolver1" in run("fleet", "key", "resolver1", *config).stderr
    secret = (store / "cw.xfr.keys").read_text().split()[2]
    lua = run("fleet", "config", "pdns-recursor", "--jurisdiction", "xa", "--primary",
              "192.0.2.1:8054", "--tsig", "resolver1", *config).stdout  # fmt: skip
    assert f'tsigsecret="{secret}"' in lua
    missing = run("fleet", "config", "bind", "--jurisdiction", "xa", "--primary",
                  "192.0.2.1", "--tsig", "nobody", *config, ok=False).stderr  # fmt: skip
    assert f"no TSIG key 'nobody' in {store / 'cw.xfr.keys'}" in missing
    assert list(cwd.iterdir()) == []  # nothing lands where the commands ran


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ('["192.0.2.1:8054"]', "primary: 192.0.2.1@8054"),
        ('"[2001:db8::53]:8054"', "primary: 2001:db8::53@8054"),
        ('["192.0.2.1"]', "primary: 192.0.2.1@53"),
        ("[]", "clearwall: error: give --primary IP:PORT: the config has no [xfr] listen"),
        (
            '["0.0.0.0:8054"]',
            "clearwall: error: give --primary IP:PORT: [xfr] listen is 0.0.0.0:8054, every "
            "address of the host; name the one this resolver reaches",
        ),
        (
            '["192.0.2.1:8054", "[2001:db8::53]:8054"]',
            "clearwall: error: give --primary IP:PORT: [xfr] listen has 2 addresses "
            "(192.0.2.1:8054, [2001:db8::53]:8054); name the one this resolver reaches",
        ),
    ],
)
def test_fleet_config_takes_the_primary_from_the_one_listen_address(
    tmp_path: Path, listen: str, expected: str
) -> None:
    cwd, etc = tmp_path / "cwd", tmp_path / "etc"
    for d in (cwd, etc):
        d.mkdir()
    (etc / "clearwall.toml").write_text(f"[xfr]\nlisten = {listen}\n")
    run = make_runner(cwd, f"sqlite:///{tmp_path / 'cw.db'}")
    done = run("fleet", "config", "unbound", "--jurisdiction", "xa", "--config",
               "../etc/clearwall.toml", ok=None)  # fmt: skip
    out = done.stdout if done.returncode == 0 else done.stderr
    assert expected in out
    assert done.returncode == (0 if expected.startswith("primary") else 1)
    # --primary wins over the config, whatever it lists.
    given = run("fleet", "config", "unbound", "--jurisdiction", "xa", "--config",
                "../etc/clearwall.toml", "--primary", "198.51.100.7:5300").stdout  # fmt: skip
    assert "primary: 198.51.100.7@5300" in given


def test_a_postgresql_store_has_keys_only_in_the_configured_file(
    tmp_path: Path, pg_url: str
) -> None:
    run = make_runner(tmp_path, pg_url)  # a config naming the ledger's paths (conftest)
    run("init")
    config = tmp_path / "clearwall.toml"
    unset = run("fleet", "key", "resolver1", ok=False).stderr
    assert "clearwall: error: [xfr] keys_file must be set to use TSIG keys" in unset
    tsig = run("fleet", "config", "bind", "--jurisdiction", "xa", "--primary", "192.0.2.1",
               "--tsig", "resolver1", ok=False).stderr  # fmt: skip
    assert "[xfr] keys_file must be set" in tsig
    # Without keys nothing needs the file: a resolver admitted by address is configured.
    assert "primaries port 53" in run("fleet", "config", "bind", "--jurisdiction", "xa",
                                      "--primary", "192.0.2.1").stdout  # fmt: skip
    base = config.read_text()
    config.write_text(base + '[xfr]\nsecondaries = ["192.0.2.7 key resolver1"]\n')
    invalid = run("config", "validate", ok=False).stderr
    assert "[xfr] keys_file must be set" in invalid
    config.write_text(base + '[xfr]\nkeys_file = "tsig/xfr.keys"\n')  # relative: to the file
    run("fleet", "key", "resolver1")
    assert (tmp_path / "tsig" / "xfr.keys").read_text().startswith("resolver1 hmac-sha256 ")
