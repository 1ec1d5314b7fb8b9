"""A store is one thing: its ledger key and public log live with it, and every command finds
them from any directory (issue 13, section 2)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import typer.main
from tests.ports import free_port

from clearwall.cli.main import build_app
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.signing import parse_vkey

from .conftest import Run, make_runner
from .test_policy_commands import add_order, setup_policy

# Commands that never open a store: they measure a network or check a proof bundle.
STORELESS = {"probe", "probe-helper", "ledger verify-proof"}
# The witness is another service: its own store (--db, $CLEARWALL_WITNESS_DB) and key,
# never a policy store, and no clearwall config.
WITNESS = "witness "


def commands() -> list[tuple[str, set[str]]]:
    """Every leaf command of ``clearwall`` with the option names it takes."""
    out: list[tuple[str, set[str]]] = []

    def walk(cmd: object, prefix: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{prefix} {name}".strip())
            return
        names = {o for p in getattr(cmd, "params", []) for o in getattr(p, "opts", [])}
        out.append((prefix, names))

    walk(typer.main.get_command(build_app()), "")
    return out


def test_every_store_command_takes_db_and_config() -> None:
    missing = [
        name
        for name, options in commands()
        if name not in STORELESS
        and not name.startswith(WITNESS)
        and not {"--db", "--config"} <= options
    ]
    assert not missing, f"commands without --db/--config: {missing}"


def runner(cwd: Path, db: Path, config: Path | None = None) -> Run:
    """The CLI in ``cwd`` with ``--db`` (and ``--config``) given on every command line."""
    run = make_runner(cwd, "sqlite://unused")
    extra = ["--db", f"sqlite:///{db}"] + (["--config", str(config)] if config else [])

    def with_db(*args: str, ok: bool | None = True, stdin: str | None = None):  # type: ignore[no-untyped-def]
        return run(*args, *extra, ok=ok, stdin=stdin)

    return with_db


def test_two_stores_created_from_one_directory_do_not_collide(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    rules = tmp_path / "rules.txt"
    rules.write_text("casino.example\n")
    first, second = runner(cwd, tmp_path / "a" / "cw.db"), runner(cwd, tmp_path / "b" / "cw.db")
    first("init")
    setup_policy(first)
    add_order(first, rules)
    second("init")  # used to fail: the first store's checkpoint of size 1 looked like data loss
    setup_policy(second)
    add_order(second, rules)
    add_order(second, rules, ref="R-2")
    # setup_policy logs its jurisdictions (jurisdiction-set entries) before the orders
    assert "ok: 3 entries" in first("ledger", "verify").stdout
    assert "ok: 4 entries" in second("ledger", "verify").stdout
    assert first("ledger", "key").stdout != second("ledger", "key").stdout
    for store in ("a", "b"):
        assert (tmp_path / store / "cw.ledger.key").is_file()
        assert (tmp_path / store / "cw-log" / "checkpoint").is_file()
    assert list(cwd.iterdir()) == []  # nothing lands in the directory commands ran from


def test_every_command_works_from_another_directory(tmp_path: Path) -> None:
    store, cwd, etc = tmp_path / "store", tmp_path / "cwd", tmp_path / "etc"
    for d in (cwd, etc):
        d.mkdir()
    config = etc / "clearwall.toml"
    config.write_text('[ledger]\norigin = "layout.test/log"\n[xfr]\nlisten = ["192.0.2.1:8054"]\n')
    rules = etc / "rules.txt"
    rules.write_text("casino.example\nbet.example\n")
    more = etc / "more.txt"
    more.write_text("poker.example\n")
    run = runner(cwd, store / "cw.db", config)
    script: list[tuple[str, ...]] = [
        ("init",),
        ("config", "validate"),
        ("config", "show"),
        ("jurisdictions", "add", "xa", "--name", "A", "--network", "127.0.0.0/8"),
        ("jurisdictions", "list"),
        ("jurisdictions", "show", "xa"),
        ("authorities", "add", "--name", "Court", "--kind", "court", "--jurisdiction", "xa"),
        ("authorities", "list"),
        ("authorities", "show", "1"),
        ("orders", "add", "--authority", "1", "--title", "T", "--legal-basis", "L",
         "--reference", "R", "--category", "court-order", "--action", "nxdomain",
         "--rules", str(rules), "--effective-from", "2020-01-01"),
        ("orders", "amend", "1", "--rules", str(more), "--reason", "more"),
        ("orders", "list"),
        ("orders", "show", "1", "--rules"),
        ("orders", "expire"),
        ("jobs", "run", "all"),
        ("check", "casino.example", "--client", "127.0.0.1"),
        ("export", "rpz", "--jurisdiction", "xa"),
        ("fleet", "key", "resolver1"),
        ("fleet", "config", "pdns-recursor", "--jurisdiction", "xa", "--tsig", "resolver1"),
        ("ledger", "key"),
        ("ledger", "sync"),
        ("ledger", "verify"),
        ("ledger", "prove", "casino.example", "--jurisdiction", "xa"),
        ("tokens", "create", "--role", "auditor"),
        ("tokens", "list"),
        ("tokens", "revoke", "1"),
        ("orders", "revoke", "1", "--reason", "withdrawn"),
        ("ledger", "verify"),
    ]  # fmt: skip
    outputs = {" ".join(argv[:2]): run(*argv).stdout for argv in script}
    assert outputs["ledger key"].startswith("layout.test/log+")
    assert '"key_file": "' + str(store / "cw.ledger.key") in outputs["config show"]
    assert '"keys_file": "' + str(store / "cw.xfr.keys") in outputs["config show"]
    assert "BLOCKED" in outputs["check casino.example"]
    # a jurisdiction, an order, its amendment and its revocation
    assert "ok: 4 entries" in outputs["ledger verify"]
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith("cw.db-")) == [
        "cw-log",
        "cw.db",
        "cw.ledger.key",
        "cw.xfr.keys",
        "tls",  # the encrypted listeners' self-signed pair (issue 19)
    ]
    # The TSIG key `fleet key` made is the store's, and `fleet config` finds it there (and
    # the primary's address in the config's [xfr] listen), from another directory.
    keys = store / "cw.xfr.keys"
    assert keys.stat().st_mode & 0o777 == 0o600
    name, algorithm, secret = keys.read_text().split()
    assert (name, algorithm, outputs["fleet key"].strip()) == ("resolver1", "hmac-sha256", name)
    assert f'tsigsecret="{secret}"' in outputs["fleet config"]
    assert 'rpzPrimary("192.0.2.1:8054", "xa.censored.rpz.clearwall."' in outputs["fleet config"]
    assert list(cwd.iterdir()) == []


def _get(url: str, deadline: float, proc: subprocess.Popen[str]) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bytes(response.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serve_from_another_directory_serves_the_full_public_log(tmp_path: Path) -> None:
    store, cwd = tmp_path / "elsewhere", tmp_path / "cwd"
    for d in (store, cwd):
        d.mkdir()
    run = runner(store, store / "cw.db")  # set up from the store's own directory
    run("init")
    setup_policy(run)
    rules = tmp_path / "rules.txt"
    rules.write_text("casino.example\n")
    add_order(run, rules)
    add_order(run, rules, ref="R-2")
    vkey = run("ledger", "key").stdout.strip()
    web = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clearwall", "serve", "--db", f"sqlite:///{store / 'cw.db'}",
         "--dns", f"127.0.0.1:{free_port()}", "--web", f"127.0.0.1:{web}",
         "--upstream", "127.0.0.1:9"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        note = _get(f"http://127.0.0.1:{web}/log/checkpoint", time.monotonic() + 60, proc)
        cp = open_checkpoint(note, parse_vkey(vkey))
        assert cp.size == 4  # two jurisdictions, two orders
        bundle = _get(f"http://127.0.0.1:{web}/log/tile/entries/000.p/4", time.monotonic(), proc)
        assert b"order-published" in bundle
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert "not found" not in out, out
    assert not (cwd / "var").exists()


def test_a_store_of_the_old_var_layout_keeps_working(tmp_path: Path) -> None:
    """``make run``'s var/clearwall.db with var/ledger.key and var/log beside it (what the
    old cwd-relative defaults made) is found from anywhere, without a config."""
    old = tmp_path / "checkout"
    var = old / "var"
    var.mkdir(parents=True)
    legacy = old / "legacy.toml"  # the old defaults, as seen from the checkout
    legacy.write_text('[ledger]\nkey_file = "var/ledger.key"\ntiles_dir = "var/log"\n')
    before = runner(old, var / "clearwall.db", legacy)
    before("init")
    setup_policy(before)
    rules = tmp_path / "rules.txt"
    rules.write_text("casino.example\n")
    add_order(before, rules)
    vkey = before("ledger", "key").stdout
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    now = runner(cwd, var / "clearwall.db")
    assert now("ledger", "key").stdout == vkey
    add_order(now, rules, ref="R-2")
    assert "ok: 4 entries" in now("ledger", "verify").stdout  # two jurisdictions, two orders
    assert sorted(p.name for p in var.iterdir() if not p.name.startswith("clearwall.db-")) == [
        "clearwall.db",
        "ledger.key",
        "log",
        "tls",  # the encrypted listeners' self-signed pair (issue 19)
    ]
    # A new store in the same directory gets its own ledger, not the old store's.
    runner(cwd, var / "other.db")("init")
    assert (var / "other.ledger.key").is_file() and (var / "other-log").is_dir()


@pytest.mark.parametrize("case", ["another store's files", "a restored backup"])
def test_the_rollback_check_says_whose_files_are_whose(tmp_path: Path, case: str) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    rules = tmp_path / "rules.txt"
    rules.write_text("casino.example\n")
    a = runner(cwd, tmp_path / "a.db")
    a("init")
    setup_policy(a)
    if case == "a restored backup":
        add_order(a, rules)
        shutil.copy(tmp_path / "a.db", tmp_path / "backup.db")  # WAL checkpointed on close
        add_order(a, rules, ref="R-2")
        shutil.copy(tmp_path / "backup.db", tmp_path / "a.db")
        out = a("ledger", "sync", ok=False).stderr
        assert "has 3 entries but the public log in" in out  # two jurisdictions, one order
        assert "which extends this store's entries: committed entries were lost" in out
    else:
        add_order(a, rules)
        shared = tmp_path / "shared.toml"
        shared.write_text(f'[ledger]\nkey_file = "{tmp_path}/a.ledger.key"\ntiles_dir = "a-log"\n')
        out = runner(cwd, tmp_path / "b.db", shared)("init", ok=False).stderr
        assert "this store never published a checkpoint: those files belong to another" in out
    assert str(tmp_path / "a-log") in out
