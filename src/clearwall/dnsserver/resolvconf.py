"""The upstreams a gateway forwards to: the configured ones, else the system's resolvers.

With ``[dns.upstream] servers`` empty (the default) the gateway forwards to the
nameservers ``/etc/resolv.conf`` (``[dns.upstream] resolv_conf``) lists, as the rest of
the machine does, instead of a fixed ``127.0.0.1:53`` that most machines do not run
(systemd's stub listens on 127.0.0.53). A nameserver that is the gateway itself (one of
its listen addresses on port 53, or any local address when it listens on a wildcard
address on port 53) is left out: forwarding to it would loop.

The file's ``nameserver`` lines are read here, by the rules of dnspython's resolver
configuration parser (``tests/dnsserver/test_resolvconf.py`` holds the two to the same
lists): importing ``dns.resolver`` for them would load its DoH, DoQ and DDR clients
(aioquic, an HTTP client, the x509 stack), 13 MiB of every gateway process's memory
for a dozen lines of text.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from clearwall.config import DNSConfig, HostPort, UpstreamServer
from clearwall.errors import ConfigError

NAMESERVER_PORT = 53  # resolv.conf has no port syntax


@dataclass(frozen=True, slots=True)
class Upstreams:
    """The default upstreams in use, where they come from, and any left out."""

    servers: tuple[UpstreamServer, ...]
    source: str  # "[dns.upstream] servers" or the resolv.conf path
    skipped: tuple[HostPort, ...] = ()  # resolv.conf nameservers that are the gateway

    def describe(self) -> str:
        """One line for the start-up log, e.g. ``192.0.2.53:53 (from /etc/resolv.conf)``."""
        text = f"{', '.join(str(s) for s in self.servers)} (from {self.source})"
        if self.skipped:
            text += f"; left out, being this gateway: {', '.join(str(s) for s in self.skipped)}"
        return text


def _is_local(host: str) -> bool:
    """Whether ``host`` is an address of this machine (it can be bound to)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        info = socket.getaddrinfo(host, 0, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind(info[0][4])
    except OSError:
        return False
    return True


def is_self(server: HostPort, listen: tuple[HostPort, ...]) -> bool:
    """Whether ``server`` is one of the gateway's own listeners."""
    address = ipaddress.ip_address(server.host.split("%", 1)[0])
    for own in listen:
        if own.port != server.port:
            continue
        mine = ipaddress.ip_address(own.host.split("%", 1)[0])
        if mine == address:
            return True
        if mine.is_unspecified and mine.version == address.version and _is_local(server.host):
            return True
    return False


def nameservers(text: str) -> list[str]:
    """The addresses of the ``nameserver`` lines of resolv.conf ``text``, in order: a
    line's first token is the keyword and its second the address (the rest of the line
    is ignored, as are lines starting with ``#`` or ``;`` and lines of fewer than two
    tokens), as dnspython and the C library read the file."""
    found = []
    for line in text.splitlines():
        if line[:1] in ("#", ";"):
            continue
        tokens = line.split()
        if len(tokens) >= 2 and tokens[0] == "nameserver":
            found.append(tokens[1])
    return found


def system_resolvers(path: str) -> tuple[HostPort, ...]:
    """The nameservers ``path`` (resolv.conf syntax) lists; ConfigError when it cannot
    be read or lists none."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"[dns.upstream] servers is empty and {path} cannot be read ({reason}): "
            "set [dns.upstream] servers or pass --upstream"
        ) from exc
    listed = nameservers(text)
    if not listed:
        raise ConfigError(
            f"[dns.upstream] servers is empty and {path} gives no resolver (no nameservers): "
            "set [dns.upstream] servers or pass --upstream"
        )
    servers = []
    for nameserver in listed:
        try:
            servers.append(HostPort.parse(nameserver, NAMESERVER_PORT))
        except ValueError:
            continue  # not a plain address (dnspython also takes DoH URLs): not ours
    return tuple(servers)


def default_upstreams(config: DNSConfig) -> Upstreams:
    """The upstreams queries go to when their jurisdiction has none of its own."""
    up = config.upstream
    if up.servers:
        return Upstreams(up.servers, "[dns.upstream] servers")
    path = str(up.resolv_conf)
    listed = system_resolvers(path)
    usable = tuple(s for s in listed if not is_self(s, config.listen))
    skipped = tuple(s for s in listed if s not in usable)
    if not usable:
        named = ", ".join(str(s) for s in listed) or "none"
        raise ConfigError(
            f"[dns.upstream] servers is empty and {path} lists no nameserver but this "
            f"gateway itself ({named}): set [dns.upstream] servers or pass --upstream"
        )
    return Upstreams(usable, path, skipped)
