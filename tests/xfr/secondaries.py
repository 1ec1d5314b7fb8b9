"""Real resolvers from Debian's packages, started on loopback ports for the tests.

``Authoritative`` is an nsd serving the names the resolvers look up (``example.``, every
name under it answering 192.0.2.1, TTL 0 so nothing is cached across a policy change;
not ``test.``, which Unbound and Knot Resolver answer themselves, RFC 6761).
``Unbound``, ``PdnsRecursor``, ``Bind`` and ``Kresd`` each run with the fragment
``clearwall fleet config`` printed for them, verbatim, and forward ``example.`` to nsd.
Each waits until it answers, and ``stop`` terminates it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from tests.ports import free_port

ALLOWED_ADDRESS = "192.0.2.1"


def binary(name: str) -> str | None:
    """The path of a system binary, if installed."""
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if path and Path(path).exists():
            return path
    return None


def require(*names: str) -> None:
    """Fail (never skip) when a server the test needs is missing: each is a Debian package
    that scripts/install-system-deps.sh installs, so it can always exist here."""
    import pytest  # bench/fleet.py loads this module too, without pytest's help

    missing = [name for name in names if binary(name) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: run scripts/install-system-deps.sh as root"
        )


def query(port: int, name: str, rdtype: str = "A", timeout: float = 2.0) -> dns.message.Message:
    """One UDP query to 127.0.0.1:port."""
    return dns.query.udp(
        dns.message.make_query(name, rdtype, use_edns=0), "127.0.0.1", port=port, timeout=timeout
    )


class Process:
    """A server process with a work directory and a log."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, probe: str = "probe.example.", timeout: float = 30) -> None:
        """Start and wait until ``probe`` gets an answer (any rcode)."""
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                query(self.port, probe, timeout=0.5)
                return
            except (OSError, dns.exception.DNSException):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} did not start: {self.output()}") from None
                time.sleep(0.1)

    def output(self) -> str:
        """The last part of the server's log."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Authoritative(Process):
    """nsd serving ``example.``: every name answers 192.0.2.1, ``extra`` adds records."""

    name = "nsd"

    def __init__(self, workdir: Path, extra: str = "") -> None:
        super().__init__(workdir)
        (workdir / "example.zone").write_text(
            "$ORIGIN example.\n$TTL 0\n@ SOA ns1 hostmaster 1 3600 600 86400 0\n@ NS ns1\n"
            f"ns1 A 127.0.0.1\n* A {ALLOWED_ADDRESS}\n{extra}\n"
        )
        (workdir / "nsd.conf").write_text(f"""server:
  ip-address: 127.0.0.1@{self.port}
  port: {self.port}
  username: ""
  chroot: ""
  zonesdir: "{workdir}"
  pidfile: "{workdir}/nsd.pid"
  database: ""
  xfrdfile: "{workdir}/xfrd.state"
  zonelistfile: "{workdir}/zone.list"
  verbosity: 1
  server-count: 1
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: "example."
  zonefile: "example.zone"
""")

    def command(self) -> list[str]:
        return [binary("nsd") or "nsd", "-d", "-c", str(self.workdir / "nsd.conf")]


class Unbound(Process):
    """Unbound with the ``fleet config unbound`` fragment appended to a base config."""

    name = "unbound"

    def __init__(self, workdir: Path, upstream: int, fragment: str) -> None:
        super().__init__(workdir)
        (workdir / "unbound.conf").write_text(f"""server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    use-syslog: no
    logfile: ""
    verbosity: 1
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    num-threads: 1
    ede: yes
stub-zone:
    name: "example."
    stub-addr: 127.0.0.1@{upstream}
remote-control:
    control-enable: no
{fragment}""")

    def command(self) -> list[str]:
        return [binary("unbound") or "unbound", "-d", "-c", str(self.workdir / "unbound.conf")]


class PdnsRecursor(Process):
    """PowerDNS Recursor with the ``fleet config pdns-recursor`` Lua file."""

    name = "pdns-recursor"

    def __init__(self, workdir: Path, upstream: int, lua: str) -> None:
        super().__init__(workdir)
        (workdir / "rpz.lua").write_text(lua)
        (workdir / "recursor.conf").write_text(f"""local-address=127.0.0.1
local-port={self.port}
socket-dir={workdir}
daemon=no
write-pid=no
disable-syslog=yes
threads=1
dnssec=off
allow-from=127.0.0.0/8
forward-zones=example.=127.0.0.1:{upstream}
lua-config-file={workdir}/rpz.lua
extended-resolution-errors=yes
disable-packetcache=yes
loglevel=5
""")

    def command(self) -> list[str]:
        return [binary("pdns_recursor") or "pdns_recursor", f"--config-dir={self.workdir}"]


class Bind(Process):
    """named with ``fleet config bind --options`` in its options and the zones part."""

    name = "named"

    def __init__(self, workdir: Path, upstream: int, options: str, zones: str) -> None:
        super().__init__(workdir)
        (workdir / "rpz-options.conf").write_text(options)
        (workdir / "rpz-zones.conf").write_text(zones)
        (workdir / "named.conf").write_text(f"""options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion yes;
    allow-query {{ 127.0.0.0/8; }};
    dnssec-validation no;
    notify-source 127.0.0.1;
    include "{workdir}/rpz-options.conf";
}};
controls {{ }};
zone "example." {{ type forward; forward only; forwarders {{ 127.0.0.1 port {upstream}; }}; }};
include "{workdir}/rpz-zones.conf";
""")

    def command(self) -> list[str]:
        return [binary("named") or "named", "-g", "-c", str(self.workdir / "named.conf")]


class Kresd(Process):
    """Knot Resolver with the ``fleet config knot-resolver`` Lua fragment."""

    name = "kresd"

    def __init__(self, workdir: Path, upstream: int, lua: str) -> None:
        super().__init__(workdir)
        # The RPZ rules come first: STUB ends the policy rules' evaluation.
        (workdir / "config").write_text(f"""cache.size = 10 * MB
{lua}
policy.add(policy.suffix(policy.STUB({{'127.0.0.1@{upstream}'}}), {{todname('example.')}}))
""")

    def command(self) -> list[str]:
        return [
            binary("kresd") or "kresd",
            "--noninteractive",
            "--config=config",
            f"--addr=127.0.0.1@{self.port}",
            str(self.workdir),
        ]
