"""The console's front page: the sign-in form, or the dashboard once signed in."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import Response

from clearwall.querylog import QueryLogReader
from clearwall.web import charts
from clearwall.web.console.figures import gateway_figures, history, log_directory
from clearwall.web.console.session import principal, render, sign_in_page
from clearwall.web.context import WebContext
from clearwall.web.portal.logpage import recent_entries

router = APIRouter()


def _last_change(ctx: WebContext) -> tuple[dt.datetime | None, str]:
    """(time, type) of the newest log entry, read by the log page's summary (None, ""
    for an empty log)."""
    newest = recent_entries(ctx, 1)
    if not newest:
        return None, ""
    return newest[0].time, newest[0].type


@router.get("")
def dashboard(request: Request) -> Response:
    """Queries and blocks over time, cache and upstream figures, the policy in force."""
    who = principal(request)
    if who is None:
        return sign_in_page(request)
    ctx: WebContext = request.app.state.ctx
    scope = who.jurisdiction
    figures = gateway_figures(ctx.registry if ctx.gateway_metrics else None, scope)
    stats = ctx.stats.get(None)
    changed_at, changed_kind = _last_change(ctx)
    rendered = {
        "blocks_by_category": charts.bar_chart(
            list(figures.blocks_by_category.items()), "Blocked queries by category, since start"
        ),
        "blocks_by_jurisdiction": charts.bar_chart(
            list(figures.blocks_by_jurisdiction.items()),
            "Blocked queries by jurisdiction, since start",
        ),
        "latency": charts.bar_chart(
            figures.latency_histogram(), "Upstream round trips by latency, since start"
        ),
    }
    if ctx.config.logging.query_log:
        h = history(QueryLogReader(log_directory(ctx)), ctx.store, scope)
        rendered["queries_over_time"] = charts.time_chart(
            sorted(h.by_decision.items()), "Queries per hour by decision", h.start, h.end
        )
        rendered["blocks_over_time"] = charts.time_chart(
            sorted(h.blocks_by_jurisdiction.items()),
            "Blocked queries per hour by jurisdiction",
            h.start,
            h.end,
        )
        rendered["categories_over_time"] = charts.time_chart(
            sorted(h.blocks_by_category.items()),
            "Blocked queries per hour by category",
            h.start,
            h.end,
        )
    return render(
        request,
        "console/dashboard.html",
        {
            "nav": "dashboard",
            "figures": figures,
            "stats": stats,
            "policy_version": ctx.snapshot().tree_size,
            "changed_at": changed_at,
            "changed_kind": changed_kind,
            "charts": rendered,
            "gateway": ctx.gateway_metrics,
        },
        who,
    )
