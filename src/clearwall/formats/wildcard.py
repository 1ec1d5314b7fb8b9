"""The wildcard list format: ``*.name`` (HaGeZi) or ``+.name`` (oisd), name and subdomains.

HaGeZi's wildcard files and oisd's ``+.`` files both mean "this name and everything below
it", so each line becomes a SUBTREE rule, the same rule the AdBlock form ``||name^`` gives.
A bare name in such a file keeps the domains meaning (EXACT); the parser is shared.
"""

from __future__ import annotations

from clearwall.formats import domains

NAME = "wildcard"

parse = domains.parse
