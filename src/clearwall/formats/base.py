"""Result types every list parser returns, and the collector and batch reader they share."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

from clearwall.errors import InvalidName
from clearwall.model import Action, RuleKind
from clearwall.policy.model import RuleSpec
from clearwall.policy.names import normalize_name

MAX_LINE = 4096
"""Longer lines are reported and skipped: no list format needs them, and they cost memory."""

# A name that already is canonical: lowercase LDH/underscore labels, no IDNA to check.
# Such names skip normalize_name's per-label loop; everything else goes through it.
_NAME = r"(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)"
_CANONICAL = re.compile(_NAME)

BATCH = 2048
"""Lines the parsers hand to ``Collector.add_batch`` at a time."""


def batches(lines: Iterable[str]) -> Iterator[list[str]]:
    """``lines`` in lists of ``BATCH``."""
    it = iter(lines)
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


LineParser = Callable[[list[str], int, "Collector"], None]
"""A format's per-line path: parses ``lines`` numbered from ``start`` into the collector."""


def content_lines(batch: list[str], start: int, out: Collector) -> Iterator[tuple[int, str, str]]:
    """The lines of ``batch`` (numbered from ``start``) that carry content, as
    ``(lineno, stripped line, raw line)``: blank and ``#`` comment lines are counted as
    skipped and over-long lines reported, the same in every ``#``-commented format."""
    for lineno, raw in enumerate(batch, start):
        line = raw.strip()
        if not line:
            out.skip("blank")
        elif line[0] == "#":
            out.skip("comment")
        elif len(line) > MAX_LINE:
            out.issue(lineno, "line too long", raw)
        else:
            yield lineno, line, raw


def parse_batched(
    lines: Iterable[str],
    out: Collector,
    clean: Sequence[tuple[re.Pattern[str], RuleKind]],
    per_line: LineParser,
    reserved: frozenset[str] = frozenset(),
) -> None:
    """Parse ``lines`` a batch at a time: clean batches in bulk, the rest line by line.

    ``clean`` lists the patterns (see ``clean_lines``) whose lines map straight to a rule
    kind. A batch that is not clean throughout is halved until the clean parts are found,
    so one comment or IDNA name does not send 2,047 clean neighbours down the slow path.
    """
    lineno = 0
    for batch in batches(lines):
        _feed(batch, lineno + 1, out, clean, per_line, reserved)
        lineno += len(batch)
    out.lines = lineno


def _feed(
    batch: list[str],
    start: int,
    out: Collector,
    clean: Sequence[tuple[re.Pattern[str], RuleKind]],
    per_line: LineParser,
    reserved: frozenset[str],
) -> None:
    # Only patterns with a match in the batch are tried, and halving only pays when some
    # lines are clean: a list in a form the patterns do not cover (e.g. always_nxdomain
    # zones) would otherwise be scanned twice per halving level before its lines are.
    text = "\n".join(batch)
    clean = [(pattern, kind) for pattern, kind in clean if pattern.search(text)]
    for pattern, kind in clean:
        if out.add_batch(pattern, batch, kind, reserved) is not None:
            return
    if len(batch) <= 32 or not clean:
        per_line(batch, start, out)
        return
    half = len(batch) // 2
    _feed(batch[:half], start, out, clean, per_line, reserved)
    _feed(batch[half:], start + half, out, clean, per_line, reserved)


def clean_lines(prefix: str, suffix: str) -> re.Pattern[str]:
    """A multi-line pattern for ``prefix NAME suffix`` lines whose NAME is canonical.

    ``prefix`` and ``suffix`` are regular expressions; trailing blanks and CR are allowed.
    """
    return re.compile(rf"^{prefix}({_NAME}){suffix}[ \t\r]*$", re.MULTILINE)


def _valid_alabels(name: str) -> bool:
    """True when a name that passed ``_CANONICAL`` also has valid punycode labels."""
    try:
        return normalize_name(name) == name
    except InvalidName:
        return False


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


_Key = str | tuple[RuleKind, str, Action | None]


class Collector:
    """Accumulates rules, issues and skip counts while a parser walks a file.

    Rules are deduplicated on the full ``RuleSpec`` value, in input order (a dict). Most
    lists hold one kind of rule only, so rules of the first (kind, action) seen are keyed
    by their name alone and others by a (kind, name, action) tuple: a str never equals a
    tuple, and a million-line list then costs no tuple per line.
    """

    __slots__ = ("_added", "_mixed", "_primary", "_rules", "issues", "lines", "skipped", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._rules: dict[_Key, None] = {}
        self._primary: tuple[RuleKind, Action | None] | None = None
        self._mixed = False
        self._added = 0
        self.issues: list[ParseIssue] = []
        self.skipped: Counter[str] = Counter()
        self.lines = 0

    def _key(self, kind: RuleKind, value: str, action: Action | None) -> _Key:
        primary = self._primary
        if primary is None:
            self._primary = primary = (kind, action)
        if kind is primary[0] and action is primary[1]:
            return value
        self._mixed = True
        return (kind, value, action)

    def add(self, kind: RuleKind, value: str, action: Action | None = None) -> None:
        """Record one rule (a duplicate of an earlier one is counted, not repeated)."""
        self._rules[self._key(kind, value, action)] = None
        self._added += 1

    def add_batch(
        self,
        pattern: re.Pattern[str],
        batch: list[str],
        kind: RuleKind,
        reserved: frozenset[str] = frozenset(),
    ) -> list[str] | None:
        """Record a whole batch of lines if every one is a clean ``pattern`` line.

        The hot path of million-line lists: one regex pass over the joined batch replaces
        a Python-level check per line. Returns the names added, or None (nothing done)
        when any line needs the per-line path (comments, invalid or IDNA names, names in
        ``reserved``…).
        """
        text = "\n".join(batch)
        names: list[str] = pattern.findall(text)
        # Each line can match once at most, so equal counts mean every line matched.
        if len(names) != len(batch) or max(map(len, names)) > 253:
            return None
        if "xn--" in text and not all(_valid_alabels(n) for n in names if "xn--" in n):
            return None
        if reserved and not reserved.isdisjoint(names):
            return None
        if self._primary is None:
            self._primary = (kind, None)
        if self._primary == (kind, None):
            self._rules.update(dict.fromkeys(names))
        else:
            self._mixed = True
            self._rules.update(
                dict.fromkeys(zip(itertools.repeat(kind), names, itertools.repeat(None)))
            )
        self._added += len(names)
        return names

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
        self._rules[self._key(kind, name, action)] = None
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
        rules: list[RuleSpec]
        if self._primary is None:
            rules = []
        elif not self._mixed:
            kind, action = self._primary
            names = cast("dict[str, None]", self._rules)  # every key is a name here
            rules = list(map(RuleSpec, itertools.repeat(kind), names, itertools.repeat(action)))
        else:
            kind, action = self._primary
            rules = [
                RuleSpec(kind, key, action) if isinstance(key, str) else RuleSpec(*key)
                for key in self._rules
            ]
        return ParseResult(
            format=fmt,
            rules=rules,
            issues=sorted(self.issues, key=lambda issue: issue.line),
            skipped=dict(self.skipped),
            lines=self.lines,
        )
