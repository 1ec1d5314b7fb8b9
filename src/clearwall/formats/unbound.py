"""Unbound ``local-zone:`` lines as blocklists publish them (``server:`` clause included).

A local zone in Unbound covers its name and everything below it, so each blocking zone
becomes a SUBTREE rule and each transparent one an ALLOW_SUBTREE exception. The zone
type sets the rule's action where it names a distinct answer (see ``ZONE_TYPES``);
``always_null`` answers 0.0.0.0/::, exactly what hosts and dnsmasq lists mean by a block,
so it keeps the order's action like they do.
"""

from __future__ import annotations

from collections.abc import Iterable

from clearwall.formats.base import (
    Collector,
    clean_lines,
    content_lines,
    parse_batched,
    strip_comment,
)
from clearwall.model import Action, RuleKind

NAME = "unbound"

# Zone type -> (rule kind, per-rule action or None for "the order's action").
ZONE_TYPES: dict[str, tuple[RuleKind, Action | None]] = {
    "always_null": (RuleKind.SUBTREE, None),
    "always_nxdomain": (RuleKind.SUBTREE, Action.NXDOMAIN),
    "always_nodata": (RuleKind.SUBTREE, Action.NODATA),
    "always_refuse": (RuleKind.SUBTREE, Action.REFUSED),
    "refuse": (RuleKind.SUBTREE, Action.REFUSED),
    # deny drops the query unanswered; clearwall always answers, REFUSED is the closest.
    "always_deny": (RuleKind.SUBTREE, Action.REFUSED),
    "deny": (RuleKind.SUBTREE, Action.REFUSED),
    "inform_deny": (RuleKind.SUBTREE, Action.REFUSED),
    # static without local-data answers NXDOMAIN (NODATA at names that have data).
    "static": (RuleKind.SUBTREE, Action.NXDOMAIN),
    # redirect answers the zone's local-data for every name below it: a sinkhole.
    "redirect": (RuleKind.SUBTREE, Action.SINKHOLE),
    "transparent": (RuleKind.ALLOW_SUBTREE, None),
    "always_transparent": (RuleKind.ALLOW_SUBTREE, None),
    "typetransparent": (RuleKind.ALLOW_SUBTREE, None),
    "inform": (RuleKind.ALLOW_SUBTREE, None),
}


# HaGeZi's form, the whole of most Unbound blocklists.
_ALWAYS_NULL = clean_lines(r'local-zone:[ \t]+"', r'\."[ \t]+always_null')


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    return text


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read ``local-zone`` (and ``local-data``) lines into ``out``."""
    parse_batched(lines, out, ((_ALWAYS_NULL, RuleKind.SUBTREE),), _lines)


def _lines(batch: list[str], start: int, out: Collector) -> None:
    for lineno, line, raw in content_lines(batch, start, out):
        if "#" in line:
            line = strip_comment(line, "#")
        key, sep, value = line.partition(":")
        if not sep:
            out.issue(lineno, "not an Unbound configuration line", raw)
        elif key == "local-zone":
            _local_zone(value, lineno, raw, out)
        elif key == "local-data":
            _local_data(value, lineno, raw, out)
        elif key in ("server", "forward-zone", "stub-zone", "auth-zone", "remote-control"):
            out.skip("clause")
        elif key == "include":
            out.issue(lineno, "include: is not followed; import the included file itself", raw)
        else:
            out.skip("option")


def _local_zone(value: str, lineno: int, raw: str, out: Collector) -> None:
    fields = value.split()
    if len(fields) != 2:
        out.issue(lineno, "local-zone needs a name and a type", raw)
        return
    zone_type = fields[1].lower()
    entry = ZONE_TYPES.get(zone_type)
    if entry is None:
        out.issue(lineno, f"unsupported local-zone type {zone_type!r}", raw)
        return
    kind, action = entry
    name = _unquote(fields[0])
    if name[-1:] == "." and name != ".":
        name = name[:-1]  # keeps the common form on the parsers' fast path
    out.add_name(kind, name, lineno, raw, action)


def _local_data(value: str, lineno: int, raw: str, out: Collector) -> None:
    fields = _unquote(value).split()
    if not fields:
        out.issue(lineno, "empty local-data", raw)
        return
    if out.add_name(RuleKind.EXACT, fields[0], lineno, raw, Action.SINKHOLE):
        out.issue(lineno, "local-data imported as a sinkhole; its record data is not kept", raw)
