"""Helpers for the encrypted-transport tests: certificates, a gateway with DoT, DoH and DoQ
on loopback, and real clients (kdig, curl, dnspython) pointed at it."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import dns.message
import pytest

from clearwall.config import DNSConfig, HostPort
from clearwall.dnsserver.gateway import Gateway
from clearwall.dnsserver.policyholder import StaticPolicy
from clearwall.dnsserver.tls import make_self_signed
from clearwall.model import AuthorityKind, Category
from dnsserver.conftest import dns_config, order

NAME = "clearwall.localhost"  # what make_self_signed certifies (with 127.0.0.1 and ::1)
ANY = HostPort("127.0.0.1", 0)

COURT = order(1, kind=AuthorityKind.COURT, category=Category.COURT_ORDER)
MALWARE = order(
    2, kind=AuthorityKind.OPERATOR, category=Category.MALWARE, contacts=("mailto:abuse@isp.test",)
)
FILTER = order(
    3,
    kind=AuthorityKind.OPERATOR,
    category=Category.SUBSCRIBER_FILTER,
    contacts=("tel:+1-555-0100", "https://not-a-contact-scheme.test/"),
)
LONG = dataclasses.replace(MALWARE, id=4, title="x" * 900)  # compacted over UDP, not over TLS


def policy() -> StaticPolicy:
    """A name per kind of block (EDE 16, 15, 17) and one whose SDE is long."""
    return StaticPolicy(
        names={
            "court.test": [COURT],
            "malware.test": [MALWARE],
            "filtered.test": [FILTER],
            "long.test": [LONG],
        }
    )


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """A self-signed certificate for NAME, 127.0.0.1 and ::1, and its key."""

    cert: Path
    key: Path


def tls_files(directory: Path) -> TLSFiles:
    """Make (once per directory) the certificate and key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    make_self_signed(cert, key)
    return TLSFiles(cert, key)


def encrypted_config(upstream_port: int, files: TLSFiles, **changes: Any) -> DNSConfig:
    """dns_config with DoT, DoH and DoQ on ephemeral loopback ports."""
    base = dns_config(
        upstream_port,
        dot=(ANY,),
        doh=(ANY,),
        doq=(ANY,),
        tls_cert=str(files.cert),
        tls_key=str(files.key),
    )
    return dataclasses.replace(base, **changes)


def port(gw: Gateway, kind: str) -> int:
    """The bound port of the gateway's first ``kind`` listener (dot, doh, doq)."""
    return gw.server.encrypted[kind][0][1]


def client_context(files: TLSFiles, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A verifying client context trusting the test certificate."""
    ctx = ssl.create_default_context(cafile=str(files.cert))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def doh_url(gw: Gateway) -> str:
    """The gateway's DoH URL."""
    return f"https://127.0.0.1:{port(gw, 'doh')}/dns-query"


def need(tool: str) -> str:
    """The path of a client tool, or fail naming the package that has it."""
    path = shutil.which(tool)
    if path is None:
        package = {"kdig": "knot-dnsutils", "curl": "curl"}.get(tool, tool)
        pytest.fail(f"{tool} is not installed: run scripts/install-system-deps.sh ({package})")
    return path


def run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a client tool (in a thread: the gateway runs in the test's event loop)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def kdig(gw: Gateway, files: TLSFiles, mode: str, name: str, *extra: str) -> str:
    """kdig's output for ``name`` over ``mode`` (+tls, +https or +https-get), verifying the
    certificate against the test CA and its name."""
    kind = "dot" if mode == "+tls" else "doh"
    argv = [need("kdig"), "-p", str(port(gw, kind)), "@127.0.0.1", mode]
    argv += [f"+tls-ca={files.cert}", f"+tls-hostname={NAME}", *extra, name, "A"]
    done = run(argv)
    assert done.returncode == 0, done.stderr
    return done.stdout


def parse(wire: bytes) -> dns.message.Message:
    """dnspython's reading of a reply."""
    return dns.message.from_wire(wire)


def tls_socket(
    tcp_port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:tcp_port (handshake done), verifying NAME."""
    raw = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname=NAME, session=session)
    except BaseException:
        raw.close()
        raise
