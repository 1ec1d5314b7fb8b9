"""Test upstreams: a real nsd serving a generated zone, and a tiny fault-injecting server."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query

ZONE = """$ORIGIN example.test.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 60
@        NS    ns1
ns1      A     127.0.0.1
www      A     192.0.2.1
www      AAAA  2001:db8::1
blocked  A     192.0.2.2
sub.blocked A  192.0.2.3
alias    CNAME blocked
alias2   CNAME www
chain    CNAME alias
badip    A     192.0.2.66
badip6   AAAA  2001:db8::66
short 2  A     192.0.2.5
{many}
{big}
"""


def zone_text() -> str:
    """The test zone: plain names, CNAME chains, a name too big for UDP, many records."""
    many = "\n".join(f"many A 10.0.0.{i}" for i in range(1, 41))
    chunk = "x" * 200
    big = "\n".join(f'big TXT "{i:02d}{chunk}"' for i in range(20))
    return ZONE.format(many=many, big=big)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no free port")


class NSD:
    """An nsd process serving ``example.test`` on 127.0.0.1:port until ``stop``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Write the config and zone, start nsd in the foreground, wait until it answers."""
        binary = shutil.which("nsd") or "/usr/sbin/nsd"
        d = self.workdir
        (d / "example.test.zone").write_text(zone_text())
        (d / "nsd.conf").write_text(f"""server:
  ip-address: 127.0.0.1@{self.port}
  port: {self.port}
  username: ""
  chroot: ""
  zonesdir: "{d}"
  pidfile: "{d}/nsd.pid"
  database: ""
  xfrdfile: "{d}/xfrd.state"
  zonelistfile: "{d}/zone.list"
  logfile: "{d}/nsd.log"
  server-count: 1
  do-ip6: no
  verbosity: 1
  hide-version: yes
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: example.test
  zonefile: "{d}/example.test.zone"
""")
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(d / "nsd.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        q = dns.message.make_query("www.example.test", "A")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (d / "nsd.log").read_text() if (d / "nsd.log").exists() else ""
                raise RuntimeError(f"nsd exited: {log}")
            try:
                dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.2)
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("nsd did not come up")

    def stop(self) -> None:
        """Terminate nsd and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def nsd_available() -> bool:
    """True when an nsd binary is installed."""
    return bool(shutil.which("nsd") or os.path.exists("/usr/sbin/nsd"))


class FaultyUpstream(asyncio.DatagramProtocol):
    """A tiny in-test UDP upstream whose reply is decided by ``behaviour(query) -> bytes|None``."""

    def __init__(self, behaviour: Callable[[bytes], bytes | list[bytes] | None]) -> None:
        self.behaviour = behaviour
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[bytes] = []
        self.sources: list[tuple[str, int]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Reply as the behaviour says (nothing, one datagram, or several)."""
        self.queries.append(data)
        self.sources.append(addr)
        out = self.behaviour(data)
        if out is None or self.transport is None:
            return
        for item in out if isinstance(out, list) else [out]:
            self.transport.sendto(item, addr)


async def start_faulty(
    behaviour: Callable[[bytes], bytes | list[bytes] | None],
) -> tuple[FaultyUpstream, asyncio.DatagramTransport, int]:
    """Start a FaultyUpstream on 127.0.0.1; return it, its transport and port."""
    loop = asyncio.get_running_loop()
    proto = FaultyUpstream(behaviour)
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    return proto, transport, transport.get_extra_info("sockname")[1]
