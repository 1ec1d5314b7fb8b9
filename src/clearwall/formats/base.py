"""Result types every list parser returns, and the collector the parsers fill line by line."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from clearwall.errors import InvalidName
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.policy.names import normalize_name

MAX_LINE = 4096
"""Longer lines are reported and skipped: no list format needs them, and they cost memory."""

# A name that already is canonical: lowercase LDH/underscore labels, no IDNA to check.
# Such names skip normalize_name's per-label loop; everything else goes through it.
_CANONICAL = re.compile(r"(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)")


def fast_normalize(text: str) -> str:
    """Canonical form of a name, like ``normalize_name`` but quick for names already clean.

    Raises InvalidName exactly when ``normalize_name`` does.
    """
    if len(text) <= 253 and _CANONICAL.fullmatch(text) and "xn--" not in text:
        return text
    return normalize_name(text)


def strip_comment(line: str, marker: str) -> str:
    """``line`` without a trailing comment that starts with ``marker`` outside quotes."""
    if '"' not in line:
        return line.split(marker, 1)[0].rstrip()
    quoted = False
    for i, char in enumerate(line):
        if char == '"':
            quoted = not quoted
        elif char == marker and not quoted:
            return line[:i].rstrip()
    return line


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """One line of a list that was not imported as written, and why."""

    source: str
    line: int
    message: str
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass(slots=True)
class ParseResult:
    """What a list file held: its format, its rules, and what was skipped or reported.

    ``rules`` is deduplicated and in input order. ``skipped`` counts lines that are not
    rules by design (comments, blank lines, cosmetic filters, ``localhost`` entries…);
    ``issues`` lists lines that should have been rules but were not imported as written.
    ``lines`` is the number of lines read.
    """

    format: str
    rules: list[RuleSpec] = field(default_factory=list)
    issues: list[ParseIssue] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    lines: int = 0


class Collector:
    """Accumulates rules, issues and skip counts while a parser walks a file.

    Rules are deduplicated on the full ``RuleSpec`` value (a dict keeps input order).
    """

    __slots__ = ("_added", "_rules", "issues", "lines", "skipped", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        # Keyed on plain tuples: hashing them is several times cheaper than hashing
        # RuleSpec dataclasses, and this runs once per line of million-line lists.
        self._rules: dict[tuple[RuleKind, str, Action | None], None] = {}
        self._added = 0
        self.issues: list[ParseIssue] = []
        self.skipped: Counter[str] = Counter()
        self.lines = 0

    def add(self, kind: RuleKind, value: str, action: Action | None = None) -> None:
        """Record one rule (a duplicate of an earlier one is counted, not repeated)."""
        self._rules[kind, value, action] = None
        self._added += 1

    def add_canonical(self, kind: RuleKind, text: str) -> bool:
        """Record ``text`` if it already is a canonical name; False (nothing done) if not.

        The parsers' fast path: most lines of real lists hold a clean lowercase name.
        """
        if len(text) <= 253 and _CANONICAL.fullmatch(text) and "xn--" not in text:
            self._rules[kind, text, None] = None
            self._added += 1
            return True
        return False

    def add_name(
        self, kind: RuleKind, text: str, lineno: int, line: str, action: Action | None = None
    ) -> bool:
        """Normalize ``text`` and record it; report the line and return False if invalid."""
        # The regex admits only lowercase ASCII, so a match is already canonical.
        if len(text) <= 253 and _CANONICAL.fullmatch(text) and "xn--" not in text:
            name = text
        else:
            try:
                name = normalize_name(text)
            except InvalidName as exc:
                self.issue(lineno, str(exc), line)
                return False
        self._rules[kind, name, action] = None
        self._added += 1
        return True

    def issue(self, lineno: int, message: str, line: str) -> None:
        """Report a line that was not imported as written."""
        self.issues.append(ParseIssue(self.source, lineno, message, line.rstrip("\r\n")[:200]))

    def skip(self, reason: str) -> None:
        """Count a line that is not a rule by design."""
        self.skipped[reason] += 1

    def result(self, fmt: str) -> ParseResult:
        """The finished result for format ``fmt``."""
        duplicates = self._added - len(self._rules)
        if duplicates:
            self.skipped["duplicate"] += duplicates
        return ParseResult(
            format=fmt,
            rules=[RuleSpec(kind, value, action) for kind, value, action in self._rules],
            issues=sorted(self.issues, key=lambda issue: issue.line),
            skipped=dict(self.skipped),
            lines=self.lines,
        )
