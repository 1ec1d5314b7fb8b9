"""The plain domain-list format: one name per line, each an exact-match block.

A domains file is exact-match: HaGeZi, Block List Project and StevenBlack domain files
list every subdomain they mean explicitly. A line written ``*.name`` or ``+.name`` is read
as the wildcard format reads it (name and all subdomains), so mixed files lose nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from clearwall.formats.base import MAX_LINE, Collector
from clearwall.model import RuleKind

NAME = "domains"


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read plain names (EXACT) and ``*.``/``+.`` names (SUBTREE) into ``out``."""
    exact, subtree = RuleKind.EXACT, RuleKind.SUBTREE
    lineno = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            out.skip("blank")
            continue
        first = line[0]
        if first == "#" or first == "!":
            out.skip("comment")
            continue
        if len(line) > MAX_LINE:
            out.issue(lineno, "line too long", raw)
            continue
        if "#" in line:
            line = line.split("#", 1)[0].rstrip()
        if " " in line or "\t" in line:
            out.issue(lineno, "more than one name on the line", raw)
            continue
        if (first == "*" or first == "+") and line[1:2] == ".":
            out.add_name(subtree, line[2:], lineno, raw)
        else:
            out.add_name(exact, line, lineno, raw)
    out.lines = lineno
