"""Cross-border requests on the portal: all of them with the matrix of who asked whom,
one request, and each jurisdiction's incoming and outgoing requests."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clearwall.store.records import CrossBorderRequest, RequestStatus
from clearwall.web.api.schemas import PathId
from clearwall.web.context import WebContext
from clearwall.web.portal.render import page

router = APIRouter()


@dataclass
class RequestMatrix:
    """Requests between jurisdictions: rows are senders, columns receivers, each cell the
    count of requests per status."""

    codes: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, requests: list[CrossBorderRequest]) -> RequestMatrix:
        """The matrix of ``requests``."""
        matrix = cls()
        codes: set[str] = set()
        for r in requests:
            codes.update((r.from_jurisdiction, r.to_jurisdiction))
            cell = matrix.cells.setdefault((r.from_jurisdiction, r.to_jurisdiction), Counter())
            cell[r.status.value] += 1
        matrix.codes = sorted(codes)
        return matrix

    def cell(self, sender: str, receiver: str) -> str:
        """A cell's text, e.g. ``2 accepted · 1 open`` ('' when none)."""
        counts = self.cells.get((sender, receiver))
        if not counts:
            return ""
        return " · ".join(f"{counts[s.value]} {s.value}" for s in RequestStatus if counts[s.value])


def took(r: CrossBorderRequest) -> str:
    """The time to decision as a person reads it ('' while undecided or when withdrawn)."""
    delta = r.time_to_decision
    if delta is None:
        return ""
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{int(seconds)} s"
    hours = seconds / 3600
    if hours < 1:
        return f"{round(seconds / 60)} min"
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


@router.get("/requests")
def requests(request: Request) -> Response:
    """Every cross-border request, newest first, and the matrix of who asked whom."""
    ctx: WebContext = request.app.state.ctx
    found = ctx.reader.requests()
    return page(
        request,
        "requests.html",
        {
            "nav": "requests",
            "requests": list(reversed(found)),
            "matrix": RequestMatrix.of(found),
            "took": took,
        },
    )


@router.get("/requests/{request_id}")
def one_request(request: Request, request_id: PathId) -> Response:
    """One request: who asked whom for what, on which basis, and what was decided."""
    ctx: WebContext = request.app.state.ctx
    r = ctx.reader.request(request_id)
    decided_by = ctx.reader.authority(r.decided_by) if r.decided_by is not None else None
    return page(
        request,
        "request.html",
        {
            "nav": "requests",
            "r": r,
            "filer": ctx.reader.authority(r.authority_id),
            "decided_by": decided_by,
            "took": took(r),
        },
    )


@router.get("/jurisdictions/{code}/requests")
def jurisdiction_requests(request: Request, code: str) -> Response:
    """A jurisdiction's incoming and outgoing requests, their status and decisions."""
    ctx: WebContext = request.app.state.ctx
    j = ctx.reader.jurisdiction(code)
    found = list(reversed(ctx.reader.requests(jurisdiction=j.code)))
    return page(
        request,
        "jurisdiction_requests.html",
        {
            "nav": "requests",
            "jurisdiction": j,
            "incoming": [r for r in found if r.to_jurisdiction == j.code],
            "outgoing": [r for r in found if r.from_jurisdiction == j.code],
            "took": took,
        },
    )
