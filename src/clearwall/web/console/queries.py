"""The query log in the console: filters, top blocked names per order, JSON-lines export.

Operators see every record; an authority only those of its jurisdiction's clients;
auditors none (the records are about users, not about policy). Export is for operators.
Client addresses were truncated before they were written (docs/querylog.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from clearwall.querylog import Filters, QueryLogReader
from clearwall.querylog.reader import DECISIONS
from clearwall.store.records import TokenRole
from clearwall.web.auth import Principal, deny
from clearwall.web.console.figures import log_directory
from clearwall.web.console.session import render, require
from clearwall.web.context import WebContext

router = APIRouter()

PAGE = 100
SPANS = {"1": 3600, "6": 6 * 3600, "24": 86400, "168": 7 * 86400, "": 0}


def _filters(
    request: Request, who: Principal, name: str, decision: str, order: str, hours: str
) -> Filters:
    if who.role is TokenRole.AUDITOR:
        raise deny(request, "operator-only", "the query log is for operators and authorities")
    span = SPANS.get(hours, 0)
    return Filters(
        name=name.strip(),
        decision=decision if decision in DECISIONS else "",
        order=int(order) if order.isdigit() else None,
        since=time.time() - span if span else None,
        jurisdiction=who.jurisdiction,
    )


@router.get("/queries")
def queries(
    request: Request,
    name: str = Query("", max_length=300),
    decision: str = Query("", max_length=20),
    order: str = Query("", max_length=20),
    hours: str = Query("24", max_length=4),
    page: int = Query(1, ge=1, le=1000),
) -> Response:
    """Recent queries matching the filters, newest first, and the top blocked names."""
    who = require(request)
    f = _filters(request, who, name, decision, order, hours)
    ctx: WebContext = request.app.state.ctx
    on = ctx.config.logging.query_log
    reader = QueryLogReader(log_directory(ctx))
    entries = reader.search(f, PAGE + 1, (page - 1) * PAGE)
    return render(
        request,
        "console/queries.html",
        {
            "nav": "queries",
            "on": on,
            "entries": entries[:PAGE],
            "more": len(entries) > PAGE,
            "page": page,
            "top": reader.top_blocked(f, 10),
            "form": {"name": name, "decision": f.decision, "order": order, "hours": hours},
            "decisions": DECISIONS,
            "logging": ctx.config.logging,
            "may_export": who.role is TokenRole.OPERATOR,
        },
        who,
    )


@router.get("/queries/export")
def export(
    request: Request,
    name: str = Query("", max_length=300),
    decision: str = Query("", max_length=20),
    order: str = Query("", max_length=20),
    hours: str = Query("", max_length=4),
) -> Response:
    """Every matching record as JSON lines (operators only)."""
    who = require(request)
    if who.role is not TokenRole.OPERATOR:
        raise deny(request, "operator-only", "only operators may export the query log")
    f = _filters(request, who, name, decision, order, hours)
    ctx: WebContext = request.app.state.ctx
    reader = QueryLogReader(log_directory(ctx))

    def lines() -> Iterator[bytes]:
        for entry in reader.export(f):
            yield (json.dumps(entry.to_json(), separators=(",", ":")) + "\n").encode()

    return StreamingResponse(
        lines(),
        media_type="application/jsonl",
        headers={
            "Content-Disposition": 'attachment; filename="clearwall-queries.jsonl"',
            "Cache-Control": "no-store",
        },
    )
