"""Test upstreams: a real nsd serving generated zones (one DNSSEC-signed), a real validating
Unbound forwarding to it, and tiny fault-injecting servers (UDP and TCP)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
from tests.ports import free_port

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
huge 2147483647 A 192.0.2.7
longttl 100000 A 192.0.2.8
loop1    CNAME loop2
loop2    CNAME loop1
self     CNAME self
dangling CNAME nowhere
mail     MX    10 mx1
mx1      A     192.0.2.25
{many}
{big}
{types}
"""

# Record types the gateway must relay whatever their number: SVCB (64), HTTPS (65), CAA,
# TLSA, and every other type up to 97 in RFC 3597 generic form. 65-90 are the ASCII capitals
# that a lowercasing of the question's type bytes would fold (issue 14, section 1).
TYPED = {
    "SVCB": "1 svc.example.net. alpn=h2 port=8443",
    "HTTPS": "1 . alpn=h2,h3 ipv4hint=192.0.2.1",
    "CAA": '0 issue "ca.example.net"',
    "TLSA": "3 1 1 " + "ab" * 32,
}
GENERIC_TYPES = range(66, 98)


def zone_text() -> str:
    """The test zone: plain names, CNAME chains, a name too big for UDP, many records."""
    many = "\n".join(f"many A 10.0.0.{i}" for i in range(1, 41))
    chunk = "x" * 200
    big = "\n".join(f'big TXT "{i:02d}{chunk}"' for i in range(20))
    types = "\n".join(f"types {rtype} {rdata}" for rtype, rdata in TYPED.items())
    # Six octets that also parse as DSYNC (66): RRtype 1, scheme 1, a port, the root.
    types += "\n" + "\n".join(f"types TYPE{t} \\# 6 000101{t:02x}{t:02x}00" for t in GENERIC_TYPES)
    return ZONE.format(many=many, big=big, types=types)


SIGNED = """$ORIGIN signed.test.
$TTL 300
@        SOA   ns1 hostmaster 1 3600 600 86400 60
@        NS    ns1
ns1      A     127.0.0.1
www      A     192.0.2.10
*.wild   A     192.0.2.11
https    HTTPS 1 . alpn=h2
bogus    A     192.0.2.12
"""


def signed_zone() -> tuple[str, str]:
    """signed.test signed with one ECDSA P-256 key (NSEC), and its DNSKEY as an Unbound
    trust anchor. ``bogus`` is changed after signing, so a validator finds it Bogus."""
    import datetime

    import dns.dnssec
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype
    import dns.zone
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    dnskey = dns.dnssec.make_dnskey(key.public_key(), dns.dnssec.Algorithm.ECDSAP256SHA256, 257)
    zone = dns.zone.from_text(SIGNED, "signed.test.", relativize=False)
    now = datetime.datetime.now(datetime.UTC)
    dns.dnssec.sign_zone(
        zone,
        keys=[(key, dnskey)],
        inception=now - datetime.timedelta(days=1),
        expiration=now + datetime.timedelta(days=30),
    )
    with zone.writer() as txn:
        bogus = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, "192.0.2.13")
        txn.replace("bogus.signed.test.", 300, bogus)
    anchor = f"signed.test. DNSKEY {dnskey.to_text()}"
    return zone.to_text(relativize=False), anchor


