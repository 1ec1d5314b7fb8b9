"""Kill the writer (SIGKILL, a real ``clearwall orders add``) at each step of the log's
write path: ``ledger verify`` reports the unpublished tail with its size, and the next
start of ``clearwall serve`` (with or without the web app) publishes every committed
entry before it enforces the order (issue 22, item 1)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.rcode
import pytest
from tests.ports import free_port

from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.signing import parse_vkey
from cli.conftest import Run, make_runner
from dnsserver.gateways import Gateway, launch, wait_for
from ledger.crashpoint import STEPS

CRASHPOINT = Path(__file__).with_name("crashpoint.py")
__all__ = ["launch"]  # the fixture


def _order(run: Run, rules: Path, ref: str) -> None:
    run("orders", "add", "--authority", "1", "--title", ref, "--legal-basis", "Act 1",
        "--reference", ref, "--category", "court-order", "--action", "nxdomain",
        "--rules", str(rules), "--effective-from", "2020-01-01")  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one published order; each test works on a copy (its ledger files are
    beside it, so the copy is a whole store)."""
    base = tmp_path_factory.mktemp("template")
    run = make_runner(base, f"sqlite:///{base / 'cw.db'}")
    run("init")
    run("jurisdictions", "add", "xa", "--name", "A", "--network", "127.0.0.0/8")
    run("authorities", "add", "--name", "Court", "--kind", "court", "--jurisdiction", "xa")
    first = base / "first.txt"
    first.write_text("first.example\n")
    _order(run, first, "FIRST")
    return base


def _log_size(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT size FROM log_head").fetchone()[0])


def _published_size(store: Path, vkey: str) -> int:
    note = (store / "cw-log" / "checkpoint").read_text()
    return open_checkpoint(note, parse_vkey(vkey)).size


def _kill_at(step: str, store: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    rules = cwd.parent / "killed.txt"
    rules.write_text("killed.example\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    return subprocess.run(
        [sys.executable, str(CRASHPOINT), step, "orders", "add", "--db",
         f"sqlite:///{store / 'cw.db'}", "--authority", "1", "--title", "Killed",
         "--legal-basis", "Act 2", "--reference", "KILLED", "--category", "court-order",
         "--action", "nxdomain", "--rules", str(rules), "--effective-from", "2020-01-01"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("step", "web"), [(step, i % 2 == 1) for i, step in enumerate(STEPS)], ids=STEPS
)
def test_a_kill_at_each_step_is_reported_then_published_at_the_next_start(
    template: Path, tmp_path: Path, step: str, web: bool, launch: Callable[..., Gateway]
) -> None:
    store, cwd = tmp_path / "store", tmp_path / "cwd"
    shutil.copytree(template, store)
    cwd.mkdir()
    run = make_runner(cwd, f"sqlite:///{store / 'cw.db'}")
    vkey = run("ledger", "key").stdout.strip()
    before = _log_size(store / "cw.db")  # the template's jurisdiction and first order
    after = before + 1

    killed = _kill_at(step, store, cwd)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _log_size(store / "cw.db") == after  # the order is committed whatever the step
    verify = run("ledger", "verify", ok=None)
    if step == "before-record":  # the public log is complete; only the store's row lags
        assert verify.returncode == 0, verify.stderr
        assert _published_size(store, vkey) == after
    else:
        assert verify.returncode == 1
        assert (
            f"UNPUBLISHED: unpublished tail: entries {before}..{before} (1 of {after}) are "
            "committed but no published signed checkpoint covers them"
        ) in verify.stderr
        assert "TAMPERED" not in verify.stderr
        assert _published_size(store, vkey) == before

    web_port = free_port()
    gw = launch(f"sqlite:///{store / 'cw.db'}", cwd, web=f"127.0.0.1:{web_port}" if web else "off")
    try:
        gw.wait_serving()
        # Serving means the start-up compile ran, and it publishes before it compiles.
        assert _published_size(store, vkey) == after
        assert gw.rcode("killed.example") == dns.rcode.NXDOMAIN
        if web:
            url = f"http://127.0.0.1:{web_port}/log/checkpoint"

            def answered() -> bool:
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
                    return True
                return False

            wait_for(answered, 30, "the web app")
            with urllib.request.urlopen(url, timeout=2) as response:
                assert open_checkpoint(response.read(), parse_vkey(vkey)).size == after
    finally:
        gw.proc.send_signal(signal.SIGTERM)
        gw.proc.wait(30)
    assert f"ok: {after} entries" in run("ledger", "verify").stdout  # rule files included
    assert list((store / "cw-log" / "rules").glob("2-*.txt"))
    assert not any((store / "cw-log" / ".tmp").iterdir())  # no torn file left behind


def _saved_snapshot(store: Path) -> Path:
    """What a gateway leaves beside its store at a clean stop: its last whole snapshot,
    with its provenance (the commands reuse it once the log confirms it)."""
    from clearwall.config import LedgerConfig
    from clearwall.control.policy_source import PolicySource
    from clearwall.layout import snapshot_dir

    url = f"sqlite:///{store / 'cw.db'}"
    source = PolicySource(url, "", snapshot_dir(url, LedgerConfig()), 1.0, lambda *_: None)
    saved = source.start_policy()
    source.stop()
    assert (saved / "provenance.json").is_file()
    return saved


@pytest.mark.parametrize("saved", [False, True], ids=["compiled", "saved-snapshot"])
@pytest.mark.parametrize("command", ["check", "export"])
def test_check_and_export_read_the_policy_the_public_log_shows(
    template: Path, tmp_path: Path, command: str, saved: bool
) -> None:
    """Both publish first and read no further than the published checkpoint, whether
    they compile or reuse the snapshot a gateway saved (then the entries since are
    compiled over it, once published)."""
    store, cwd = tmp_path / "store", tmp_path / "cwd"
    shutil.copytree(template, store)
    cwd.mkdir()
    run = make_runner(cwd, f"sqlite:///{store / 'cw.db'}")
    vkey = run("ledger", "key").stdout.strip()
    after = _log_size(store / "cw.db") + 1
    if saved:
        kept = _saved_snapshot(store)
    assert _kill_at("after-commit", store, cwd).returncode == -signal.SIGKILL
    argv = (
        ("check", "killed.example", "--jurisdiction", "xa")
        if command == "check"
        else ("export", "domains", "--jurisdiction", "xa")
    )
    key, away = store / "cw.ledger.key", tmp_path / "key.away"
    key.rename(away)  # the log cannot be published: no policy past it is shown
    failed = run(*argv, ok=False)
    assert "ledger key file" in failed.stderr and "not found" in failed.stderr
    away.rename(key)
    shown = run(*argv).stdout  # publishes first, then reads what the log shows
    assert "killed.example" in shown
    assert _published_size(store, vkey) == after
    if saved:
        assert (kept / "provenance.json").is_file()  # read, never changed or removed
        if command == "check":  # the saved snapshot's own order, under the overlay
            first = run("check", "first.example", "--jurisdiction", "xa", "--json").stdout
            assert '"decision": "block"' in first
