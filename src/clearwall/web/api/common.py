"""Helpers the API routers share: list parsing with readable errors."""

from __future__ import annotations

from clearwall.errors import FormatError
from clearwall.formats import ParseResult, parse_text
from clearwall.web.api.schemas import ParseIssueOut

MAX_ISSUES = 50  # a response lists at most this many skipped lines; the count is exact


def parse_rules(text: str, fmt: str, source: str) -> ParseResult:
    """Parse list text in ``fmt`` (or detect it); FormatError when it is not a list.

    A non-empty text of which not one line is a rule is refused too: publishing an empty
    order from a mistaken upload would only put noise on the log.
    """
    result = parse_text(text, format=fmt, source=source)
    if text.strip() and not result.rules and result.issues:
        first = result.issues[0]
        raise FormatError(
            f"no rule found in {source}: {len(result.issues)} line(s) skipped, "
            f"first at line {first.line}: {first.message}"
        )
    return result


def issues_of(result: ParseResult) -> list[ParseIssueOut]:
    """The first skipped lines of a parse, for the response body."""
    return [ParseIssueOut(line=i.line, message=i.message) for i in result.issues[:MAX_ISSUES]]