class NSD:
    """An nsd process serving ``example.test`` and the signed ``signed.test`` on
    127.0.0.1:port until ``stop``; ``trust_anchor`` is the signed zone's DNSKEY."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.trust_anchor = ""

    def start(self) -> None:
        """Write the config and zone, start nsd in the foreground, wait until it answers."""
        binary = shutil.which("nsd") or "/usr/sbin/nsd"
        d = self.workdir
        (d / "example.test.zone").write_text(zone_text())
        signed, self.trust_anchor = signed_zone()
        (d / "signed.test.zone").write_text(signed)
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
zone:
  name: signed.test
  zonefile: "{d}/signed.test.zone"
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


@dataclass(frozen=True)
class FromElsewhere:
    """A datagram a FaultyUpstream sends from another socket: another port on its own
    address, or ``host`` (RFC 5452 section 9.1: a reply from the wrong source)."""

    data: bytes
    host: str = "127.0.0.1"


Reply = bytes | FromElsewhere
Behaviour = Callable[[bytes], Reply | list[Reply] | None]


class FaultyUpstream(asyncio.DatagramProtocol):
    """A tiny in-test UDP upstream whose reply is decided by ``behaviour(query) -> bytes|None``."""

    def __init__(self, behaviour: Behaviour) -> None:
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
            if isinstance(item, FromElsewhere):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    other.bind((item.host, 0))
                    other.sendto(item.data, addr)
            else:
                self.transport.sendto(item, addr)


async def start_faulty(
    behaviour: Behaviour,
) -> tuple[FaultyUpstream, asyncio.DatagramTransport, int]:
    """Start a FaultyUpstream on 127.0.0.1; return it, its transport and port."""
    loop = asyncio.get_running_loop()
    proto = FaultyUpstream(behaviour)
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    return proto, transport, transport.get_extra_info("sockname")[1]


UNBOUND_BINARY = shutil.which("unbound") or "/usr/sbin/unbound"


def unbound_available() -> bool:
    """True when an unbound binary is installed."""
    return os.path.exists(UNBOUND_BINARY)


class Unbound:
    """A real Unbound on 127.0.0.1:port forwarding every zone to ``upstream_port`` (an
    nsd), validating ``signed.test`` against ``trust_anchor``; everything else as
    Unbound's defaults, except what the configuration below says and why.

    Clients from 127.0.0.1 get Unbound's default ``allow``; clients from 127.0.0.2 get
    ``allow_snoop``, Unbound's mode that answers RD=0 queries from its cache.
    """

    def __init__(self, workdir: Path, upstream_port: int, trust_anchor: str) -> None:
        self.workdir = workdir
        self.upstream_port = upstream_port
        self.trust_anchor = trust_anchor
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The unbound.conf text."""
        d = self.workdir
        return f"""server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    use-syslog: no
    logfile: "{d}/unbound.log"
    verbosity: 1
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    num-threads: 1
    # The test zones are on loopback, under .test (an RFC 6761 name Unbound serves as an
    # empty local zone by default).
    do-not-query-localhost: no
    local-zone: "test." nodefault
    module-config: "validator iterator"
    trust-anchor: "{self.trust_anchor}"
    access-control: 127.0.0.1/32 allow
    access-control: 127.0.0.2/32 allow_snoop
    # Extended DNS Errors on (RFC 8914), and CHAOS queries must not reveal the software
    # or host (issue 14): clearwall refuses them.
    ede: yes
    hide-version: yes
    hide-identity: yes
    hide-trustanchor: yes
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{self.upstream_port}
"""

    def start(self) -> None:
        """Write the config, start Unbound in the foreground, wait until it answers."""
        (self.workdir / "unbound.conf").write_text(self.config())
        self.proc = subprocess.Popen(
            [UNBOUND_BINARY, "-d", "-c", str(self.workdir / "unbound.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        q = dns.message.make_query("www.example.test", "A")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.workdir / "unbound.log"
                raise RuntimeError(f"unbound exited: {log.read_text() if log.exists() else ''}")
            try:
                dns.query.udp(q, "127.0.0.1", port=self.port, timeout=0.2)
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("unbound did not come up")

    def stop(self) -> None:
        """Terminate Unbound and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FaultyTCPUpstream:
    """A tiny in-test TCP upstream (RFC 7766 framing) whose reply to each query is
    ``behaviour(query) -> bytes | None`` (None: close without answering)."""

    def __init__(self, behaviour: Callable[[bytes], bytes | None]) -> None:
        self.behaviour = behaviour
        self.queries: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = int.from_bytes(await reader.readexactly(2), "big")
            query = await reader.readexactly(size)
            self.queries.append(query)
            out = self.behaviour(query)
            if out is not None:
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self, port: int) -> None:
        """Listen on 127.0.0.1:port (the UDP fault upstream's port, as a real server)."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    def close(self) -> None:
        """Stop listening."""
        if self.server is not None:
            self.server.close()
