"""Helpers the API routers share: parse issues as response bodies."""

from __future__ import annotations

from clearwall.formats import ParseResult
from clearwall.web.api.schemas import ParseIssueOut

MAX_ISSUES = 50  # a response lists at most this many skipped lines; the count is exact


def issues_of(result: ParseResult) -> list[ParseIssueOut]:
    """The first skipped lines of a parse, for the response body."""
    return [ParseIssueOut(line=i.line, message=i.message) for i in result.issues[:MAX_ISSUES]]
