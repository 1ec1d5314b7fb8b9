"""Format auto-detection: each of the first meaningful lines votes for the formats it fits.

A line is meaningful when it is neither blank nor a comment (``#``, ``!``, ``;``, ``//``).
Each of the first ``SAMPLE`` meaningful lines is classified by its shape:

============  ==============================================================
rpz           a ``$ORIGIN``/``$TTL``/``$INCLUDE`` directive, or a record whose
              type is SOA, NS, CNAME, A, AAAA or TXT (``name [ttl] [IN] TYPE …``)
unbound       ``server:``, ``local-zone:``, ``local-data:``, ``include:``, ``*-zone:``
dnsmasq       ``address=``, ``server=`` or ``local=``
adblock       ``|…``, ``@@…``, ``/regex/``, ``[Adblock …]`` or a cosmetic rule
hosts         an IP address followed by at least one name
wildcard      one token starting with ``*.`` or ``+.``
domains       one token made of name characters (letters, digits, ``.-_``)
============  ==============================================================

The format with the most votes wins; ties go to the earlier format in that table. If
fewer than half of the sampled lines fit the winner, the text is not a list
(``FormatError``). A text with no meaningful line at all is an empty domains list.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from clearwall.errors import FormatError
from clearwall.formats.adblock import COSMETIC
from clearwall.formats.hosts import is_address

SAMPLE = 200

ORDER = ("rpz", "unbound", "dnsmasq", "adblock", "hosts", "wildcard", "domains")

_NAMEY = re.compile(r"[\w.-]+\.?")
_UNBOUND = ("server:", "local-zone:", "local-data:", "include:", "forward-zone:", "stub-zone:")
_RR_TYPES = frozenset({"SOA", "NS", "CNAME", "A", "AAAA", "TXT", "DNAME", "MX", "PTR"})
_TTL_OR_CLASS = re.compile(r"\d+[smhdwSMHDW]?|IN|in|CH|HS")
_COMMENTS = ("#", "!", ";", "//")


def classify(line: str) -> str | None:
    """The format one meaningful (stripped, non-comment) line fits best, if any."""
    if line[0] == "$":
        return "rpz" if line.split()[0].upper() in ("$ORIGIN", "$TTL", "$INCLUDE") else None
    if line.startswith(_UNBOUND):
        return "unbound"
    if line.startswith(("address=", "server=", "local=")):
        return "dnsmasq"
    if line.startswith(("|", "@@", "[Adblock", "[AdGuard")) or (
        len(line) > 1 and line[0] == line[-1] == "/"
    ):
        return "adblock"
    if COSMETIC.search(line):
        return "adblock"
    for marker in (" #", "\t#"):
        if marker in line:
            line = line.split(marker, 1)[0]
    fields = line.split()
    if len(fields) >= 2 and is_address(fields[0]):
        return "hosts"
    if len(fields) >= 2 and _looks_like_record(fields):
        return "rpz"
    if len(fields) == 1:
        token = fields[0]
        if token[:2] in ("*.", "+.") and _NAMEY.fullmatch(token, 2):
            return "wildcard"
        if _NAMEY.fullmatch(token):
            return "domains"
        if token.endswith("^") and _NAMEY.fullmatch(token, 0, len(token) - 1):
            return "adblock"
    return None


def _looks_like_record(fields: list[str]) -> bool:
    # name [ttl] [class] TYPE rdata…; an indented record has no name, but the
    # caller strips lines, so allow the type to sit in any of the first four fields.
    for i, field in enumerate(fields[:4]):
        if field.upper() in _RR_TYPES and i + 1 < len(fields):
            return all(i == 0 or _TTL_OR_CLASS.fullmatch(f) for f in fields[1:i])
    return False


def meaningful(line: str) -> str | None:
    """``line`` stripped, or None when it is blank or a comment."""
    stripped = line.strip()
    if not stripped or stripped.startswith(_COMMENTS):
        return None
    return stripped


def detect_format(lines: Iterable[str] | str, source: str = "<input>") -> str:
    """Name the format of a list from its first meaningful lines (see module docs).

    Raises FormatError when the text is not a blocklist in any supported format.
    """
    if isinstance(lines, str):
        lines = lines.split("\n")
    votes: Counter[str] = Counter()
    sampled = 0
    for line in lines:
        stripped = meaningful(line)
        if stripped is None:
            # "[Adblock Plus 2.0]" and ";" headers aside, comments carry no vote.
            continue
        sampled += 1
        fmt = classify(stripped)
        if fmt is not None:
            votes[fmt] += 1
        if sampled >= SAMPLE:
            break
    if sampled == 0:
        return "domains"
    if not votes:
        raise FormatError(f"{source} is not a blocklist in any supported format")
    best = max(ORDER, key=lambda f: (votes[f], -ORDER.index(f)))
    # A domains file with a few *.name lines is still a domains file, and vice versa;
    # the shared parser reads both, so plain and wildcard lines vote together.
    if best in ("domains", "wildcard"):
        fitting = votes["domains"] + votes["wildcard"]
    elif best == "adblock":
        fitting = votes["adblock"] + votes["domains"] + votes["hosts"]
    else:
        fitting = votes[best]
    if fitting * 2 < sampled:
        raise FormatError(
            f"{source} is not a blocklist in any supported format "
            f"(only {fitting} of {sampled} sampled lines look like {best})"
        )
    return best
