"""The plain domain-list format: one name per line, each an exact-match block.

A domains file is exact-match: HaGeZi, Block List Project and StevenBlack domain files
list every subdomain they mean explicitly. A line written ``*.name`` or ``+.name`` is read
as the wildcard format reads it (name and all subdomains), so mixed files lose nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from clearwall.formats.base import MAX_LINE, Collector, clean_lines, parse_batched
from clearwall.model import RuleKind

NAME = "domains"

_PLAIN = clean_lines("", "")
_WILDCARD = clean_lines(r"[*+]\.", "")


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read plain names (EXACT) and ``*.``/``+.`` names (SUBTREE) into ``out``."""
    parse_batched(lines, out, ((_PLAIN, RuleKind.EXACT), (_WILDCARD, RuleKind.SUBTREE)), _lines)


def _lines(batch: list[str], start: int, out: Collector) -> None:
    for lineno, raw in enumerate(batch, start):
        _line(raw, lineno, out)


def _line(raw: str, lineno: int, out: Collector) -> None:
    line = raw.strip()
    if not line:
        out.skip("blank")
        return
    first = line[0]
    if first == "#" or first == "!":
        out.skip("comment")
        return
    if len(line) > MAX_LINE:
        out.issue(lineno, "line too long", raw)
        return
    if "#" in line:
        line = line.split("#", 1)[0].rstrip()
    if " " in line or "\t" in line:
        out.issue(lineno, "more than one name on the line", raw)
        return
    if (first == "*" or first == "+") and line[1:2] == ".":
        out.add_name(RuleKind.SUBTREE, line[2:], lineno, raw)
    else:
        out.add_name(RuleKind.EXACT, line, lineno, raw)
