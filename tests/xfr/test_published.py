"""The primary serves what the public log shows: a writer SIGKILLed after its commit and
before publication leaves an entry no SOA serial covers until the log is published. The
primary publishes it, as a gateway does, and then its serial catches up; without the
ledger key it cannot, and the serial stays at the published size (issue 16 with
issue 22's publish-before-enforce)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from tests.ports import free_port

from clearwall.config import load_config
from clearwall.ledger.checkpoint import open_checkpoint
from clearwall.ledger.signing import parse_vkey
from clearwall.store import open_store
from clearwall.xfr.entry import launch_args
from cli.conftest import Run, make_runner

from .conftest import RunningPrimary

CRASHPOINT = Path(__file__).resolve().parents[1] / "ledger" / "crashpoint.py"
CENSORED = "xa.censored.rpz.clearwall."


def _order(run: Run, rules: Path, ref: str) -> None:
    run("orders", "add", "--authority", "1", "--title", ref, "--legal-basis", "Act 1",
        "--reference", ref, "--category", "court-order", "--action", "nxdomain",
        "--rules", str(rules), "--effective-from", "2020-01-01")  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made as an operator makes it (``clearwall init``, a jurisdiction, a court,
    one published order); each test works on a copy, its ledger files beside it."""
    base = tmp_path_factory.mktemp("template")
    run = make_runner(base, f"sqlite:///{base / 'cw.db'}")
    run("init")
    run("jurisdictions", "add", "xa", "--name", "A", "--network", "127.0.0.0/8")
    run("authorities", "add", "--name", "Court", "--kind", "court", "--jurisdiction", "xa")
    first = base / "first.txt"
    first.write_text("first.example\n")
    _order(run, first, "FIRST")
    return base


