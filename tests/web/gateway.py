"""A real ``clearwall serve`` (DNS + web app) over a seeded store, for browser tests.

The gateway forwards to a real nsd; loopback clients are in jurisdiction ``aa``
(``default_jurisdiction``), so a DNS query from this machine sees what Alphaland sees.
The query log is on, into the test's directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import httpx
from tests.ports import free_port

from dnsserver.upstreams import NSD
from web.seeding import Seeded


@dataclass
class Running:
    """A running gateway: its web base URL, its DNS port, its config and log files."""

    base: str
    dns_port: int
    config: Path
    log: Path
    querylog: Path

    def ask(self, name: str, rdtype: str = "A") -> dns.message.Message:
        """One UDP query from 127.0.0.1 (a client of jurisdiction aa)."""
        q = dns.message.make_query(name, rdtype, use_edns=0)
        return dns.query.udp(q, "127.0.0.1", port=self.dns_port, timeout=3)


def config_text(
    s: Seeded, nsd_port: int, dns_port: int, web_port: int, qlog: Path, ledger_extra: str = ""
) -> str:
    """The TOML config of the gateway under test (``ledger_extra``: more [ledger] lines)."""
    ledger = s.config.ledger
    return f"""
[store]
url = "{s.url}"
[ledger]
key_file = "{ledger.key_file}"
tiles_dir = "{ledger.tiles_dir}"
origin = "{ledger.origin}"
{ledger_extra}
[dns]
listen = ["127.0.0.1:{dns_port}"]
default_jurisdiction = "aa"
reload_interval = 0.2
[dns.upstream]
servers = ["127.0.0.1:{nsd_port}"]
[dns.block]
public_url = "http://127.0.0.1:{web_port}"
operator = "Test Net"
[web]
listen = "127.0.0.1:{web_port}"
[logging]
query_log = true
query_log_dir = "{qlog}"
"""


@contextlib.contextmanager
def running_gateway(
    s: Seeded, nsd: NSD, workdir: Path, ledger_extra: str = ""
) -> Iterator[Running]:
    """Start ``clearwall serve`` and wait until both DNS and the web app answer."""
    dns_port, web_port = free_port(), free_port()
    qlog = workdir / "querylog"
    config = workdir / "clearwall.toml"
    config.write_text(config_text(s, nsd.port, dns_port, web_port, qlog, ledger_extra))
    log = workdir / "serve.log"
    env = {**os.environ, "CLEARWALL_SERVE_IN_PROCESS": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clearwall", "serve", "--config", str(config)],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    running = Running(f"http://127.0.0.1:{web_port}", dns_port, config, log, qlog)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"clearwall serve exited: {log.read_text()[-3000:]}")
            try:
                running.ask("www.example.test")
                if httpx.get(running.base + "/healthz", timeout=1).status_code == 200:
                    break
            except (dns.exception.Timeout, OSError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"clearwall serve did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
