"""Blocklist formats: parse every common list format into rules, and export rules again.

    >>> from clearwall.formats import parse_text
    >>> parse_text("||ads.example^\\n").rules[0].describe()
    'subtree ads.example'

Formats: hosts, domains, wildcard, adblock, dnsmasq, unbound, rpz (see docs/formats.md).
"""

from __future__ import annotations

from clearwall.formats.base import ParseIssue, ParseResult
from clearwall.formats.detect import detect_format
from clearwall.formats.export import export_domains, export_hosts, export_rpz
from clearwall.formats.load import FORMATS, parse_file, parse_text

__all__ = [
    "FORMATS",
    "ParseIssue",
    "ParseResult",
    "detect_format",
    "export_domains",
    "export_hosts",
    "export_rpz",
    "parse_file",
    "parse_text",
]
