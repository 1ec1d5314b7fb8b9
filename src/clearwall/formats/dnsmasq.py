"""The dnsmasq configuration lines blocklists use: ``address=``, ``server=`` and ``local=``.

dnsmasq matches a ``/domain/`` and every name below it, so each domain becomes a SUBTREE
rule. ``address=/d/`` (NXDOMAIN), ``address=/d/#`` or ``/0.0.0.0`` (null address) and
``server=/d/`` or ``local=/d/`` without an upstream (answered locally: Block List
Project's form) all block; ``server=/d/1.2.3.4`` forwards instead and is reported.
"""

from __future__ import annotations

from collections.abc import Iterable

from clearwall.formats.base import Collector, clean_lines, content_lines, parse_batched
from clearwall.model import RuleKind

NAME = "dnsmasq"

KEYS = ("address", "server", "local")

_ADDRESS = clean_lines("address=/", "/(?:#|0\\.0\\.0\\.0|::)?")
_SERVER = clean_lines("(?:server|local)=/", "/")

_IGNORED_OPTIONS = frozenset({"no-resolv", "domain-needed", "bogus-priv", "no-hosts"})


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read dnsmasq blocking lines into ``out`` as SUBTREE rules."""
    parse_batched(lines, out, ((_ADDRESS, RuleKind.SUBTREE), (_SERVER, RuleKind.SUBTREE)), _lines)


def _lines(batch: list[str], start: int, out: Collector) -> None:
    subtree = RuleKind.SUBTREE
    for lineno, line, raw in content_lines(batch, start, out):
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            if key in _IGNORED_OPTIONS:
                out.skip("option")
            else:
                out.issue(lineno, "not a dnsmasq option line", raw)
            continue
        if key not in KEYS:
            out.issue(lineno, f"unsupported dnsmasq option {key!r}", raw)
            continue
        value = value.strip()
        if not value.startswith("/"):
            out.issue(lineno, f"{key}= without a /domain/", raw)
            continue
        parts = value[1:].split("/")
        if len(parts) < 2:
            out.issue(lineno, f"{key}= without a closing '/'", raw)
            continue
        names, target = parts[:-1], parts[-1].strip()
        if key != "address" and target:
            # server=/d/ip forwards d to another resolver: a routing choice, not a block.
            out.issue(lineno, f"{key}=/…/{target} forwards queries; not a block", raw)
            continue
        for name in names:
            if name == "#" or not name:
                # "#" or an empty domain stands for every name: never a sane block rule.
                out.issue(lineno, "matches every domain; not imported", raw)
                continue
            out.add_name(subtree, name, lineno, raw)
