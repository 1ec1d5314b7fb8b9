"""``clearwall serve --web off`` runs the jobs: an expired order is logged, a due
subscription refreshed (from a local HTTP server), by a real gateway subprocess."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.rcode
import pytest

from clearwall.config import LedgerConfig
from clearwall.jobs.process import NICE
from clearwall.layout import resolve_ledger
from clearwall.ledger import entries
from clearwall.ledger.entries import OrderAmended, OrderExpired
from clearwall.ledger.log import TransparencyLog
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, Store, open_store
from clearwall.store.reader import PolicyReader
from dnsserver.gateways import Gateway, children, launch, make_store

__all__ = ["launch"]  # the fixture

WAIT = 60.0  # seconds: start-up compile and the first run of the jobs, on a loaded machine


def wait_for(what: str, check: Callable[[], bool], gw: Gateway) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` with the gateway's log."""
    deadline = time.monotonic() + WAIT
    while not check():
        assert gw.proc.poll() is None, f"gateway exited:\n{gw.output}"
        assert time.monotonic() < deadline, f"{what} did not happen:\n{gw.output}"
        time.sleep(0.2)


def logged(url: str, kind: type[entries.Event]) -> list[entries.Event]:
    """The store's log entries of one type."""
    store = Store(url)
    try:
        return [
            e
            for e in map(entries.parse, (x.data for x in store.log_entries()))
            if isinstance(e, kind)
        ]
    finally:
        store.dispose()


def service(url: str) -> tuple[PolicyService, Store]:
    """The write path over the store at ``url``, publishing each write as serve would."""
    store = open_store(url)
    tlog = TransparencyLog(store, resolve_ledger(LedgerConfig(), url))

    def publish() -> None:
        tlog.sync()

    return PolicyService(store, after_commit=publish), store


def _jobs_children(gw: Gateway) -> list[int]:
    """The gateway's children that run jobs (``python -m clearwall.jobs``)."""
    found = []
    for pid in children(gw.proc.pid):
        with contextlib.suppress(OSError):
            if b"clearwall.jobs" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def _a_jobs_run(gw: Gateway) -> int:
    """The pid of a jobs run of ``gw``, watched for from its start (a run lives for its
    interpreter's and SQLAlchemy's start-up at least, hundreds of polls)."""
    deadline = time.monotonic() + WAIT
    while not (found := _jobs_children(gw)):
        assert gw.proc.poll() is None, f"gateway exited:\n{gw.output}"
        assert time.monotonic() < deadline, f"no jobs run seen:\n{gw.output}"
        time.sleep(0.005)
    return found[0]


def stop(gw: Gateway) -> str:
    """SIGTERM the gateway and return its whole log."""
    gw.proc.send_signal(signal.SIGTERM)
    gw.proc.wait(30)
    return gw.output


def test_an_order_past_its_sunset_is_logged_with_the_web_app_off(
    tmp_path: Path, launch: Callable[..., Gateway]
) -> None:
    url = make_store(tmp_path / "cw.db", ["kept.example"])
    svc, store = service(url)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    sunset = svc.add_order(
        1, "Order ending now", "Act s.2", "TT-2", "court-order", "nxdomain",
        [RuleSpec(RuleKind.EXACT, "ending.example")], effective_from="2020-01-01", expires=soon,
    )  # fmt: skip
    store.dispose()
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.5)
    assert logged(url, OrderExpired) == []

    gw = launch(url, tmp_path, web="off")
    # The first batch is due at once: it runs in a child of the gateway, at a lower
    # priority than the gateway (it never takes its CPU).
    run = _a_jobs_run(gw)
    own = os.getpriority(os.PRIO_PROCESS, gw.proc.pid)
    assert os.getpriority(os.PRIO_PROCESS, run) == min(19, own + NICE)
    gw.wait_serving()
    wait_for("the expiry entry", lambda: len(logged(url, OrderExpired)) == 1, gw)
    # Between runs nothing beside the gateway holds the database layer or keeps time:
    # the run exited, and the gateway itself never loaded SQLAlchemy.
    wait_for("the run's exit", lambda: not _jobs_children(gw), gw)
    assert "sqlalchemy" not in Path(f"/proc/{gw.proc.pid}/maps").read_text()
    [expired] = logged(url, OrderExpired)
    assert expired.order_id == sunset.id
    out = stop(gw)
    assert f"job expire: expired 1 order(s): {sunset.id}" in out
    assert gw.proc.returncode == 0, out


class _List(http.server.BaseHTTPRequestHandler):
    body = b"refreshed.example\nalso-refreshed.example\n"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def list_url() -> Iterator[str]:
    """A list served over HTTP on loopback."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _List)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/list.txt"
    finally:
        server.shutdown()
        server.server_close()


def test_a_due_subscription_is_refreshed_and_enforced_with_the_web_app_off(
    tmp_path: Path, launch: Callable[..., Gateway], list_url: str
) -> None:
    url = make_store(tmp_path / "cw.db", ["kept.example"])
    svc, store = service(url)
    sub = svc.add_subscription(1, list_url, "domains", 3600)
    store.dispose()
    # The list is on loopback: an operator allows internal sources for background refreshes.
    config = tmp_path / "clearwall.toml"
    config.write_text("[web]\nsubscriptions_fetch_internal = true\n")

    gw = launch(url, tmp_path, "--config", str(config), web="off")
    gw.wait_serving()
    wait_for("the amendment", lambda: len(logged(url, OrderAmended)) == 1, gw)
    wait_for(
        "the refreshed list blocked",
        lambda: gw.rcode("refreshed.example") == dns.rcode.NXDOMAIN,
        gw,
    )
    reader = PolicyReader(Store(url))
    [after] = reader.subscriptions(1)
    assert after.id == sub.id and after.last_status.startswith("ok: 2 rules")
    assert {r.value for r in reader.order_rules(1)} == {
        "refreshed.example",
        "also-refreshed.example",
    }
    reader.store.dispose()
    out = stop(gw)
    assert f"job refresh: refreshed 1 subscription(s): {sub.id}" in out
    assert gw.proc.returncode == 0, out
