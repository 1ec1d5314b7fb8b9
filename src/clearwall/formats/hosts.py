"""The hosts-file format: ``0.0.0.0 name [name…]`` lines, each name an exact-match block."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from clearwall.formats.base import Collector, clean_lines, content_lines, parse_batched
from clearwall.model import RuleKind

NAME = "hosts"

# Names every stock hosts file maps to loopback; a blocklist that lists them is
# describing the machine, not blocking anything.
LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)

_CLEAN = clean_lines(r"(?:0\.0\.0\.0|127\.0\.0\.1)[ \t]+", "")

_COMMON_ADDRESSES = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1"})


def is_address(token: str) -> bool:
    """True when ``token`` is an IPv4 or IPv6 address (a zone index like ``%lo0`` allowed)."""
    if token in _COMMON_ADDRESSES:
        return True
    try:
        ipaddress.ip_address(token)
    except ValueError:
        return False
    return True


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read hosts lines into ``out``; every listed name becomes an EXACT rule."""
    parse_batched(lines, out, ((_CLEAN, RuleKind.EXACT),), _lines, LOCAL_NAMES)


def _lines(batch: list[str], start: int, out: Collector) -> None:
    exact = RuleKind.EXACT
    for lineno, line, raw in content_lines(batch, start, out):
        if "#" in line:
            line = line.split("#", 1)[0]
        fields = line.split()
        if not is_address(fields[0]):
            out.issue(lineno, f"not a hosts line: {fields[0]!r} is not an IP address", raw)
            continue
        if len(fields) == 1:
            out.issue(lineno, "address without a host name", raw)
            continue
        for token in fields[1:]:
            if token.lower() in LOCAL_NAMES:
                out.skip("local")
            else:
                out.add_name(exact, token, lineno, raw)
