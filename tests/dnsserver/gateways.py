"""Real ``clearwall serve`` processes for crash tests: a store with its ledger, a gateway
subprocess with its log in a file, and the process tree it forks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import pytest
from tests.ports import free_port

from clearwall.config import LedgerConfig
from clearwall.layout import resolve_ledger
from clearwall.ledger.log import TransparencyLog
from clearwall.ledger.signing import create_key_file
from clearwall.model import RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.store import PolicyService, open_store


def make_store(db: Path, names: list[str], *, publish: bool = True) -> str:
    """A SQLite store at ``db`` with its ledger key beside it, jurisdiction ``tt`` for
    every client and one court order blocking ``names``; its URL."""
    url = f"sqlite:///{db}"
    ledger = resolve_ledger(LedgerConfig(), url)
    create_key_file(ledger.key_path(), ledger.origin)
    store = open_store(url, migrate=True)
    try:
        tlog = TransparencyLog(store, ledger)
        service = PolicyService(store, after_commit=tlog.sync if publish else None)
        service.add_jurisdiction("tt", "Testland", ["0.0.0.0/0"])
        court = service.add_authority("Court", "court", "tt")
        if names:
            service.add_order(
                court.id,
                "Order",
                "Act s.1",
                "TT-1",
                "court-order",
                "nxdomain",
                [RuleSpec(RuleKind.EXACT, n) for n in names],
                effective_from="2020-01-01",
            )
    finally:
        store.dispose()
    return url


@dataclass
class Gateway:
    """A running ``clearwall serve`` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def output(self) -> str:
        """Everything the gateway logged so far."""
        return self.log.read_text(errors="replace")

    def rcode(self, name: str) -> int | None:
        """The rcode of an A query for ``name``, None when nothing answered."""
        try:
            reply = dns.query.udp(
                dns.message.make_query(name, "A"), "127.0.0.1", port=self.port, timeout=0.5
            )
        except (dns.exception.Timeout, OSError):
            return None
        return reply.rcode()

    def wait_serving(self, timeout: float = 120) -> None:
        """Until the gateway answers (any rcode; the upstream is unreachable on purpose)."""
        deadline = time.monotonic() + timeout
        while self.rcode("probe.invalid") is None:
            assert self.proc.poll() is None, f"gateway exited:\n{self.output}"
            assert time.monotonic() < deadline, f"gateway not serving:\n{self.output}"
            time.sleep(0.05)

    def wait_log(self, text: str, timeout: float = 60) -> None:
        """Until the gateway's log contains ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f"gateway exited:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.output}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the gateway process itself (not its children)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def start_gateway(
    url: str, directory: Path, *extra: str, name: str = "gateway", web: str = "off"
) -> Gateway:
    """``clearwall serve`` on a free port, run from ``directory``, logging to a file."""
    port = free_port()
    log = directory / f"{name}-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARWALL_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearwall", "serve", "--db", url, "--dns",
             f"127.0.0.1:{port}", "--web", web, "--upstream", "127.0.0.1:9",
             "--log-level", "INFO", *extra],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Gateway(proc, port, log)


@pytest.fixture
def launch() -> Iterator[Callable[..., Gateway]]:
    """``start_gateway`` for a test; whatever is still running at its end is killed, with
    its children, even when an assertion stopped the test half-way."""
    started: list[Gateway] = []

    def start(*args: Any, **kwargs: Any) -> Gateway:
        gw = start_gateway(*args, **kwargs)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        if gw.proc.poll() is None:
            tree = descendants(gw.proc.pid)
            gw.proc.kill()
            gw.proc.wait()
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def gateway(url: str, directory: Path, *extra: str, name: str = "gateway") -> Iterator[Gateway]:
    """A gateway stopped cleanly (SIGTERM) at the end, however the block ends."""
    gw = start_gateway(url, directory, *extra, name=name)
    try:
        yield gw
    finally:
        if gw.proc.poll() is None:
            gw.proc.send_signal(signal.SIGTERM)
            try:
                gw.proc.wait(30)
            except subprocess.TimeoutExpired:
                gw.proc.kill()
                gw.proc.wait()


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's), from /proc."""
    out: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid``: pid -> depth (1 = child)."""
    found: dict[int, int] = {}
    todo = [(c, 1) for c in children(pid)]
    while todo:
        p, depth = todo.pop()
        if p not in found:
            found[p] = depth
            todo += [(c, depth + 1) for c in children(p)]
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie holds no memory and counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` every 50 ms until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
