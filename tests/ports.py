"""Loopback ports for the servers a test starts.

A port the kernel hands out for ``bind(0)`` is in the ephemeral range
(``net.ipv4.ip_local_port_range``), the same range every outgoing socket on the machine
draws from: the gateway's upstream queries (a fresh random source port each, RFC 5452),
Unbound's, PowerDNS Recursor's, every TCP client. Such a port is free when the test asks
and can be a source port again by the time the server it was meant for binds it; a
server that then fails with "Address already in use" looks like a flaky test. The ports
here come from below the ephemeral range, where nothing takes a port unasked, and are
checked free for both UDP and TCP, since a DNS server binds both.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOWEST = 10_000  # above the fixed ports the demo, the docs and the services use
_RANDOM = random.SystemRandom()  # not the global one, which hypothesis seeds per example


def _ephemeral_floor() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768
    return max(low, _LOWEST + 1_000)


def _free(port: int, host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free for both UDP and TCP and outside the ephemeral
    range, so no outgoing socket takes it before the server that asked for it binds."""
    ceiling = _ephemeral_floor()
    for _ in range(200):
        port = _RANDOM.randrange(_LOWEST, ceiling)
        if _free(port, host):
            return port
    raise RuntimeError(f"no free port in {_LOWEST}..{ceiling - 1} on {host}")
