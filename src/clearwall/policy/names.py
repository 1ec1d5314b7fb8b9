"""Domain-name normalization: one canonical form for every name the policy holds.

The canonical form is lowercase ASCII (A-labels via IDNA 2008 / UTS 46), without the
trailing dot, each label 1-63 octets of letters, digits, hyphen or underscore, total
wire length at most 255 octets (RFC 1035 section 2.3.4). Underscores are allowed because
real blocklists and DNS-SD/SRV owner names contain them.
"""

from __future__ import annotations

import re

import idna

from clearwall.errors import InvalidName

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_ASCII = re.compile(r"^[\x21-\x7e]+$")


def normalize_name(text: str) -> str:
    """Return the canonical form of a domain name or raise InvalidName saying why.

    The root (``"."`` or ``""``) is not a valid policy name.
    """
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise InvalidName(f"empty name: {text!r}")
    if not _ASCII.match(name):
        try:
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise InvalidName(f"invalid IDNA name {text!r}: {exc}") from exc
    name = name.lower()
    labels = name.split(".")
    if len(name) + 2 > 255:
        raise InvalidName(f"name longer than 253 characters: {text!r}")
    for label in labels:
        if not label:
            raise InvalidName(f"empty label in {text!r}")
        if len(label) > 63:
            raise InvalidName(f"label longer than 63 octets in {text!r}")
        if not _LABEL.match(label):
            raise InvalidName(f"invalid character or hyphen position in label {label!r}")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as exc:
                raise InvalidName(f"invalid punycode label {label!r}: {exc}") from exc
    return name


def is_subdomain(name: str, parent: str) -> bool:
    """True when ``name`` equals ``parent`` or lies below it (both canonical)."""
    return name == parent or name.endswith("." + parent)


def to_unicode(name: str) -> str:
    """Best-effort U-label form of a canonical name, for display only."""
    try:
        return idna.decode(name)
    except (idna.IDNAError, UnicodeError):
        return name
