"""A censored network in a box: Linux network namespaces, veth pairs and nftables.

Topology (all addresses are private to the box: 100.64.0.0/10 links, 198.18.0.0/15
sites, both never routed outside the namespaces)::

    cli 100.64.1.2 ── 100.64.1.1 mid 100.64.2.1 ── 100.64.2.2 sites 100.64.3.1 ── 100.64.3.2 ctl

    cli: the probe.  mid: resolver, DNS proxy, nftables interference.
    sites: authoritative DNS 198.18.0.53, web servers on 198.18.0.x.
    ctl: the test helper and the clearwall log, outside the interference.

The client reaches the sites only through ``mid``, where the interference lives; the
control namespace reaches them directly. ``NetBox`` is a context manager: leaving it
kills every process it started and deletes every namespace, even after a failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
_counter = itertools.count()

CLI_IP, MID_CLI_IP = "100.64.1.2", "100.64.1.1"
MID_SITES_IP, SITES_MID_IP = "100.64.2.1", "100.64.2.2"
SITES_CTL_IP, CTL_IP = "100.64.3.1", "100.64.3.2"
AUTH_DNS_IP = "198.18.0.53"
UNREACHABLE_NET = "198.19.0.0/16"  # routed nowhere inside the box: "down" and forged targets


def can_build() -> str | None:
    """None when namespaces can be built here, else the reason (for pytest.skip)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install-system-deps.sh)"
    return None


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run one command, bounded in time."""
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_pki(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A test CA and one server certificate for ``names`` (plus their wildcards)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clearwall netbox test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans = sorted(set(names))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
    )
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


class NetBox:
    """Builds the namespaces on enter, tears everything down on exit."""

    def __init__(self, workdir: Path, zone: dict[str, str]) -> None:
        """``zone`` maps each site name to its address inside the box."""
        self.workdir = workdir
        self.zone = zone
        tag = f"cw{os.getpid() % 100000}{next(_counter)}"
        self.tag = tag
        self.ns = {role: f"{tag}{role}" for role in ("cli", "mid", "sites", "ctl")}
        self.processes: list[subprocess.Popen[str]] = []
        self.ca_file: Path | None = None

    # -- building ---------------------------------------------------------------------
    def __enter__(self) -> NetBox:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _veth(self, a: str, a_ip: str, b: str, b_ip: str, short: str) -> None:
        left, right = f"{self.tag}{short}a"[-15:], f"{self.tag}{short}b"[-15:]
        sh(
            "ip",
            "link",
            "add",
            left,
            "netns",
            self.ns[a],
            "type",
            "veth",
            "peer",
            "name",
            right,
            "netns",
            self.ns[b],
        )
        self.exec_(a, "ip", "addr", "add", f"{a_ip}/24", "dev", left)
        self.exec_(b, "ip", "addr", "add", f"{b_ip}/24", "dev", right)
        self.exec_(a, "ip", "link", "set", left, "up")
        self.exec_(b, "ip", "link", "set", right, "up")

    def _build(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        self._veth("cli", CLI_IP, "mid", MID_CLI_IP, "c")
        self._veth("mid", MID_SITES_IP, "sites", SITES_MID_IP, "s")
        self._veth("sites", SITES_CTL_IP, "ctl", CTL_IP, "h")
        for role in ("mid", "sites"):
            self.exec_(role, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        self.exec_("cli", "ip", "route", "add", "default", "via", MID_CLI_IP)
        self.exec_("mid", "ip", "route", "add", "198.18.0.0/15", "via", SITES_MID_IP)
        self.exec_("mid", "ip", "route", "add", "100.64.3.0/24", "via", SITES_MID_IP)
        self.exec_("sites", "ip", "route", "add", "default", "via", MID_SITES_IP)
        self.exec_("sites", "ip", "route", "add", "unreachable", UNREACHABLE_NET)
        self.exec_("ctl", "ip", "route", "add", "default", "via", SITES_CTL_IP)
        addresses = {AUTH_DNS_IP, *self.zone.values()}
        for address in sorted(addresses):
            if ipaddress.ip_address(address) in ipaddress.ip_network(UNREACHABLE_NET):
                continue
            self.exec_("sites", "ip", "addr", "add", f"{address}/32", "dev", "lo")
        names = sorted(self.zone)
        self.ca_file, cert, key = make_pki(self.workdir, names)
        config = {"zone": self.zone, "cert": str(cert), "key": str(key), "dns": AUTH_DNS_IP}
        self.start(
            "sites",
            [PYTHON, str(HERE / "netbox_servers.py"), "sites", self._write("sites.json", config)],
        )

    def _write(self, name: str, value: Any) -> str:
        path = self.workdir / name
        path.write_text(json.dumps(value), encoding="utf-8")
        return str(path)

    # -- running things inside ---------------------------------------------------------
    def exec_(self, role: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """Run a command inside a namespace and wait for it."""
        return sh("ip", "netns", "exec", self.ns[role], *argv, timeout=timeout)

    def run(self, role: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a command inside a namespace, capturing output, without raising on failure."""
        return subprocess.run(
            ["ip", "netns", "exec", self.ns[role], *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(
        self,
        role: str,
        argv: list[str],
        *,
        ready: str = "ready",
        wait: float = 20,
        stream: str = "stdout",
        cwd: Path | None = None,
    ) -> subprocess.Popen[str]:
        """Start a long-running process in a namespace; wait until it prints ``ready``.

        ``stream`` names the pipe to watch (``stdout``/``stderr``); with ``none`` both go
        to a log file and the caller waits in its own way (e.g. ``wait_port``).
        """
        log = self.workdir / f"{role}-{len(self.processes)}.log"
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[role], *argv],
            stdout=subprocess.PIPE if stream == "stdout" else open(log, "w"),  # noqa: SIM115
            stderr=subprocess.PIPE if stream == "stderr" else open(log, "a"),  # noqa: SIM115
            text=True,
            start_new_session=True,
            cwd=cwd,
        )
        self.processes.append(process)
        if stream == "none":
            return process
        pipe = process.stdout if stream == "stdout" else process.stderr
        assert pipe is not None
        deadline = time.monotonic() + wait
        os.set_blocking(pipe.fileno(), False)
        seen = ""
        while time.monotonic() < deadline:
            chunk = pipe.readline()
            if chunk:
                seen += chunk
                if ready in chunk:
                    return process
                continue
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{argv[:3]} in {role} did not become ready: {seen[-2000:]} (log {log})")

    def wait_port(self, role: str, host: str, port: int, wait: float = 20) -> None:
        """Wait until ``host:port`` accepts TCP connections from inside ``role``."""
        code = (
            "import socket,sys,time\n"
            f"end=time.time()+{wait}\n"
            "while time.time()<end:\n"
            "  try:\n"
            f"    socket.create_connection(({host!r},{port}),1).close();sys.exit(0)\n"
            "  except OSError: time.sleep(0.1)\n"
            "sys.exit(1)\n"
        )
        if self.run(role, [PYTHON, "-c", code], timeout=wait + 5).returncode != 0:
            raise RuntimeError(f"{host}:{port} not reachable from {role}")

    def middle(
        self, *, forge: dict[str, str], blocks: dict[str, dict[str, Any]], upstream: str
    ) -> None:
        """Start the middlebox DNS proxy and blockpage server in ``mid``."""
        config = {
            "listen": MID_CLI_IP,
            "upstream": upstream,
            "forge": forge,
            "blocks": blocks,
            "blockpage_port": 8081,
        }
        self.start(
            "mid",
            [PYTHON, str(HERE / "netbox_servers.py"), "middle", self._write("mid.json", config)],
        )

    def interfere(
        self,
        *,
        reset: list[str],
        tls_drop: list[str],
        blockpage: list[str],
        legal: tuple[str, ...] = (),
    ) -> None:
        """Install the nftables interference in ``mid`` (none of it is on any log)."""
        lines = [
            "table ip cwprobe {",
            " chain forward { type filter hook forward priority 0; policy accept;",
        ]
        for ip in reset:
            lines.append(f"  ip daddr {ip} tcp dport {{ 80, 443 }} reject with tcp reset")
        for ip in tls_drop:
            # The SYN and bare ACKs are small; the ClientHello is not: drop it silently.
            lines.append(f"  ip daddr {ip} tcp dport 443 ip length > 120 drop")
        lines.append(" }")
        lines.append(" chain prerouting { type nat hook prerouting priority -100; policy accept;")
        for ip in blockpage:
            lines.append(f"  ip daddr {ip} tcp dport 80 dnat to {MID_CLI_IP}:8081")
        for ip in legal:
            lines.append(f"  ip daddr {ip} tcp dport 80 dnat to {MID_CLI_IP}:8082")
        lines.append(" }")
        lines.append("}")
        path = self._write("rules.nft", None)
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.exec_("mid", "nft", "-f", path)

    # -- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        """Kill our processes (by process group) and delete our namespaces."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        for ns in self.ns.values():
            # Anything still running inside (e.g. a grandchild) goes with its namespace.
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)