class Store:
    """A copy of the template: its URL, its ledger key, its published size and a kill."""

    def __init__(self, template: Path, tmp_path: Path) -> None:
        self.dir = tmp_path / "store"
        shutil.copytree(template, self.dir)
        self.url = f"sqlite:///{self.dir / 'cw.db'}"
        self.key = self.dir / "cw.ledger.key"
        self.away = tmp_path / "ledger.key.away"
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        self.run = make_runner(self.cwd, self.url)
        self.vkey = parse_vkey(self.run("ledger", "key").stdout.strip())

    def log_size(self) -> int:
        store = open_store(self.url)
        try:
            return store.log_size()
        finally:
            store.dispose()

    def published_size(self) -> int:
        note = (self.dir / "cw-log" / "checkpoint").read_text()
        return open_checkpoint(note, self.vkey).size

    def kill_writer_after_commit(self, key: Path | None = None) -> None:
        """``clearwall orders add`` SIGKILLed once its order is committed, before the
        ledger publishes anything of it; with ``key``, the writer's config names that
        ledger key (a writer without a key commits and never starts publishing)."""
        rules = self.cwd.parent / "killed.txt"
        rules.write_text("killed.example\n")
        config = self.cwd.parent / "writer.toml"
        config.write_text(
            f'[ledger]\nkey_file = "{key or self.key}"\ntiles_dir = "{self.dir / "cw-log"}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
        killed = subprocess.run(
            [sys.executable, str(CRASHPOINT), "after-commit", "orders", "add", "--db",
             self.url, "--config", str(config), "--authority", "1", "--title", "Killed",
             "--legal-basis", "Act 2", "--reference", "KILLED", "--category", "court-order",
             "--action", "nxdomain", "--rules", str(rules), "--effective-from", "2020-01-01"],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL, killed.stderr


def soa_serial(port: int) -> int:
    response = dns.query.udp(
        dns.message.make_query(CENSORED, "SOA"), "127.0.0.1", port=port, timeout=5
    )
    assert response.rcode() == dns.rcode.NOERROR
    return int(response.answer[0][0].serial)


def transferred(port: int) -> set[str]:
    """The owner names (relative to the zone) of the censored zone's AXFR."""
    return {
        rrset.name.to_text()
        for message in dns.query.xfr("127.0.0.1", CENSORED, port=port, timeout=10)
        for rrset in message.answer
    }


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_running_primary_serves_an_unpublished_commit_only_once_it_is_published(
    template: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(template, tmp_path)
    before = store.log_size()  # the template's jurisdiction and first order
    config = load_config(overrides={"xfr": {"listen": ["127.0.0.1:0"], "reload_interval": 0.05}})
    db = open_store(store.url)
    running = RunningPrimary(config, db).start()
    try:
        assert soa_serial(running.port) == store.published_size() == before
        # The key is removed while the primary runs: it must not publish (nor serve)
        # anything more, as a gateway's compiler would not.
        store.key.rename(store.away)
        caplog.set_level(logging.ERROR, logger="clearwall.xfr.primary")
        store.kill_writer_after_commit(key=store.away)  # the writer still has the key
        assert store.log_size() == before + 1  # committed ...
        assert store.published_size() == before  # ... and not published

        def failures() -> int:
            return sum("policy update failed" in r.getMessage() for r in caplog.records)

        def tried_twice_or_served() -> bool:
            return failures() >= 2 or soa_serial(running.port) != before

        wait_for(tried_twice_or_served, 60, "the primary to try (and fail) to publish twice")
        assert soa_serial(running.port) == before, "served what the log could not publish"
        # A failure that lasts is retried ever less often (one error line per try), not
        # every 0.05 s poll: about 3 tries in 3 s, against 60.
        time.sleep(3)
        assert failures() <= 10
        assert transferred(running.port) == {"@", "first.example"}
        assert store.published_size() == before

        store.away.rename(store.key)  # publishable again: the primary publishes, then serves
        wait_for(lambda: soa_serial(running.port) == before + 1, 60, "the serial to catch up")
        assert store.published_size() == before + 1
        assert "killed.example" in transferred(running.port)
    finally:
        running.stop()
        db.dispose()
    assert f"ok: {before + 1} entries" in store.run("ledger", "verify").stdout


def test_a_primary_started_after_the_kill_publishes_first_and_refuses_without_the_key(
    template: Path, tmp_path: Path
) -> None:
    store = Store(template, tmp_path)
    before = store.log_size()
    store.kill_writer_after_commit()
    store.key.rename(store.away)
    port = free_port()
    overrides = {"xfr": {"listen": [f"127.0.0.1:{port}"], "reload_interval": 0.05}}
    argv = launch_args(None, overrides, store.url, "INFO")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    alone = launch_args(None, overrides, store.url, "INFO", watch_stdin=False)
    refused = subprocess.run(
        alone, cwd=store.cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1, refused.stderr
    assert "clearwall: error:" in refused.stderr and "cw.ledger.key" in refused.stderr
    assert store.published_size() == before  # nothing was published, nothing served

    store.away.rename(store.key)
    proc = subprocess.Popen(
        argv, cwd=store.cwd, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:

        def serving() -> bool:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                return soa_serial(port) == before + 1
            except (OSError, dns.exception.Timeout):
                return False

        wait_for(serving, 60, "the primary to serve the published log")
        assert store.published_size() == before + 1
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the primary stops when its parent's end of the pipe closes
        proc.wait(30)


def test_export_watch_writes_an_unpublished_commit_only_once_it_is_published(
    template: Path, tmp_path: Path
) -> None:
    """The file path (Knot Resolver's) follows the same rule as the primary's serial."""
    store = Store(template, tmp_path)
    before = store.log_size()
    zones = tmp_path / "zones"
    censored = zones / f"{CENSORED}rpz"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearwall", "export", "rpz", "--jurisdiction", "xa",
             "--directory", str(zones), "--watch", "--interval", "0.05", "--db", store.url],
            cwd=store.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def serial() -> int | None:
            assert proc.poll() is None, log.read_text()
            try:
                text = censored.read_text()
            except FileNotFoundError:
                return None
            return int(text.split(" SOA ", 1)[1].split()[2])

        wait_for(lambda: serial() == before, 60, "the first zone files")
        store.key.rename(store.away)
        store.kill_writer_after_commit(key=store.away)

        def failed_or_written() -> bool:
            return "zone files not updated" in log.read_text() or serial() != before

        wait_for(failed_or_written, 60, "a failed publication")
        time.sleep(3)
        assert serial() == before, "wrote what the log could not publish"
        assert "killed.example" not in censored.read_text()
        assert log.read_text().count("zone files not updated") <= 10  # retried ever less often
        store.away.rename(store.key)
        wait_for(lambda: serial() == before + 1, 60, "the files to catch up")
        assert "killed.example" in censored.read_text()
        assert store.published_size() == before + 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
