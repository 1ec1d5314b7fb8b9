"""Registry -> mirrors -> gateways and an Unbound secondary, as real processes on loopback.

A registry (``clearwall serve`` with its web app serving ``/log/``) and two ISP
installations (``clearwall serve`` each, separate stores, each following the registry
with ``clearwall mirror add``); one ISP also feeds a real Unbound by zone transfer
(``serve --xfr``). An order published at the registry is enforced at both ISPs, with an
EDE citing the adopted order, and at the Unbound; its revocation propagates the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from clearwall.federation import records
from clearwall.ledger import entries
from clearwall.store import Store
from dnsserver.gateways import descendants
from federation.registries import Registry, make_store
from xfr.secondaries import ALLOWED_ADDRESS, Authoritative, Unbound, free_port, require

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(autouse=True)
def _installed() -> None:
    require("unbound", "nsd")


WAIT = 90.0  # seconds: start-up compiles and sync passes on a loaded 2-core machine


def clearwall(cwd: Path, *args: str) -> str:
    """Run ``clearwall ARGS`` as an operator would; its stdout (fails on exit != 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "clearwall", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


class Serve:
    """A ``clearwall serve`` subprocess logging to a file."""

    def __init__(self, cwd: Path, db: str, *args: str) -> None:
        self.port = free_port()
        self.log = cwd / f"serve-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clearwall", "serve", "--db", db,
                 "--dns", f"127.0.0.1:{self.port}", "--log-level", "INFO", *args],
                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def query(self, name: str) -> dns.message.Message | None:
        try:
            return dns.query.udp(
                dns.message.make_query(name, "A", use_edns=0),
                "127.0.0.1",
                port=self.port,
                timeout=1,
            )
        except (dns.exception.Timeout, OSError):
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            tree = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def wait_for(what: str, check: Callable[[], bool], *logs: Callable[[], str]) -> float:
    """Poll ``check`` until it holds; the seconds it took (fails after WAIT with logs)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > WAIT:
            pytest.fail(f"{what} did not happen:\n" + "\n----\n".join(f() for f in logs))
        time.sleep(0.1)
    return time.monotonic() - started


def verdict(reply: dns.message.Message | None) -> str:
    if reply is None:
        return "no answer"
    if reply.rcode() == dns.rcode.NXDOMAIN:
        return "nxdomain"
    addresses = [rr.address for rrset in reply.answer for rr in rrset if rrset.rdtype == 1]
    return (
        "allowed"
        if addresses == [ALLOWED_ADDRESS]
        else f"{dns.rcode.to_text(reply.rcode())} {addresses}"
    )


def ede(reply: dns.message.Message | None) -> tuple[int, dict[str, object]] | None:
    """The EDE code and its Structured DNS Error JSON, if the reply carries one."""
    for option in reply.options if reply is not None else ():
        if isinstance(option, dns.edns.EDEOption):
            return int(option.code), json.loads(option.text or "{}")
    return None


@pytest.fixture
def nsd(tmp_path: Path) -> Iterator[Authoritative]:
    server = Authoritative(tmp_path / "nsd")
    server.start(probe="x.example.")
    yield server
    server.stop()


def test_an_order_propagates_registry_to_mirrors_to_gateways_and_unbound(
    tmp_path: Path, nsd: Authoritative
) -> None:
    registry = Registry(tmp_path / "registry")
    running: list[Serve] = []
    unbound: Unbound | None = None
    try:
        web = free_port()
        # The registry signs as its origin: the name its key was made with.
        (registry.root / "clearwall.toml").write_text(f'[ledger]\norigin = "{registry.origin}"\n')
        running.append(
            Serve(registry.root, registry.url_db, "--web", f"127.0.0.1:{web}",
                  "--config", str(registry.root / "clearwall.toml"),
                  "--upstream", f"127.0.0.1:{nsd.port}")
        )  # fmt: skip
        registry_url = f"http://127.0.0.1:{web}"
        isps: list[tuple[Path, str, Serve]] = []
        xfr_port = free_port()
        unbound_dir = tmp_path / "unbound"
        for name in ("isp-a", "isp-b"):
            root = tmp_path / name
            root.mkdir()
            db, _ = make_store(root / "isp.db", "clearwall.example/log", {"tt": ["127.0.0.0/8"]})
            clearwall(root, "mirror", "add", registry_url, "--key", registry.vkey,
                      "--jurisdiction", "tt", "--db", db)  # fmt: skip
            toml = "[federation]\ninterval = 0.5\n"
            extra: list[str] = []
            if name == "isp-a":
                fragment = clearwall(
                    root, "fleet", "config", "unbound", "--jurisdiction", "tt",
                    "--primary", f"127.0.0.1:{xfr_port}", "--db", db,
                )  # fmt: skip
                unbound = Unbound(unbound_dir, nsd.port, fragment)
                toml += f'[xfr]\nsecondaries = ["127.0.0.1:{unbound.port}"]\n'
                extra = ["--xfr", f"127.0.0.1:{xfr_port}"]
            (root / "clearwall.toml").write_text(toml)
            serve = Serve(root, db, "--config", str(root / "clearwall.toml"), "--web", "off",
                          "--upstream", f"127.0.0.1:{nsd.port}", *extra)  # fmt: skip
            running.append(serve)
            isps.append((root, db, serve))
        assert unbound is not None
        unbound.start()
        outputs: list[Callable[[], str]] = [lambda s=s: s.output for s in running]
        outputs.append(unbound.output)
        for _, _, serve in isps:
            wait_for(
                "ISP gateway serving",
                lambda s=serve: verdict(s.query("ok.example")) == "allowed",
                *outputs,
            )
        wait_for(
            "Unbound serving",
            lambda: verdict(unbound_query(unbound, "ok.example")) == "allowed",
            *outputs,
        )

        order = registry.order(["bad.example"], "TT-9")  # published at the registry
        for _root, db, serve in isps:
            wait_for(
                "adoption enforced",
                lambda s=serve: verdict(s.query("www.bad.example")) == "nxdomain",
                *outputs,
            )
            code, sde = ede(serve.query("www.bad.example")) or (None, {})
            assert code == 16, sde  # Censored: a court's order
            store = Store(db)
            try:
                adopted = [
                    e for e in map(entries.parse, (x.data for x in store.log_entries()))
                    if isinstance(e, entries.OrderAdopted)
                ]  # fmt: skip
            finally:
                store.dispose()
            assert [a.source.order_id for a in adopted] == [order.id]
            assert adopted[0].source.origin == registry.origin
            assert "ref: TT-9" in str(sde["j"]) and f"/orders/{adopted[0].order.id}" in str(
                sde["j"]
            )
        wait_for(
            "Unbound enforces it",
            lambda: verdict(unbound_query(unbound, "www.bad.example")) == "nxdomain",
            *outputs,
        )

        registry.service.revoke_order(order.id, "lifted on appeal")
        for _, _, serve in isps:
            wait_for(
                "withdrawal enforced",
                lambda s=serve: verdict(s.query("www.bad.example")) == "allowed",
                *outputs,
            )
        wait_for(
            "Unbound lifts it",
            lambda: verdict(unbound_query(unbound, "www.bad.example")) == "allowed",
            *outputs,
        )

        # The registry's address now serves another history signed with the same key.
        running[0].stop()
        (tmp_path / "forged").mkdir()
        shutil.copy(registry.ledger.key_path(), tmp_path / "forged" / "registry.ledger.key")
        forged = Registry(tmp_path / "forged")
        for n in range(6):
            forged.order([f"forged{n}.example"], f"TT-F{n}")
        forged.close()
        (forged.root / "clearwall.toml").write_text(f'[ledger]\norigin = "{forged.origin}"\n')
        running.append(
            Serve(forged.root, forged.url_db, "--web", f"127.0.0.1:{web}",
                  "--config", str(forged.root / "clearwall.toml"),
                  "--upstream", f"127.0.0.1:{nsd.port}")
        )  # fmt: skip
        outputs.append(lambda: running[-1].output)
        for _root, db, serve in isps:
            wait_for("the rewrite refused", lambda db=db: mirror_status(db) == "refused", *outputs)
            assert verdict(serve.query("forged0.example")) == "allowed"
            store = Store(db)
            try:
                assert len(records.evidence(store)) == 1
            finally:
                store.dispose()
        assert verdict(unbound_query(unbound, "forged0.example")) == "allowed"
    finally:
        for s in running:
            s.stop()
        if unbound is not None:
            unbound.stop()
        registry.close()


def mirror_status(db: str) -> str:
    """The status of the one mirror of the store at ``db``."""
    store = Store(db)
    try:
        [mirror] = records.list_all(store)
        return mirror.status
    finally:
        store.dispose()


def unbound_query(unbound: Unbound, name: str) -> dns.message.Message | None:
    try:
        return dns.query.udp(
            dns.message.make_query(name, "A", use_edns=0), "127.0.0.1", port=unbound.port, timeout=2
        )
    except (dns.exception.Timeout, OSError):
        return None
