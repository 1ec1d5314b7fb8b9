"""The AdBlock / AdGuard DNS filter syntax, reduced to what a DNS resolver can enforce.

``||name^`` blocks the name and its subdomains (SUBTREE), ``|name^`` only the name
(EXACT), ``||*.name^`` only what lies below it (WILDCARD); ``@@`` makes any of them an
exception. ``$important`` is accepted (clearwall's precedence is per order, not per rule);
every other modifier narrows or changes a rule in a way a policy rule cannot hold, so
those rules are reported and skipped. Cosmetic (element-hiding, scriptlet, CSS) rules
have no DNS meaning and are counted, not reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from clearwall.formats.base import MAX_LINE, Collector, clean_lines, parse_batched
from clearwall.formats.hosts import LOCAL_NAMES, is_address
from clearwall.model import RuleKind

NAME = "adblock"

# ##, #@#, #?#, #@?#, #$#, #@$#, #%#, #@%#, #$?#, #@$?# and HTML filters $$ / $@$.
COSMETIC = re.compile(r"#@?[$%?]{0,2}#|\$@?\$")

_CLEAN = clean_lines(r"\|\|", r"\^")

_BLOCK = {"subtree": RuleKind.SUBTREE, "exact": RuleKind.EXACT, "wildcard": RuleKind.WILDCARD}
_ALLOW = {
    "subtree": RuleKind.ALLOW_SUBTREE,
    "exact": RuleKind.ALLOW_EXACT,
    "wildcard": RuleKind.ALLOW_WILDCARD,
}


def _split_pattern(pattern: str) -> tuple[str, str, str] | str:
    """Return (selector, host, note) for a DNS-level pattern, or a message saying why not."""
    note = ""
    if pattern.startswith("||"):
        body, selector = pattern[2:], "subtree"
    elif pattern.startswith("|"):
        body, selector = pattern[1:], "exact"
        if not body.endswith(("^", "^|")):
            return "'|name' without '^' is a URL-prefix rule, not a DNS rule"
    else:
        body, selector = pattern, "exact"
    if body.endswith("^|"):
        body = body[:-2]
    elif body.endswith("^"):
        body = body[:-1]
    elif selector == "subtree":
        note = "'||name' without '^' also matches longer names; imported as name and subdomains"
    if selector == "subtree" and body.startswith("*."):
        body, selector = body[2:], "wildcard"
    if "/" in body:
        return "URL rule with a path: not enforceable at the DNS level"
    if any(c in body for c in "*^|"):
        return f"unsupported pattern {pattern!r}"
    return selector, body, note


def parse(lines: Iterable[str], out: Collector) -> None:
    """Read AdBlock/AdGuard DNS rules into ``out``."""
    parse_batched(lines, out, ((_CLEAN, RuleKind.SUBTREE),), _lines)


def _lines(batch: list[str], start: int, out: Collector) -> None:
    for lineno, raw in enumerate(batch, start):
        line = raw.strip()
        if not line:
            out.skip("blank")
            continue
        first = line[0]
        if first == "!":
            out.skip("comment")
            continue
        if first == "[":
            out.skip("header")
            continue
        if ("#" in line or "$$" in line or "$@$" in line) and COSMETIC.search(line):
            out.skip("cosmetic")
            continue
        if first == "#":
            out.skip("comment")
            continue
        if len(line) > MAX_LINE:
            out.issue(lineno, "line too long", raw)
            continue
        _parse_rule(line, lineno, raw, out)


def _parse_rule(line: str, lineno: int, raw: str, out: Collector) -> None:
    allow = line.startswith("@@")
    body = line[2:] if allow else line
    if body.startswith("/") and (body.endswith("/") or "/$" in body):
        out.issue(lineno, "regular-expression rules are not supported", raw)
        return
    if "$" in body:
        body, _, modifiers = body.rpartition("$")
        unsupported = [m for m in modifiers.split(",") if m.strip() != "important"]
        if unsupported:
            names = ", ".join("$" + m.strip() for m in unsupported)
            out.issue(lineno, f"unsupported modifier {names}; rule skipped", raw)
            return
    fields = body.split()
    if len(fields) > 1:
        # AdGuard also accepts /etc/hosts lines; they block each name exactly.
        if allow or not is_address(fields[0]):
            out.issue(lineno, "not an AdBlock rule", raw)
            return
        for token in fields[1:]:
            if token.lower() in LOCAL_NAMES:
                out.skip("local")
            else:
                out.add_name(RuleKind.EXACT, token, lineno, raw)
        return
    split = _split_pattern(body)
    if isinstance(split, str):
        out.issue(lineno, split, raw)
        return
    selector, host, note = split
    if note:
        out.issue(lineno, note, raw)
    kind = (_ALLOW if allow else _BLOCK)[selector]
    out.add_name(kind, host, lineno, raw)
